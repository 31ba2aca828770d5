"""Reading a capture in either layout (never writing to it), the reconstruction's scale, the output's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mald_nerfstudio.box_masks import scene as sc
from mald_nerfstudio.data.demo_scene import DemoSceneConfig, generate_demo_capture, generate_demo_scene
from mald_nerfstudio.errors import MaldInputError

SMALL = DemoSceneConfig(num_train_views=3, num_test_views=1, width=32, height=24, supersampling=1)


def _snapshot(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_llff_cameras_intrinsics_and_far_bound_scale(tmp_path):
    generate_demo_scene(tmp_path / "scene", SMALL)
    scene = SMALL.setup()
    read = sc.read_scene(tmp_path / "scene")
    assert [f.object_free for f in read.frames] == [True, False, False, False]  # mald_scene.json's test views
    assert read.meta["fl_x"] == pytest.approx(scene.focal) and read.meta["w"] == 32 and read.meta["h"] == 24
    for frame, pose in zip(read.frames, scene.camera_to_worlds):
        assert np.allclose(np.asarray(frame.frame["transform_matrix"])[:3], pose)
    bounds = np.load(tmp_path / "scene" / "poses_bounds.npy")[:, 16]
    assert read.scale_factor == pytest.approx(1.0 / np.percentile(bounds, 90))
    half = sc.read_scene(tmp_path / "scene", downscale_factor=2)
    assert half.meta["fl_x"] == pytest.approx(scene.focal / 2) and half.meta["w"] == 16
    assert sc.read_scene(tmp_path / "scene", num_test_views=0).frames[0].object_free is False


def test_capture_scale_comes_from_the_far_depths_of_its_sparse_points(tmp_path):
    capture = generate_demo_capture(tmp_path / "capture", SMALL)
    scene = SMALL.setup()
    read = sc.read_scene(capture)
    assert [f.object_free for f in read.frames] == [True, False, False, False]
    assert read.meta["fl_x"] == pytest.approx(scene.focal) and "ply_file_path" not in read.meta
    # the far depth of each view from the surfaces under its own pixels at the point stride (the code uses the
    # points of the views with the object that fall in each view's field of view: the same depths up to sampling)
    fars = []
    for pose in scene.camera_to_worlds:
        points = scene.surface_points(pose, 8)
        fars.append(np.percentile(-((points - pose[:, 3]) @ pose[:, :3])[:, 2], sc.POINT_FAR_PERCENTILE))
    assert read.scale_factor == pytest.approx(1.0 / np.percentile(fars, sc.FAR_DEPTH_PERCENTILE), rel=1e-2)
    assert "sparse_pc.ply" in read.scale_source
    # without the point cloud: nerfstudio's camera-based scale
    meta = json.loads((capture / "transforms.json").read_text())
    del meta["ply_file_path"]
    (capture / "transforms.json").write_text(json.dumps(meta))
    assert sc.read_scene(capture).scale_factor is None


def test_capture_downscale_reads_images_n_and_scales_the_intrinsics(tmp_path):
    capture = generate_demo_capture(tmp_path / "capture", SMALL)
    (capture / "images_2").mkdir()
    for path in (capture / "images").iterdir():
        Image.open(path).resize((16, 12)).save(capture / "images_2" / path.name)
    read = sc.read_scene(capture, downscale_factor=2)
    assert read.frames[0].source == capture / "images_2" / "image000.png"
    assert (read.meta["fl_x"], read.meta["cx"], read.meta["w"], read.meta["h"]) == pytest.approx(
        (SMALL.setup().focal / 2, 8.0, 16, 12))
    with pytest.raises(MaldInputError, match="images_4"):
        sc.read_scene(capture, downscale_factor=4)


def test_bad_scenes_are_refused_in_one_paragraph(tmp_path):
    with pytest.raises(MaldInputError, match="does not exist"):
        sc.read_scene(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaldInputError, match="neither transforms.json"):
        sc.read_scene(tmp_path / "empty")
    capture = generate_demo_capture(tmp_path / "capture", SMALL)
    meta = json.loads((capture / "transforms.json").read_text())
    meta["frames"][1]["transform_matrix"][0][0] = float("nan")
    (capture / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(MaldInputError, match="not a finite"):
        sc.read_scene(capture)
    (capture / "transforms.json").write_text("{not json")
    with pytest.raises(MaldInputError, match="not valid JSON"):
        sc.read_scene(capture)
    generate_demo_capture(capture, SMALL, overwrite=True)
    (capture / "sparse_pc.ply").write_text("not a ply")
    with pytest.raises(MaldInputError, match="sparse_pc.ply"):
        sc.read_scene(capture)


def test_prepare_output_copies_and_lists_the_views_and_never_writes_the_scene(tmp_path):
    capture = generate_demo_capture(tmp_path / "capture", SMALL)
    before = _snapshot(capture)
    out = tmp_path / "out"
    read = sc.prepare_output(capture, out)
    assert _snapshot(capture) == before
    assert sorted(p.name for p in (out / "images").iterdir()) == [f.name for f in read.frames]
    listed = json.loads((out / sc.RECONSTRUCTION_JSON).read_text())["frames"]
    assert [f["file_path"] for f in listed] == [f"images/{f.name}" for f in read.frames if not f.object_free]
    with pytest.raises(MaldInputError, match="inside\\) the scene folder"):
        sc.prepare_output(capture, capture / "masks-here")
    masks = {read.frames[1].name: "masks/x.png"}
    written = json.loads(sc.write_transforms(out, read, "transforms.json", masks=masks).read_text())["frames"]
    assert written[0] == {**written[0], "object_free": True} and "inpaint_mask_path" not in written[0]
    assert written[1]["inpaint_mask_path"] == "masks/x.png"
