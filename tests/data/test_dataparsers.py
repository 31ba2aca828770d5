"""Data parsers: SPIn-NeRF / LLFF folders, nerfstudio captures with inpainting masks, and layout detection.

Most tests write tiny synthetic scenes (40x30 images) into a temp folder; the pose-conversion tests use the real
LLFF fern capture from ../shared and skip when it is absent. The scene writers here are also used by
test_input_errors.py and test_sampling.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mald_nerfstudio.data.auto_dataparser import MaldDataParserConfig
from mald_nerfstudio.data.dataset import InpaintDataset
from mald_nerfstudio.data.image_io import read_mask
from mald_nerfstudio.data.inpaint_metadata import OBJECT_FREE_KEY
from mald_nerfstudio.data.nerfstudio_inpaint_dataparser import InpaintNerfstudioDataParserConfig
from mald_nerfstudio.data.object_free_views import SCENE_INFO_FILE
from mald_nerfstudio.data.spinnerf_dataparser import SpinNerfDataParserConfig
from mald_nerfstudio.errors import MaldInputError
from tests.scenes import build_fern_spinnerf_scene, require_fern

WIDTH, HEIGHT = 40, 30
BOX = (10, 20, 15, 25)
"""Default mask rectangle (y0, y1, x0, x1) of the synthetic scenes."""


# ----------------------------------------------------------------------------------------------- scene writers
def random_image(seed: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """uint8 [H, W, 3] noise image, different per seed."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def box_mask(width: int = WIDTH, height: int = HEIGHT, box: Tuple[int, int, int, int] = BOX) -> np.ndarray:
    """uint8 [H, W] mask with value 1 inside ``box`` (y0, y1, x0, x1)."""
    mask = np.zeros((height, width), np.uint8)
    y0, y1, x0, x1 = box
    mask[y0:y1, x0:x1] = 1
    return mask


def llff_poses_bounds(num_views: int, width: int, height: int, factor: int, focal: float = 50.0) -> np.ndarray:
    """[N, 17] LLFF rows for cameras on a small arc, each turned a little about the vertical axis.

    The stored (height, width, focal) describe full-resolution images ``factor`` times larger than ``width`` x
    ``height``, as in a real LLFF capture read from images_<factor>/.
    """
    rows = []
    for i in range(num_views):
        angle = 0.05 * (i - num_views / 2)
        # OpenGL camera-to-world axes (right, up, back), turned about y.
        right = np.array([np.cos(angle), 0.0, -np.sin(angle)])
        up = np.array([0.0, 1.0, 0.0])
        back = np.cross(right, up)
        rot_llff = np.stack([-up, right, back], axis=1)  # LLFF columns: (down, right, back)
        centre = np.array([0.2 * i, 0.03 * i, 0.1 * np.sin(i)])
        hwf = np.array([height * factor, width * factor, focal * factor])
        pose = np.concatenate([rot_llff, centre[:, None], hwf[:, None]], axis=1)
        rows.append(np.concatenate([pose.reshape(-1), [1.0 + 0.1 * i, 10.0 + i]]))
    return np.asarray(rows)


def write_spinnerf_scene(
    root: Path,
    num_views: int = 6,
    num_test: int = 2,
    factor: int = 4,
    width: int = WIDTH,
    height: int = HEIGHT,
    masks: Optional[Dict[int, np.ndarray]] = None,
    mask_scale: int = 1,
    scene_info: Optional[Dict] = None,
) -> Path:
    """A SPIn-NeRF-layout scene: images_<factor>/img_XXX.png, images_<factor>/label/ (0/1 masks), poses_bounds.npy.

    The first ``num_test`` images get no mask (object-free views); every other view gets ``masks[i]`` or the
    default box. ``mask_scale`` > 1 writes masks that many times smaller than the images.
    """
    root = Path(root)
    folder = root / ("images" if factor == 1 else f"images_{factor}")
    (folder / "label").mkdir(parents=True, exist_ok=True)
    masks = masks or {}
    for i in range(num_views):
        name = f"img_{i:03d}.png"
        Image.fromarray(random_image(i, width, height)).save(folder / name)
        if i >= num_test:
            mask = masks.get(i, box_mask(width, height, BOX if width > BOX[3] and height > BOX[1] else (1, 3, 1, 3)))
            if mask_scale > 1:
                mask = mask[::mask_scale, ::mask_scale]
            Image.fromarray(mask.astype(np.uint8)).save(folder / "label" / name)
    np.save(root / "poses_bounds.npy", llff_poses_bounds(num_views, width, height, factor))
    if scene_info is not None:
        (root / SCENE_INFO_FILE).write_text(json.dumps(scene_info))
    return root


