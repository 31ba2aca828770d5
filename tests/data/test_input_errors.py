"""Bad scenes fail before training with one clear MaldInputError that names the file and says how to fix it.

Every case goes through ``mald-data`` (the parser users get by default), on tiny synthetic scenes. The last test
runs the real ``ns-train`` on a bad scene and checks that the user sees the paragraph, not a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mald_nerfstudio.data.auto_dataparser import MaldDataParserConfig
from mald_nerfstudio.errors import MaldInputError, format_error
from tests.data.test_dataparsers import HEIGHT, WIDTH, box_mask, write_nerfstudio_scene, write_spinnerf_scene


def parse_error(scene: Path, **options) -> MaldInputError:
    """The MaldInputError raised while parsing ``scene`` with mald-data (train split, as ns-train does first)."""
    with pytest.raises(MaldInputError) as info:
        MaldDataParserConfig(data=scene, **options).setup().get_dataparser_outputs("train")
    return info.value


def assert_names_file_and_fix(err: MaldInputError, path: Path) -> None:
    """The message names ``path`` and ends with a non-empty fix."""
    message = str(err)
    assert str(path) in message, message
    assert err.fix and len(err.fix) > 10, message
    assert err.fix.rstrip(".") in message
    assert "\n" not in message  # one paragraph


def scene(tmp_path: Path, **kwargs) -> Path:
    """A valid 6-view SPIn-NeRF-layout scene (2 object-free eval views) that each test then breaks."""
    return write_spinnerf_scene(tmp_path, num_views=6, num_test=2, scene_info={"num_test_views": 2}, **kwargs)


def test_valid_scene_parses(tmp_path):
    # The baseline every error test below breaks in one way.
    outputs = MaldDataParserConfig(data=scene(tmp_path)).setup().get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == 4


def test_training_image_without_mask(tmp_path):
    root = scene(tmp_path)
    (root / "images_4" / "label" / "img_003.png").unlink()
    err = parse_error(root)
    assert_names_file_and_fix(err, root / "images_4" / "img_003.png")
    assert "label/img_003.png" in err.fix


def test_nerfstudio_frame_with_missing_mask_file(tmp_path):
    root = write_nerfstudio_scene(tmp_path, [{"object_free": True}, {"mask": box_mask()}, {"mask": box_mask()}])
    (root / "inpaint_masks" / "frame_02.png").unlink()
    assert_names_file_and_fix(parse_error(root), root / "inpaint_masks" / "frame_02.png")


@pytest.mark.parametrize("size", [(WIDTH - 3, HEIGHT), (WIDTH // 2, HEIGHT // 3), (WIDTH * 3 // 2, HEIGHT * 3 // 2)])
def test_mask_size_differs_from_image(tmp_path, size):
    root = scene(tmp_path)
    bad = root / "images_4" / "label" / "img_004.png"
    Image.fromarray(np.zeros(size[::-1], np.uint8)).save(bad)
    err = parse_error(root)
    assert_names_file_and_fix(err, bad)
    assert f"{size[0]}x{size[1]}" in str(err) and f"{WIDTH}x{HEIGHT}" in err.fix


def test_mask_is_not_a_readable_image(tmp_path):
    root = scene(tmp_path)
    bad = root / "images_4" / "label" / "img_002.png"
    bad.write_bytes(b"this is not a PNG file at all")
    assert_names_file_and_fix(parse_error(root), bad)


def test_more_poses_than_images(tmp_path):
    root = scene(tmp_path)
    (root / "images_4" / "img_005.png").unlink()
    (root / "images_4" / "label" / "img_005.png").unlink()
    err = parse_error(root)
    assert_names_file_and_fix(err, root / "poses_bounds.npy")
    assert "6 poses" in str(err) and "5 images" in str(err)


def test_more_images_than_poses(tmp_path):
    root = scene(tmp_path)
    np.save(root / "poses_bounds.npy", np.load(root / "poses_bounds.npy")[:5])
    assert_names_file_and_fix(parse_error(root), root / "poses_bounds.npy")


def test_mask_without_image(tmp_path):
    root = scene(tmp_path)
    Image.fromarray(box_mask()).save(root / "images_4" / "label" / "img_099.png")
    err = parse_error(root)
    assert_names_file_and_fix(err, root / "images_4" / "label")
    assert "img_099.png" in str(err)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image(tmp_path, damage):
    root = scene(tmp_path)
    bad = root / "images_4" / "img_003.png"
    data = bad.read_bytes()
    bad.write_bytes(b"\x00garbage" * 20 if damage == "garbage" else data[: len(data) // 2])
    assert_names_file_and_fix(parse_error(root), bad)


def test_corrupt_eval_image_is_caught_before_training(tmp_path):
    root = scene(tmp_path)
    bad = root / "images_4" / "img_000.png"  # an object-free eval view, not used until evaluation
    bad.write_bytes(bad.read_bytes()[:40])
    assert_names_file_and_fix(parse_error(root), bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_poses(tmp_path, value):
    root = scene(tmp_path)
    poses = np.load(root / "poses_bounds.npy")
    poses[4, 3] = value
    np.save(root / "poses_bounds.npy", poses)
    err = parse_error(root)
    assert_names_file_and_fix(err, root / "poses_bounds.npy")
    assert "img_004.png" in str(err)


def test_nerfstudio_non_finite_transform_matrix(tmp_path):
    root = write_nerfstudio_scene(tmp_path, [{"object_free": True}, {"mask": box_mask()}, {}])
    meta = json.loads((root / "transforms.json").read_text())
    meta["frames"][2]["transform_matrix"][0][3] = float("nan")
    (root / "transforms.json").write_text(json.dumps(meta))
    err = parse_error(root)
    assert_names_file_and_fix(err, root / "transforms.json")
    assert "frame_02.png" in str(err)


def test_mask_covering_95_percent_is_rejected_and_just_below_is_accepted(tmp_path):
    pixels = WIDTH * HEIGHT
    at_limit = np.zeros(pixels, np.uint8)
    at_limit[: int(round(0.95 * pixels))] = 1
    below = at_limit.copy()
    below[int(round(0.95 * pixels)) - 1] = 0
    root = scene(tmp_path / "at", masks={3: at_limit.reshape(HEIGHT, WIDTH)})
    err = parse_error(root, mask_dilation_iterations=0)
    assert_names_file_and_fix(err, root / "images_4" / "label" / "img_003.png")
    assert "inverted" in err.fix
    ok = scene(tmp_path / "below", masks={3: below.reshape(HEIGHT, WIDTH)})
    MaldDataParserConfig(data=ok, mask_dilation_iterations=0).setup().get_dataparser_outputs("train")


def test_mask_coverage_is_checked_after_dilation(tmp_path):
    # 80% drawn; the default SPIn-NeRF dilation (5x5, 5 iterations) grows it past the 95% limit.
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[:, : int(WIDTH * 0.8)] = 1
    root = scene(tmp_path, masks={2: mask})
    assert_names_file_and_fix(parse_error(root), root / "images_4" / "label" / "img_002.png")


def test_empty_mask_is_valid(tmp_path):
    root = scene(tmp_path, masks={2: np.zeros((HEIGHT, WIDTH), np.uint8)})
    outputs = MaldDataParserConfig(data=root).setup().get_dataparser_outputs("train")
    assert outputs.metadata["inpaint_mask_filenames"][0].name == "img_002.png"
    from mald_nerfstudio.data.dataset import InpaintDataset

    dataset = InpaintDataset(outputs)
    assert not dataset.inpaint_mask(0).any() and dataset.inpaint_mask(1).any()


def test_error_paragraph_keeps_long_hyphenated_paths_whole():
    path = Path("/data/" + "spin-nerf-" * 12 + "scene") / "images_4" / "label" / "frame_0001.png"
    printed = format_error(MaldInputError("inpainting mask not found", path, "provide a mask for this view"))
    assert any(str(path) in line for line in printed.splitlines()), printed
    assert all(len(line) <= 110 for line in printed.splitlines() if str(path) not in line)


def test_ns_train_reports_bad_scene_without_traceback(tmp_path):
    ns_train = shutil.which("ns-train") or str(Path(sys.executable).with_name("ns-train"))
    if not Path(ns_train).is_file():
        pytest.skip("ns-train is not installed in this environment")
    # A long, hyphenated path: the printed paragraph must still show it whole (no line break inside it).
    root = scene(tmp_path / "my-captures" / ("object-removal-" * 6 + "scene"))
    assert len(str(root / "images_4" / "img_004.png")) > 110
    (root / "images_4" / "label" / "img_004.png").unlink()
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [
            ns_train,
            "mald-nerf-tiny",
            "--data",
            str(root),
            "--machine.device-type",
            "cpu",
            "--vis",
            "tensorboard",
            "--max-num-iterations",
            "1",
            "--output-dir",
            str(tmp_path / "outputs"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert "mald-nerfstudio error:" in result.stderr, output
    paragraph = result.stderr.split("mald-nerfstudio error:", 1)[1].strip()
    assert "\n\n" not in paragraph  # one paragraph
    assert str(root / "images_4" / "img_004.png") in paragraph, paragraph
    assert "label/img_004.png" in paragraph  # the fix
