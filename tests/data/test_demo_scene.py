"""Tests of the built-in demo scene generator (mald_nerfstudio.data.demo_scene): layout, determinism, exactness
of the object-free ground truth, masks, and the LLFF pose convention of poses_bounds.npy."""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mald_nerfstudio.data.auto_dataparser import SCENE_INFO_FILE
from mald_nerfstudio.data.demo_scene import (
    DemoSceneConfig,
    dilated_mask,
    generate_demo_capture,
    generate_demo_scene,
    quantize,
)
from mald_nerfstudio.errors import MaldInputError

SMALL = dict(width=64, height=48, num_train_views=5, num_test_views=3)


def _small(seed: int = 3, **overrides) -> DemoSceneConfig:
    return DemoSceneConfig(seed=seed, **{**SMALL, **overrides})


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    return generate_demo_scene(tmp_path_factory.mktemp("demo") / "scene", _small())


def test_same_seed_gives_identical_files_and_another_seed_different_images(tmp_path):
    first = _files(generate_demo_scene(tmp_path / "a", _small(seed=3)))
    again = _files(generate_demo_scene(tmp_path / "b", _small(seed=3)))
    other = _files(generate_demo_scene(tmp_path / "c", _small(seed=4)))
    assert first == again
    assert set(other) == set(first)
    images = [name for name in first if name.startswith("images/image")]
    assert images and all(other[name] != first[name] for name in images)


def test_layout_counts_shapes_dtypes_and_value_ranges(scene_dir):
    cfg = _small()
    n = cfg.num_train_views + cfg.num_test_views
    names = sorted(p.name for p in (scene_dir / "images").glob("*.png"))
    assert names == [f"image{i:03d}.png" for i in range(n)]
    for folder, (h, w) in (("images", (48, 64)), ("images_2", (24, 32))):
        assert sorted(p.name for p in (scene_dir / folder).glob("*.png")) == names
        assert sorted(p.name for p in (scene_dir / folder / "label").glob("*.png")) == names
        for name in names:
            image, label = _load(scene_dir / folder / name), _load(scene_dir / folder / "label" / name)
            assert image.shape == (h, w, 3) and image.dtype == np.uint8
            assert label.shape == (h, w) and label.dtype == np.uint8
            assert set(np.unique(label)) <= {0, 1}
            assert image.std() > 10  # textured, not a flat colour
    poses_bounds = np.load(scene_dir / "poses_bounds.npy")
    assert poses_bounds.shape == (n, 17) and poses_bounds.dtype == np.float64
    hwf = poses_bounds[:, :15].reshape(n, 3, 5)[:, :, 4]
    focal = 0.5 * cfg.width / np.tan(np.deg2rad(cfg.horizontal_fov_degrees) / 2)
    np.testing.assert_allclose(hwf, np.tile([cfg.height, cfg.width, focal], (n, 1)))
    near, far = poses_bounds[:, 15], poses_bounds[:, 16]
    assert np.all(near > 0) and np.all(far > near)
    assert "seed: 3" in (scene_dir / "README.txt").read_text()


def test_training_images_equal_object_free_render_outside_masks(scene_dir):
    cfg = _small()
    scene = cfg.setup()
    for index in range(cfg.num_test_views, scene.num_views):
        name = f"image{index:03d}.png"
        pose = scene.camera_to_worlds[index]
        clean = scene.render(pose, include_object=False)
        for folder, clean_rgb in (("images", clean.rgb), ("images_2", clean.rgb.reshape(24, 2, 32, 2, 3).mean((1, 3)))):
            image = _load(scene_dir / folder / name)
            outside = _load(scene_dir / folder / "label" / name) == 0
            expected = quantize(clean_rgb)
            np.testing.assert_array_equal(image[outside], expected[outside])
            assert np.any(image[~outside] != expected[~outside])  # the object is visible inside the mask


def test_masks_cover_the_object_in_training_views_and_mark_it_in_test_views(scene_dir):
    cfg = _small()
    scene = cfg.setup()
    for index in range(scene.num_views):
        name = f"image{index:03d}.png"
        pose = scene.camera_to_worlds[index]
        mask = _load(scene_dir / "images" / "label" / name)
        view = scene.render(pose, include_object=not scene.is_test_view(index))
        touched = view.object_coverage > 0
        assert touched.any() and np.all(mask[touched] == 1)
        assert mask.sum() > touched.sum()  # dilated beyond the silhouette
        np.testing.assert_array_equal(mask, dilated_mask(view.object_coverage, cfg.mask_dilation_px))
        if scene.is_test_view(index):  # object-free ground truth, exact everywhere
            np.testing.assert_array_equal(_load(scene_dir / "images" / name), quantize(view.rgb))


