"""Tests of the built-in demo scene generator (mald_nerfstudio.data.demo_scene): layout, determinism, exactness
of the object-free ground truth, masks, and the LLFF pose convention of poses_bounds.npy."""

from __future__ import annotations

import json
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mald_nerfstudio.data.demo_scene import (
    PROP_BOX,
    WALL_Z,
    DemoSceneConfig,
    dilated_mask,
    generate_demo_capture,
    generate_demo_scene,
    observe_hole,
    observe_training_views,
    observe_views,
    quantize,
    scene_config_of,
)
from mald_nerfstudio.data.object_free_views import SCENE_INFO_FILE
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
    # a disc wider than about 1.0 puts the lowest cameras under the floor, where the ray caster's floor would be
    # behind them: refused, not rendered
    with pytest.raises(MaldInputError, match="below the floor"):
        _small(camera_disc_radius=1.3).setup()


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
    assert "Observed fraction of the hole:" in result.stdout
    expected = generate_demo_scene(
        tmp_path / "api", DemoSceneConfig(seed=7, width=32, height=24, num_train_views=2, num_test_views=1)
    )
    assert _files(tmp_path / "cli") == _files(expected)


# ------------------------------------------------------------------ observed fraction of the hole


def _look_at(centre, target) -> np.ndarray:
    """OpenGL camera-to-world [3, 4] at ``centre`` looking at ``target`` (y up), as the generator builds its poses."""
    centre = np.asarray(centre, dtype=np.float64)
    back = (centre - target) / np.linalg.norm(centre - target)
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(back, right), back, centre], axis=1)


def test_masks_for_the_observed_fraction_equal_the_written_labels(scene_dir):
    scene = _small().setup()
    for index in range(scene.num_views):
        name = f"image{index:03d}.png"
        np.testing.assert_array_equal(scene.mask(index), _load(scene_dir / "images" / "label" / name))
        np.testing.assert_array_equal(scene.mask(index, 2), _load(scene_dir / "images_2" / "label" / name))


@pytest.mark.parametrize("iterations", [0, 1, 5])
def test_masks_with_the_parsers_dilation_equal_what_mald_data_reads(scene_dir, iterations):
    """DemoScene.mask(..., mask_dilation_iterations=N) is the mask a run reads with ``mald-data --downscale-factor 2
    --mask-dilation-iterations N``: the real parser's outputs, loaded as the dataset loads them."""
    from mald_nerfstudio.data.auto_dataparser import MaldDataParserConfig
    from mald_nerfstudio.data.inpaint_metadata import load_view_mask, masks_of

    scene = _small().setup()
    parser = MaldDataParserConfig(data=scene_dir, downscale_factor=2, mask_dilation_iterations=iterations).setup()
    for split, first in (("train", scene.config.num_test_views), ("test", 0)):
        files, spec = masks_of(parser.get_dataparser_outputs(split).metadata)
        assert len(files) > 0
        for offset, path in enumerate(files):
            read = load_view_mask(path, (24, 32), spec)
            np.testing.assert_array_equal(scene.mask(first + offset, 2, iterations).astype(bool), read)
    grown = scene.mask(scene.num_views - 1, 2, iterations).sum() - scene.mask(scene.num_views - 1, 2).sum()
    assert (grown > 0) == (iterations > 0)


def test_mald_scene_json_readme_and_observation_give_the_same_fraction(scene_dir):
    info = json.loads((scene_dir / SCENE_INFO_FILE).read_text())
    observation = observe_hole(_small().setup(), downscale=2)
    assert info["num_test_views"] == 3 and info["observed_fraction_downscale"] == 2
    assert "observed_fraction" not in info  # named for the masks it is for
    assert info["observed_fraction_label_masks"] == round(observation.fraction, 4)
    text = (scene_dir / "README.txt").read_text()
    assert f"observed fraction of the hole: {info['observed_fraction_label_masks']:.4f}" in text
    assert "label masks as written, before the data parser's dilation" in text
    # the generator's parameters, from which the benchmark computes the fraction for the masks its runs read
    assert scene_config_of(scene_dir) == _small()
    assert observation.masks.shape == (3, 24, 32) and observation.masks.sum() > 0
    assert not np.any(observation.observed & ~observation.masks)  # observed pixels are masked pixels