def write_nerfstudio_scene(root: Path, frames: Sequence[Dict], width: int = WIDTH, height: int = HEIGHT) -> Path:
    """A transforms.json capture. Each entry of ``frames`` may hold ``mask`` (uint8 array) and ``object_free``.

    Images go to images/frame_XX.png, masks (0/255) to inpaint_masks/frame_XX.png.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "inpaint_masks").mkdir(exist_ok=True)
    json_frames: List[Dict] = []
    for i, spec in enumerate(frames):
        name = f"frame_{i:02d}.png"
        Image.fromarray(random_image(100 + i, width, height)).save(root / "images" / name)
        c2w = np.eye(4)
        c2w[:3, 3] = [0.3 * i, 0.1 * (i % 2), 2.0]
        frame: Dict = {"file_path": f"images/{name}", "transform_matrix": c2w.tolist()}
        if spec.get("mask") is not None:
            Image.fromarray(spec["mask"].astype(np.uint8) * 255).save(root / "inpaint_masks" / name)
            frame["inpaint_mask_path"] = f"inpaint_masks/{name}"
        if spec.get("object_free"):
            frame["object_free"] = True
        json_frames.append(frame)
    meta = {
        "camera_model": "OPENCV",
        "fl_x": 40.0,
        "fl_y": 40.0,
        "cx": width / 2,
        "cy": height / 2,
        "w": width,
        "h": height,
        "frames": json_frames,
    }
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def parse(config, split: str = "train"):
    """DataparserOutputs of ``split`` from a parser config."""
    return config.setup().get_dataparser_outputs(split)


def dataset_masks(outputs) -> np.ndarray:
    """Bool [N, H, W] inpainting masks as the training dataset loads them (after dilation)."""
    dataset = InpaintDataset(outputs)
    return np.stack([dataset.inpaint_mask(i).numpy() for i in range(len(dataset))])


def raw_world_centres(outputs) -> np.ndarray:
    """[N, 3] camera centres with the parser's scale and dataparser_transform undone."""
    transform = outputs.dataparser_transform.double().numpy()
    centres = outputs.cameras.camera_to_worlds[:, :, 3].double().numpy() / outputs.dataparser_scale
    return (centres - transform[:, 3]) @ transform[:, :3]  # rot^T (x - t) for each row


# ------------------------------------------------------------------------------------ LLFF poses (real fern)
@pytest.fixture(scope="module")
def fern_outputs(tmp_path_factory):
    """Train outputs and raw poses_bounds of the real fern capture, read from images_8/ by spinnerf-data."""
    require_fern()
    scene = build_fern_spinnerf_scene(tmp_path_factory.mktemp("fern"), factor=8)
    config = SpinNerfDataParserConfig(data=scene, downscale_factor=8, num_test_views=0, mask_dilation_iterations=0)
    return parse(config, "train"), np.load(scene / "poses_bounds.npy"), scene


def test_llff_pose_conversion_recovers_raw_camera_centres_and_axes(fern_outputs):
    outputs, raw, _ = fern_outputs
    c2w = outputs.cameras.camera_to_worlds.double().numpy()  # [N, 3, 4], normalised space
    rot_t = outputs.dataparser_transform.double().numpy()[:, :3]  # raw world -> normalised (before scale)
    assert len(c2w) == len(raw) == 20

    # Undo the parser's scale and orientation, then compare with the raw LLFF rows.
    centres = raw_world_centres(outputs)
    axes = np.einsum("ji,njk->nik", rot_t, c2w[:, :, :3])  # rot_t^T @ R
    mats = raw[:, :15].reshape(-1, 3, 5)
    llff_down, llff_right, llff_back = mats[:, :, 0], mats[:, :, 1], mats[:, :, 2]
    extent = np.abs(mats[:, :, 3]).max()
    np.testing.assert_allclose(centres, mats[:, :, 3], atol=1e-4 * extent)
    np.testing.assert_allclose(axes[:, :, 0], llff_right, atol=1e-5)  # OpenGL x = right
    np.testing.assert_allclose(axes[:, :, 1], -llff_down, atol=1e-5)  # OpenGL y = up
    # OpenGL z = backwards, so the viewing direction -z is LLFF's forward direction -back.
    np.testing.assert_allclose(axes[:, :, 2], llff_back, atol=1e-5)


