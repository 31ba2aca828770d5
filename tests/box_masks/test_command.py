"""``mald-nerf-masks`` end to end, as a user runs it (subprocesses): a demo capture in nerfstudio's layout (what
``ns-process-data`` leaves: transforms.json, sparse_pc.ply, no masks), one box around the ball, masks checked
against the generator's exact object pixels; the same box in the capture's coordinates; the viewer without a box;
ns-train on the output; the LLFF layout and a box that holds nothing; object-free views and the masks' resolution
found from an LLFF scene's labels; the ball's cast shadow with ``--shadow.enabled``. Run with ``-s`` to see the
per-view numbers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mald_nerfstudio.box_masks import reconstruction as rc
from mald_nerfstudio.box_masks import scene as sc
from mald_nerfstudio.box_masks.box import Box, format_box
from mald_nerfstudio.data.demo_scene import (
    DemoSceneConfig,
    generate_demo_capture,
    generate_demo_scene,
    object_box_flags,
)
from mald_nerfstudio.eval.benchmark import DEMO_SCENES
from tests.test_cli import answer_ctrl_c, wait_until_listening

pytestmark = pytest.mark.slow

SCENE = DemoSceneConfig(num_train_views=10, num_test_views=2, width=160, height=120, **{
    k: v for k, v in DEMO_SCENES["demo-shadow"].items() if k in ("light_position", "cast_shadow")})
"""Small demo scene (the default camera disc, the light of demo-shadow: the ball casts a hard shadow onto the
floor): 10 views with the ball, 2 object-free ones."""
STEPS = 500
"""Reconstruction steps."""
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def run(args, timeout: float = 900, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def box_around_ball(scene, out: Path, read: sc.SceneInput) -> Box:
    """The generator's box around the ball (``DemoScene.object_box``: as a user would fit the viewer's crop box)
    in the reconstruction's frame, from nerfstudio's dataparser transform and scale."""
    import viser.transforms as vtf

    outputs = rc.reconstruction_dataparser(out, read).setup().get_dataparser_outputs("train")
    transform = outputs.dataparser_transform.double().numpy()
    scale = float(outputs.dataparser_scale)
    centre, size = scene.object_box()
    rotation = transform[:3, :3]
    rpy = vtf.SO3.from_matrix(rotation).as_rpy_radians()
    return Box(center=tuple(scale * (rotation @ centre + transform[:3, 3])), size=tuple(scale * size),
               rotation=(rpy.roll, rpy.pitch, rpy.yaw))


def read_masks(out: Path) -> dict:
    frames = json.loads((out / "transforms.json").read_text())["frames"]
    return {Path(f["file_path"]).name: np.asarray(Image.open(out / f["inpaint_mask_path"])) for f in frames
            if "inpaint_mask_path" in f}


@pytest.fixture(scope="module")
def capture_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("box-masks")
    capture = generate_demo_capture(root / "capture", SCENE)
    before = {p: p.stat().st_mtime_ns for p in capture.rglob("*")}
    out = root / "out"
    box = box_around_ball(SCENE.setup(), out, sc.prepare_output(capture, out))
    start = time.perf_counter()
    as_a_user = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # warnings shown unless we hide them
    result = run(["mald-nerf-masks", "--data", str(capture), "--output-dir", str(out), *format_box(box).split(),
                  "--reconstruction.steps", str(STEPS)], env=as_a_user)
    assert result.returncode == 0, result.stdout[-4000:]
    return {"root": root, "capture": capture, "before": before, "out": out, "box": box, "stdout": result.stdout,
            "seconds": time.perf_counter() - start, "masks": read_masks(out)}


def test_box_masks_cover_the_object(capture_run):
    scene = SCENE.setup()
    masks = capture_run["masks"]
    assert len(masks) == SCENE.num_train_views  # the object-free views get no mask
    print(f"\nbox masks after {STEPS} steps ({capture_run['seconds']:.0f} s with training); truth = pixels at least "
          "half covered by the ball")
    coverages, extras = [], []
    for name, mask in masks.items():
        truth = scene.render(scene.camera_to_worlds[int(re.findall(r"\d+", name)[0])]).object_coverage >= 0.5
        mask = mask > 0
        coverages.append((mask & truth).sum() / truth.sum())
        extras.append((mask & ~truth).sum() / truth.sum())
        print(f"  {name}: object {truth.sum()} px, covered {coverages[-1]:.1%}, extra area {extras[-1]:.1%}")
    print(f"  min coverage {min(coverages):.1%}, max extra {max(extras):.1%}")
    assert min(coverages) >= 0.95
    assert max(extras) <= 0.30


def test_output_layout_and_the_capture_untouched(capture_run):
    out, capture = capture_run["out"], capture_run["capture"]
    frames = json.loads((out / "transforms.json").read_text())["frames"]
    assert len(frames) == SCENE.num_train_views + SCENE.num_test_views
    assert sum(bool(f.get("object_free")) for f in frames) == SCENE.num_test_views
    for frame in frames:
        assert (out / frame["file_path"]).is_file()
    for mask in read_masks(out).values():
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
    assert Image.open(out / "mask_preview.png").size[0] == 3 * 320
    assert {p: p.stat().st_mtime_ns for p in capture.rglob("*")} == capture_run["before"]
    assert "masked" in capture_run["stdout"]


def test_the_next_commands_print_whole_lines_without_library_warnings(capture_run):
    lines = capture_run["stdout"].splitlines()
    out = capture_run["out"]
    assert f"ns-train mald-nerf --data {out}" in lines and f"ns-train mald-nerf-tiny --data {out}" in lines
    assert "Warning" not in capture_run["stdout"] and "eval-mode" not in capture_run["stdout"]
    assert any(line.startswith("Note: images from images/ at 160x120") and "transforms.json's own frame" in line
               for line in lines)


def test_the_box_in_capture_coordinates_reuses_the_reconstruction_and_gives_the_same_masks(capture_run):
    """The README's demo command: the generator's box in the capture's coordinates (--box-frame capture)."""
    out = capture_run["out"]
    first = capture_run["masks"]
    checkpoint = next((out / "reconstruction").rglob("*.ckpt"))
    stamp = checkpoint.stat().st_mtime_ns
    result = run(["mald-nerf-masks", "--data", str(capture_run["capture"]), "--output-dir", str(out),
                  *object_box_flags(SCENE.setup()).split(), "--reconstruction.steps", str(STEPS)])
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Reusing the finished reconstruction" in result.stdout
    assert checkpoint.stat().st_mtime_ns == stamp
    again = read_masks(out)
    assert again.keys() == first.keys()
    agreement = np.mean([np.mean(again[k] == first[k]) for k in first])
    print(f"\nthe same box in capture coordinates: {agreement:.4%} of mask pixels as with the viewer-frame box")
    assert agreement >= 0.995  # the viewer-frame box was passed rounded to 4 digits


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the kernel's socket table (Linux)")
def test_without_a_box_it_serves_nerfstudios_viewer_on_the_reconstruction(capture_run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        ["mald-nerf-masks", "--data", str(capture_run["capture"]), "--output-dir", str(capture_run["out"]),
         "--reconstruction.steps", str(STEPS), "--websocket-port", str(port)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=answer_ctrl_c,
    )
    try:
        hosts = wait_until_listening(proc, port)
        assert hosts, "the viewer never listened"
        assert set(hosts) == {"0100007F"}, hosts  # 127.0.0.1 only
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, output[-3000:]
    assert "Reusing the finished reconstruction" in output and "--from-viewer" in output
    assert "Viewer closed" in output


def test_ns_train_runs_on_the_output(capture_run):
    result = run(["ns-train", "mald-nerf-tiny", "--data", str(capture_run["out"]), "--max-num-iterations", "4",
                  "--vis", "tensorboard", "--output-dir", str(capture_run["root"] / "outputs"),
                  "--steps-per-save", "4"], timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
    assert list((capture_run["root"] / "outputs").rglob("step-000000003.ckpt"))


def test_llff_layout_and_a_box_that_holds_nothing(tmp_path):
    config = DemoSceneConfig(num_train_views=4, num_test_views=1, width=48, height=36, supersampling=1)
    generate_demo_scene(tmp_path / "scene", config)
    result = run(["mald-nerf-masks", "--data", str(tmp_path / "scene"), "--output-dir", str(tmp_path / "out"),
                  "--box", "50", "50", "50", "0.1", "0.1", "0.1", "--reconstruction.steps", "5"])
    assert result.returncode == 1, result.stdout[-3000:]
    printed = " ".join(result.stdout.split())  # rich wraps lines
    assert "mald-nerfstudio error" in printed and "no reconstructed surface" in printed
    assert "Traceback" not in printed
    assert "far bounds in poses_bounds.npy" in printed  # the LLFF scale
    assert len(json.loads((tmp_path / "out" / sc.RECONSTRUCTION_JSON).read_text())["frames"]) == 4


def test_llff_object_free_views_and_the_masks_resolution_come_from_the_labels(tmp_path):
    """A SPIn-NeRF folder without mald_scene.json whose labels (in images_2/label/ only) cover only the views with
    the object: the first views are taken as object-free and the masks are made for images_2/; both are said."""
    config = DemoSceneConfig(num_train_views=4, num_test_views=2, width=48, height=36, supersampling=1)
    scene = generate_demo_scene(tmp_path / "scene", config)
    (scene / "mald_scene.json").unlink()
    for label in (scene / "images" / "label").iterdir():
        label.unlink()
    (scene / "images" / "label").rmdir()
    for name in sorted(p.name for p in (scene / "images_2" / "label").iterdir())[:2]:
        (scene / "images_2" / "label" / name).unlink()
    result = run(["mald-nerf-masks", "--data", str(scene), "--output-dir", str(tmp_path / "out"),
                  "--box", "50", "50", "50", "0.1", "0.1", "0.1", "--reconstruction.steps", "5"])
    assert result.returncode == 1, result.stdout[-3000:]  # the box holds nothing; the notes come first
    lines = result.stdout.splitlines()
    assert any("masks are made for images_2/" in line for line in lines)
    assert any(line.startswith("Note: 2 object-free view(s)") and "last 4 of the 6 images" in line for line in lines)
    assert "Note: images from images_2/ at 24x18" in result.stdout
    assert "in the world frame of poses_bounds.npy's camera positions, unscaled" in result.stdout  # the capture frame
    frames = json.loads((tmp_path / "out" / sc.RECONSTRUCTION_JSON).read_text())["frames"]
    assert len(frames) == 4
    assert Image.open(tmp_path / "out" / frames[0]["file_path"]).size == (24, 18)


def test_shadow_option_extends_the_masks_over_the_cast_shadow(capture_run):
    """--shadow.enabled on the same reconstruction: the masks then cover most of the ball's shadow on the floor,
    which the default masks leave (exact shadow pixels from the generator); little area beyond ball and shadow."""
    scene, out = SCENE.setup(), capture_run["out"]
    result = run(["mald-nerf-masks", "--data", str(capture_run["capture"]), "--output-dir", str(out),
                  *format_box(capture_run["box"]).split(), "--reconstruction.steps", str(STEPS), "--shadow.enabled"])
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Reusing the finished reconstruction" in result.stdout
    with_shadow = read_masks(out)
    rows = []
    for name, mask in with_shadow.items():
        pose = scene.camera_to_worlds[int(re.findall(r"\d+", name)[0])]
        ball = scene.render(pose).object_coverage >= 0.5
        shadow = (scene.shadow_coverage(pose) >= 0.5) & ~ball
        before = capture_run["masks"][name] > 0
        mask = mask > 0
        rows.append(((before & shadow).sum() / shadow.sum(), (mask & shadow).sum() / shadow.sum(),
                     (mask & ~ball & ~shadow).sum() / (ball | shadow).sum(), (mask & ball).sum() / ball.sum()))
    default_cover, shadow_cover, beyond, ball_cover = np.array(rows).T
    print(f"\nshadow covered: default masks {default_cover.mean():.1%}, --shadow.enabled {shadow_cover.mean():.1%} "
          f"(min {shadow_cover.min():.1%}); area beyond ball and shadow {beyond.mean():.1%} of theirs (max "
          f"{beyond.max():.1%})")
    assert default_cover.mean() < 0.2
    assert shadow_cover.mean() >= 0.75 and shadow_cover.min() >= 0.5
    assert beyond.max() <= 0.25 and ball_cover.min() >= 0.95  # the default masks' dilation alone: about 0.1