@pytest.mark.parametrize("downscale", [1, 2])
def test_every_unmasked_pixel_is_seen_from_its_own_camera_and_no_masked_one(downscale):
    """Projection convention: a training view's background point under each pixel centre lands back on that pixel,
    so it is seen exactly where the view's mask is 0 (the ball covers nothing there)."""
    scene = _small().setup()
    for index in range(scene.config.num_test_views, scene.num_views):
        mask = scene.mask(index, downscale)
        points = scene.background_points(scene.camera_to_worlds[index], downscale)
        seen = scene.seen_from(points.reshape(-1, 3), index, mask).reshape(mask.shape)
        np.testing.assert_array_equal(seen, mask == 0)


def test_occlusion_test_on_constructed_points():
    """From one training camera: the wall point straight behind the ball, and the wall point straight behind the
    box, are not seen (occluded by the ball, by another background surface); a wall point in plain view is seen,
    unless the view's mask covers it; a floor point outside the image is not seen."""
    scene = _small().setup()
    index = scene.num_views - 1
    pose = scene.camera_to_worlds[index]
    origin = pose[:, 3]
    h, w = scene.config.height, scene.config.width
    no_mask, full_mask = np.zeros((h, w), np.uint8), np.ones((h, w), np.uint8)

    def wall_point_behind(target):
        direction = target - origin
        return origin + (WALL_Z - origin[2]) / direction[2] * direction

    behind_ball = wall_point_behind(scene.object_centre)
    box_centre = (PROP_BOX[0] + PROP_BOX[1]) / 2
    behind_box = wall_point_behind(box_centre)
    in_view = np.array([1.2, 1.2, WALL_Z])
    outside_image = np.array([6.0, 0.0, -1.0])  # on the floor, far to the right
    points = np.stack([behind_ball, behind_box, in_view, outside_image])
    # each point is a background surface point: the first background hit along the camera's ray to it
    t_background = scene._intersect_background(origin, points - origin)[0]
    np.testing.assert_allclose(t_background[[0, 2, 3]], 1.0)
    assert t_background[1] < 0.99  # the box is hit first
    assert scene._intersect_object(origin, (points - origin)[:1])[0] < 1.0  # the ball is hit first
    np.testing.assert_array_equal(scene.seen_from(points, index, no_mask), [False, False, True, False])
    np.testing.assert_array_equal(scene.seen_from(points, index, full_mask), [False, False, False, False])
    # the first two project inside the image: only occlusion hides them
    right, up, back = ((points[:2] - origin) @ pose[:, :3]).T
    col, row = w / 2 + scene.focal * right / -back, h / 2 - scene.focal * up / -back
    assert np.all((back < 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h))


def test_observed_fraction_is_zero_when_the_only_training_view_is_the_test_view():
    """Known answer: every masked pixel's background point lands on the same, masked, pixel of the training view."""
    scene = _small(num_train_views=1, num_test_views=1).setup()
    scene.camera_to_worlds = np.stack([scene.camera_to_worlds[0]] * 2)
    for downscale in (1, 2):
        observation = observe_hole(scene, downscale)
        assert observation.masks.sum() > 0 and observation.fraction == 0.0


def test_observed_fraction_near_zero_for_a_large_ball_from_a_tiny_disc_and_high_from_the_sides():
    hidden = observe_hole(_small(object_radius=0.8, camera_disc_radius=0.02).setup(), downscale=1)
    assert hidden.masks.sum() > 500 and hidden.fraction < 0.02
    # one test view, two training views far to either side looking at the ball: they see behind it
    scene = _small(num_train_views=2, num_test_views=1, mask_dilation_px=0).setup()
    target = scene.object_centre
    scene.camera_to_worlds = np.stack(
        [scene.camera_to_worlds[0], _look_at([2.5, 0.95, 2.5], target), _look_at([-2.5, 0.95, 2.5], target)]
    )
    seen = observe_hole(scene, downscale=1)
    assert seen.masks.sum() > 100 and seen.fraction > 0.9
    # either side alone sees less than both together
    for side in (1, 2):
        one = observe_hole(_with_views(scene, [0, side]), downscale=1)
        assert 0.2 < one.fraction < seen.fraction