def test_llff_intrinsics_scaled_to_actual_image_size(fern_outputs):
    outputs, raw, scene = fern_outputs
    with Image.open(sorted((scene / "images_8").glob("*.png"))[0]) as first:
        width, height = first.size
    full_h, full_w, focal = raw[0, :15].reshape(3, 5)[:, 4]
    assert (width, height) != (int(full_w), int(full_h))  # the file's hwf is for the full-resolution images
    cams = outputs.cameras
    assert torch.all(cams.width == width) and torch.all(cams.height == height)
    expected_focal = focal * width / full_w
    np.testing.assert_allclose(cams.fx.numpy(), expected_focal, rtol=1e-5)
    np.testing.assert_allclose(cams.fy.numpy(), expected_focal, rtol=1e-5)
    np.testing.assert_allclose(cams.cx.numpy(), width / 2, rtol=1e-6)
    np.testing.assert_allclose(cams.cy.numpy(), height / 2, rtol=1e-6)


# ------------------------------------------------------------------------------------- SPIn-NeRF layout
def test_spinnerf_first_k_sorted_views_are_object_free_eval_views(tmp_path):
    scene = write_spinnerf_scene(tmp_path, num_views=6, num_test=2)
    names = sorted(p.name for p in (scene / "images_4").glob("*.png"))
    config = SpinNerfDataParserConfig(data=scene, downscale_factor=4, num_test_views=2)
    parser = config.setup()
    train, evaluation = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("val")
    assert [p.name for p in train.image_filenames] == names[2:]
    assert [p.name for p in evaluation.image_filenames] == names[:2]
    assert train.metadata[OBJECT_FREE_KEY] is False and evaluation.metadata[OBJECT_FREE_KEY] is True
    assert [p.name for p in train.metadata["inpaint_mask_filenames"]] == names[2:]
    assert evaluation.metadata["inpaint_mask_filenames"] == [None, None]
    # Eval cameras are the raw poses of the first two images, in the same normalised space as the train ones.
    assert torch.equal(evaluation.dataparser_transform, train.dataparser_transform)
    raw_centres = np.load(scene / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)[:, :, 3]
    np.testing.assert_allclose(raw_world_centres(evaluation), raw_centres[:2], atol=1e-5)
    np.testing.assert_allclose(raw_world_centres(train), raw_centres[2:], atol=1e-5)


def test_spinnerf_zero_test_views_trains_on_every_view(tmp_path):
    scene = write_spinnerf_scene(tmp_path, num_views=4, num_test=0)
    parser = SpinNerfDataParserConfig(data=scene, downscale_factor=4, num_test_views=0).setup()
    assert len(parser.get_dataparser_outputs("train").image_filenames) == 4
    assert len(parser.get_dataparser_outputs("val").image_filenames) == 0


def test_spinnerf_default_uses_40_test_views(tmp_path):
    scene = write_spinnerf_scene(tmp_path, num_views=42, num_test=40, width=8, height=6)
    outputs = parse(SpinNerfDataParserConfig(data=scene, downscale_factor=4, mask_dilation_iterations=0))
    assert [p.name for p in outputs.image_filenames] == ["img_040.png", "img_041.png"]