def test_poses_bounds_in_llff_convention_project_the_object_into_its_mask(scene_dir):
    scene = _small().setup()
    poses_bounds = np.load(scene_dir / "poses_bounds.npy")
    poses = poses_bounds[:, :15].reshape(-1, 3, 5)
    # the NeRF LLFF loader: OpenGL camera-to-world columns are [col1, -col0, col2], centre in column 3
    c2w = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)
    np.testing.assert_allclose(c2w, scene.camera_to_worlds, atol=1e-12)
    for index, (pose, (h, w, f)) in enumerate(zip(c2w, poses[:, :, 4])):
        x, y, z = pose[:, :3].T @ (scene.object_centre - pose[:, 3])
        assert z < 0  # in front of the camera (OpenGL looks down -z)
        assert poses_bounds[index, 15] < -z < poses_bounds[index, 16]
        col, row = w / 2 + f * x / -z, h / 2 - f * y / -z
        mask = _load(scene_dir / "images" / "label" / f"image{index:03d}.png")
        assert mask.shape == (int(h), int(w))
        assert mask[int(row), int(col)] == 1
        wall = pose[:, :3].T @ (np.array([1.2, 1.2, -1.6]) - pose[:, 3])  # on the wall, far from the ball
        wall_row, wall_col = int(h / 2 - f * wall[1] / -wall[2]), int(w / 2 + f * wall[0] / -wall[2])
        assert 0 <= wall_row < h and 0 <= wall_col < w and mask[wall_row, wall_col] == 0


def test_refuses_non_empty_output_unless_overwrite_and_keeps_other_files(tmp_path):
    out = tmp_path / "scene"
    out.mkdir()
    (out / "notes.txt").write_text("user data")
    with pytest.raises(MaldInputError, match="not empty"):
        generate_demo_scene(out, _small(num_train_views=1, num_test_views=1))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (out / "images").mkdir()
    (out / "images" / "image099.png").write_bytes(b"stale")
    generate_demo_scene(out, _small(num_train_views=1, num_test_views=1), overwrite=True)
    assert (out / "notes.txt").read_text() == "user data"
    assert sorted(p.name for p in (out / "images").glob("*.png")) == ["image000.png", "image001.png"]


def test_invalid_parameters_raise_input_error(tmp_path):
    with pytest.raises(MaldInputError, match="even"):
        generate_demo_scene(tmp_path / "odd", _small(width=63))
    assert not (tmp_path / "odd").exists()
    with pytest.raises(MaldInputError, match="object-colour"):
        _small(object_colour=(0.5, 1.5, 0.0)).setup()


def test_object_colour_changes_only_the_ball(tmp_path):
    blue = _small().setup()
    brown = _small(object_colour=(0.62, 0.44, 0.26)).setup()
    assert np.allclose(brown.object_albedo, (0.62, 0.44, 0.26))
    pose = blue.camera_to_worlds[-1]
    a, b = blue.render(pose), brown.render(pose)
    assert np.array_equal(a.object_coverage, b.object_coverage)
    outside = a.object_coverage == 0
    assert np.array_equal(a.rgb[outside], b.rgb[outside]) and not np.allclose(a.rgb[~outside], b.rgb[~outside])


def test_overwriting_with_the_other_layout_leaves_no_file_of_the_first(tmp_path):
    out = generate_demo_scene(tmp_path / "scene", _small(num_train_views=1, num_test_views=1))
    generate_demo_capture(out, _small(num_train_views=1, num_test_views=1), overwrite=True)
    assert not (out / "poses_bounds.npy").exists() and not (out / SCENE_INFO_FILE).exists()
    assert (out / "transforms.json").is_file() and (out / "sparse_pc.ply").is_file()


def test_cli_writes_the_same_scene_as_the_function(tmp_path):
    script = Path(sysconfig.get_path("scripts")) / "mald-nerf-demo-scene"
    if not script.exists():
        pytest.skip(f"console script not installed at {script}; run `pip install -e .`")
    args = ["--seed", "7", "--width", "32", "--height", "24", "--num-train-views", "2", "--num-test-views", "1"]
    result = subprocess.run([str(script), str(tmp_path / "cli"), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = generate_demo_scene(
        tmp_path / "api", DemoSceneConfig(seed=7, width=32, height=24, num_train_views=2, num_test_views=1)
    )
    assert _files(tmp_path / "cli") == _files(expected)