def test_scene_config_round_trips_through_mald_scene_json(tmp_path):
    config = _small(seed=4, object_colour=(0.62, 0.44, 0.26), object_radius=0.3, num_train_views=1,
                    num_test_views=1)
    assert scene_config_of(generate_demo_scene(tmp_path / "scene", config)) == config
    assert scene_config_of(tmp_path / "missing") is None


def test_parser_dilation_only_removes_observed_pixels():
    """Dilating every mask grows the holes and hides more from the observing views: every pixel observed with the
    dilated masks that lies in the label mask is observed with the label masks too, and the fraction falls."""
    scene = _small(seed=0, num_train_views=8).setup()
    labels, dilated = observe_hole(scene, 2), observe_hole(scene, 2, mask_dilation_iterations=1)
    assert np.all(dilated.masks >= labels.masks) and dilated.masks.sum() > labels.masks.sum()
    assert not np.any(dilated.observed & labels.masks & ~labels.observed)
    assert labels.observed.sum() > 0 and dilated.fraction < labels.fraction


def test_training_views_observed_by_the_other_training_views_only():
    """Known answers: a training view with no other training view has every masked pixel unseen; two training
    views far to either side of the ball each see part of the other's hole, and the test view's observation through
    observe_views is observe_hole's."""
    alone = _small(num_train_views=1, num_test_views=1).setup()
    only = observe_training_views(alone, downscale=1)
    np.testing.assert_array_equal(only.views, [1])
    assert only.masks.sum() > 0 and only.fraction == 0.0
    np.testing.assert_array_equal(only.unseen, only.masks)

    scene = _small(num_train_views=2, num_test_views=1, mask_dilation_px=0).setup()
    target = scene.object_centre
    scene.camera_to_worlds = np.stack(
        [scene.camera_to_worlds[0], _look_at([2.5, 0.95, 2.5], target), _look_at([-2.5, 0.95, 2.5], target)]
    )
    train = observe_training_views(scene, downscale=1)
    np.testing.assert_array_equal(train.views, [1, 2])
    assert np.all(train.masks.sum(axis=(1, 2)) > 30)
    assert np.all((train.per_view > 0.2) & (train.per_view < 1.0))
    np.testing.assert_array_equal(train.unseen, train.masks & ~train.observed)
    # each side view is observed by exactly the other one: the same as a scene holding that pair only
    for row, (view, other) in enumerate(((1, 2), (2, 1))):
        pair = _with_views(scene, [view, other])  # view as the "test" view, the other as the only training view
        np.testing.assert_array_equal(observe_hole(pair, downscale=1).observed[0], train.observed[row])
    test = observe_views(scene, [0], downscale=1)
    hole = observe_hole(scene, downscale=1)
    np.testing.assert_array_equal(test.observed, hole.observed)
    np.testing.assert_array_equal(test.masks, hole.masks)


def _with_views(scene, indices):
    """A copy of ``scene`` restricted to the views ``indices`` (the first one the test view)."""
    config = _small(num_train_views=len(indices) - 1, num_test_views=1, mask_dilation_px=0)
    other = config.setup()
    other.camera_to_worlds = scene.camera_to_worlds[indices]
    return other


def test_cast_shadow_darkens_exactly_the_pixels_shadow_coverage_names():
    light = (-2.2, 1.9, 1.2)
    lit = _small(light_position=light).setup()
    shaded = _small(light_position=light, cast_shadow=True).setup()
    pose = shaded.camera_to_worlds[shaded.config.num_test_views]
    coverage = shaded.shadow_coverage(pose)
    assert coverage.max() == 1.0 and not lit.shadow_coverage(pose).any()
    darker = shaded.render(pose).rgb.sum(-1) < lit.render(pose).rgb.sum(-1) - 1e-9
    assert np.array_equal(darker, coverage > 0)
    # the object-free render has no ball and so no shadow
    assert np.array_equal(shaded.render(pose, include_object=False).rgb, lit.render(pose, include_object=False).rgb)