@pytest.mark.parametrize("factor", [1, 2])
def test_spinnerf_downscale_factor_selects_folder_and_scales_focal(tmp_path, factor):
    # images/ at 80x60 and images_2/ at 40x30, both with masks; poses describe 80x60 images with focal 100.
    write_spinnerf_scene(
        tmp_path,
        num_views=3,
        num_test=1,
        factor=1,
        width=80,
        height=60,
        masks={i: box_mask(80, 60, (20, 40, 30, 50)) for i in range(3)},
    )
    write_spinnerf_scene(tmp_path, num_views=3, num_test=1, factor=2)
    np.save(tmp_path / "poses_bounds.npy", llff_poses_bounds(3, 80, 60, factor=1, focal=100.0))
    outputs = parse(SpinNerfDataParserConfig(data=tmp_path, downscale_factor=factor, num_test_views=1))
    folder = "images" if factor == 1 else "images_2"
    assert {p.parent.name for p in outputs.image_filenames} == {folder}
    assert int(outputs.cameras.width[0]) == 80 // factor and int(outputs.cameras.height[0]) == 60 // factor
    assert float(outputs.cameras.fx[0]) == pytest.approx(100.0 / factor)


def test_empty_images_folder_is_refused_for_factor_1_and_named_when_skipped(tmp_path, capsys):
    write_spinnerf_scene(tmp_path, num_views=3, num_test=1, factor=2)
    (tmp_path / "images").mkdir()  # e.g. a copy that left the full-resolution images behind
    with pytest.raises(MaldInputError) as info:
        parse(SpinNerfDataParserConfig(data=tmp_path, downscale_factor=1, num_test_views=1))
    text = str(info.value)
    assert "images/ holds no images" in text and "--downscale-factor 1" in text and "images_2/" in text

    capsys.readouterr()
    outputs = parse(SpinNerfDataParserConfig(data=tmp_path, num_test_views=1))  # no factor: the parser picks
    said = " ".join(capsys.readouterr().out.split())
    assert {p.parent.name for p in outputs.image_filenames} == {"images_2"}
    assert "Skipping images/: no images in it." in said
    assert f"images_2 (downscale factor 2): 3 images of {WIDTH}x{HEIGHT}, 2 for training." in said


def test_spinnerf_reads_masks_from_label_folder(tmp_path):
    masks = {2: box_mask(box=(0, 5, 0, 5)), 3: box_mask(box=(20, 30, 30, 40))}
    scene = write_spinnerf_scene(tmp_path, num_views=4, num_test=2, masks=masks)
    outputs = parse(
        SpinNerfDataParserConfig(data=scene, downscale_factor=4, num_test_views=2, mask_dilation_iterations=0)
    )
    loaded = dataset_masks(outputs)
    np.testing.assert_array_equal(loaded[0], masks[2].astype(bool))
    np.testing.assert_array_equal(loaded[1], masks[3].astype(bool))


# ----------------------------------------------------------------------------------------------- masks
def test_mask_values_01_and_0255_read_the_same(tmp_path):
    mask = box_mask()
    Image.fromarray(mask).save(tmp_path / "m01.png")
    Image.fromarray(mask * 255).save(tmp_path / "m255.png")
    as_01 = read_mask(tmp_path / "m01.png", (HEIGHT, WIDTH))
    as_255 = read_mask(tmp_path / "m255.png", (HEIGHT, WIDTH))
    assert as_01.dtype == bool and as_01.sum() == mask.sum()
    np.testing.assert_array_equal(as_01, as_255)
    np.testing.assert_array_equal(as_01, mask.astype(bool))


def test_mask_at_exact_2x_downscale_is_resized_nearest(tmp_path):
    # A pattern with single-pixel detail at half size, so any interpolation other than nearest would show.
    small = (np.random.default_rng(3).random((HEIGHT // 2, WIDTH // 2)) < 0.3).astype(np.uint8)
    full = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    scene = write_spinnerf_scene(tmp_path, num_views=3, num_test=1, masks={1: full, 2: full}, mask_scale=2)
    with Image.open(scene / "images_4" / "label" / "img_001.png") as written:
        assert written.size == (WIDTH // 2, HEIGHT // 2)
    outputs = parse(
        SpinNerfDataParserConfig(data=scene, downscale_factor=4, num_test_views=1, mask_dilation_iterations=0)
    )
    loaded = dataset_masks(outputs)
    assert loaded.shape == (2, HEIGHT, WIDTH)
    np.testing.assert_array_equal(loaded[0], full.astype(bool))


def test_mask_at_exact_2x_upscale_is_resized_nearest(tmp_path):
    # A full-resolution mask next to images_2-sized images: nearest keeps one pixel of every 2x2 block (the same
    # one everywhere); any averaging interpolation would not.
    scene = write_spinnerf_scene(tmp_path, num_views=2, num_test=1)
    big = (np.random.default_rng(4).random((HEIGHT * 2, WIDTH * 2)) < 0.4).astype(np.uint8)
    Image.fromarray(big * 255).save(scene / "images_4" / "label" / "img_001.png")
    outputs = parse(
        SpinNerfDataParserConfig(data=scene, downscale_factor=4, num_test_views=1, mask_dilation_iterations=0)
    )
    loaded = dataset_masks(outputs)[0]
    assert loaded.shape == (HEIGHT, WIDTH)
    assert any(np.array_equal(loaded, big[dy::2, dx::2].astype(bool)) for dy in (0, 1) for dx in (0, 1))


@pytest.mark.parametrize("kernel,iterations", [(5, 1), (5, 2), (3, 3)])
def test_mask_dilation_grows_mask_by_configured_kernel_and_iterations(tmp_path, kernel, iterations):
    dot = np.zeros((HEIGHT, WIDTH), np.uint8)
    dot[15, 20] = 1
    scene = write_spinnerf_scene(tmp_path, num_views=2, num_test=0, masks={0: dot, 1: dot})
    outputs = parse(
        SpinNerfDataParserConfig(
            data=scene,
            downscale_factor=4,
            num_test_views=0,
            mask_dilation_kernel=kernel,
            mask_dilation_iterations=iterations,
        )
    )
    grown = dataset_masks(outputs)[0]
    reach = (kernel // 2) * iterations
    expected = np.zeros_like(grown)
    expected[15 - reach : 15 + reach + 1, 20 - reach : 20 + reach + 1] = True
    np.testing.assert_array_equal(grown, expected)


def test_mask_dilation_zero_iterations_keeps_mask_as_drawn(tmp_path):
    scene = write_spinnerf_scene(tmp_path, num_views=2, num_test=0)
    outputs = parse(
        SpinNerfDataParserConfig(data=scene, downscale_factor=4, num_test_views=0, mask_dilation_iterations=0)
    )
    np.testing.assert_array_equal(dataset_masks(outputs)[0], box_mask().astype(bool))


def test_mald_data_dilates_spinnerf_masks_like_spinnerf_by_default(tmp_path):
    scene = write_spinnerf_scene(tmp_path, num_views=3, num_test=1, scene_info={"num_test_views": 1})
    grown = dataset_masks(parse(MaldDataParserConfig(data=scene)))[0]
    spinnerf_default = cv2.dilate(box_mask(), np.ones((5, 5), np.uint8), iterations=5).astype(bool)
    np.testing.assert_array_equal(grown, spinnerf_default)


# -------------------------------------------------------------------------------------- nerfstudio format
def _nerfstudio_frames() -> List[Dict]:
    corner = box_mask(box=(0, 8, 0, 8))
    return [
        {"object_free": True},  # frame_00: eval ground truth
        {"mask": box_mask()},  # frame_01: train, masked
        {},  # frame_02: train, fully observed
        {"object_free": True, "mask": box_mask()},  # frame_03: eval, with the object's region for M-LPIPS
        {"mask": corner},  # frame_04: train, masked in a corner
    ]


def test_nerfstudio_format_object_free_frames_are_eval_only(tmp_path):
    scene = write_nerfstudio_scene(tmp_path, _nerfstudio_frames())
    parser = InpaintNerfstudioDataParserConfig(data=scene).setup()
    train, evaluation = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("val")
    assert [p.name for p in train.image_filenames] == ["frame_01.png", "frame_02.png", "frame_04.png"]
    assert [p.name for p in evaluation.image_filenames] == ["frame_00.png", "frame_03.png"]
    assert train.metadata[OBJECT_FREE_KEY] is False and evaluation.metadata[OBJECT_FREE_KEY] is True
    assert len(train.cameras) == 3 and len(evaluation.cameras) == 2
    eval_masks = evaluation.metadata["inpaint_mask_filenames"]
    assert eval_masks[0] is None and eval_masks[1].name == "frame_03.png"


def test_nerfstudio_format_reads_inpaint_mask_path_and_unmasked_frames_are_fully_observed(tmp_path):
    frames = _nerfstudio_frames()
    scene = write_nerfstudio_scene(tmp_path, frames)
    outputs = parse(InpaintNerfstudioDataParserConfig(data=scene), "train")
    loaded = dataset_masks(outputs)
    np.testing.assert_array_equal(loaded[0], frames[1]["mask"].astype(bool))
    assert not loaded[1].any()  # frame_02 has no inpaint_mask_path
    np.testing.assert_array_equal(loaded[2], frames[4]["mask"].astype(bool))
    # The training dataset's items carry the mask next to the image.
    item = InpaintDataset(outputs)[0]
    assert item["image"].shape == (HEIGHT, WIDTH, 3)
    assert torch.equal(item["inpaint_mask"][..., 0], torch.from_numpy(frames[1]["mask"].astype(bool)))


# ------------------------------------------------------------------------------------ layout detection
def test_auto_parser_picks_nerfstudio_layout(tmp_path):
    scene = write_nerfstudio_scene(tmp_path, _nerfstudio_frames())
    parser = MaldDataParserConfig(data=scene).setup()
    resolved = parser.resolved_config()
    assert isinstance(resolved, InpaintNerfstudioDataParserConfig)
    assert resolved.mask_dilation_iterations == 0
    train = parser.get_dataparser_outputs("train")
    assert [p.name for p in train.image_filenames] == ["frame_01.png", "frame_02.png", "frame_04.png"]
    # A path to the .json file itself is the same layout.
    assert isinstance(
        MaldDataParserConfig(data=scene / "transforms.json").setup().resolved_config(),
        InpaintNerfstudioDataParserConfig,
    )


def test_auto_parser_picks_spinnerf_layout(tmp_path):
    # Big enough that a small mask dilated like SPIn-NeRF's (radius 10) leaves most of the view observed.
    scene = write_spinnerf_scene(tmp_path, num_views=42, num_test=40, width=40, height=30,
                                 masks={40: box_mask(40, 30, (14, 16, 19, 21)), 41: box_mask(40, 30, (14, 16, 19, 21))})
    parser = MaldDataParserConfig(data=scene, downscale_factor=4).setup()
    resolved = parser.resolved_config()
    assert isinstance(resolved, SpinNerfDataParserConfig)
    assert resolved.mask_dilation_iterations == 5
    # labels only for the last two images: the first 40 are the object-free views
    assert len(parser.get_dataparser_outputs("train").image_filenames) == 2
    assert len(parser.get_dataparser_outputs("val").image_filenames) == 40


def test_auto_parser_folder_with_neither_layout_gives_clear_error(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(random_image(0)).save(tmp_path / "images" / "a.png")
    with pytest.raises(MaldInputError) as info:
        parse(MaldDataParserConfig(data=tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message
    assert "transforms.json" in message and "poses_bounds.npy" in message
    assert info.value.fix and info.value.fix.rstrip(".") in message


def test_auto_parser_missing_folder_gives_clear_error(tmp_path):
    missing = tmp_path / "no_such_scene"
    with pytest.raises(MaldInputError) as info:
        parse(MaldDataParserConfig(data=missing))
    assert str(missing) in str(info.value) and info.value.fix


def test_mald_scene_json_num_test_views_is_honoured(tmp_path):
    scene = write_spinnerf_scene(tmp_path, num_views=6, num_test=3, scene_info={"num_test_views": 3})
    parser = MaldDataParserConfig(data=scene).setup()
    assert [p.name for p in parser.get_dataparser_outputs("train").image_filenames] == [
        "img_003.png",
        "img_004.png",
        "img_005.png",
    ]
    assert len(parser.get_dataparser_outputs("val").image_filenames) == 3
    # An explicit --num-test-views wins over the file.
    explicit = MaldDataParserConfig(data=scene, num_test_views=4).setup()
    assert len(explicit.get_dataparser_outputs("val").image_filenames) == 4


def test_mald_scene_json_without_num_test_views_is_an_input_error(tmp_path):
    scene = write_spinnerf_scene(tmp_path, num_views=3, num_test=1, scene_info={"test_views": 1})
    with pytest.raises(MaldInputError) as info:
        parse(MaldDataParserConfig(data=scene))
    assert str(scene / SCENE_INFO_FILE) in str(info.value) and info.value.fix
