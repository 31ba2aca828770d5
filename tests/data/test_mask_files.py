"""Masks are read as the user drew them: any colour, alpha, 0/1, 0/100, 0/255, 16-bit, JPEG; bad masks stop the run.

Each encoding is written over a copy of the demo scene's training masks and parsed like ``ns-train --data`` does;
the result must match what the canonical 0/255 PNG masks give.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from mald_nerfstudio.data.auto_dataparser import MaldDataParserConfig
from mald_nerfstudio.data.dataset import InpaintDataset
from mald_nerfstudio.data.image_io import read_mask
from mald_nerfstudio.errors import MaldInputError

Writer = Callable[[np.ndarray, Path], Path]


def _scene_masks(scene: Path) -> np.ndarray:
    """Bool [N, H, W] training masks of a scene as the data parser and dataset read them (no dilation)."""
    parser = MaldDataParserConfig(data=scene, mask_dilation_iterations=0).setup()
    dataset = InpaintDataset(parser.get_dataparser_outputs("train"))
    return np.stack([dataset.inpaint_mask(i).numpy() for i in range(len(dataset))])


def _rewrite_masks(demo_scene: Path, tmp_path: Path, write: Writer) -> Path:
    """A copy of the demo scene whose full-resolution masks are re-encoded by ``write(object_bool, old_path)``."""
    scene = tmp_path / "scene"
    shutil.copytree(demo_scene, scene)
    for path in sorted((scene / "images" / "label").glob("*.png")):
        with Image.open(path) as pil:
            obj = np.asarray(pil.convert("L")) > 0
        path.unlink()
        write(obj, path)
    return scene


def _red_on_black(obj, path):
    rgb = np.zeros(obj.shape + (3,), np.uint8)
    rgb[obj, 0] = 255
    Image.fromarray(rgb).save(path)  # grey would be 76: the old >= 128 threshold read it as empty


def _zero_one_jpeg(obj, path):
    Image.fromarray(obj.astype(np.uint8)).save(path.with_suffix(".jpg"), format="JPEG", quality=90)


def _zero_hundred(obj, path):
    Image.fromarray(obj.astype(np.uint8) * 100).save(path)


def _alpha_only(obj, path):
    rgba = np.zeros(obj.shape + (4,), np.uint8)
    rgba[obj, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(path)


def _sixteen_bit(obj, path):
    Image.fromarray(obj.astype(np.uint16) * 65535).save(path)
    with Image.open(path) as written:
        assert written.mode.startswith("I")  # really a 16-bit file


def _white_on_black_opaque_rgba(obj, path):
    rgba = np.full(obj.shape + (4,), 255, np.uint8)
    rgba[~obj, :3] = 0
    Image.fromarray(rgba, mode="RGBA").save(path)  # constant alpha: the colour is the mask


@pytest.mark.parametrize(
    "write",
    [_red_on_black, _zero_hundred, _alpha_only, _sixteen_bit, _white_on_black_opaque_rgba],
    ids=["red-on-black", "0-100", "alpha-only", "16-bit", "opaque-rgba"],
)
def test_lossless_mask_encodings_read_exactly_like_the_0_255_png(demo_scene, tmp_path, write):
    reference = _scene_masks(demo_scene)
    assert reference.any(axis=(1, 2)).all(), "every demo training view has an object"
    np.testing.assert_array_equal(_scene_masks(_rewrite_masks(demo_scene, tmp_path, write)), reference)


def test_zero_one_mask_saved_as_jpeg_reads_as_the_object_despite_compression_noise(demo_scene, tmp_path):
    reference = _scene_masks(demo_scene)
    scene = _rewrite_masks(demo_scene, tmp_path, _zero_one_jpeg)
    sample = np.asarray(Image.open(next((scene / "images" / "label").glob("*.jpg"))))
    assert sample.max() == 2  # what JPEG made of the 0/1 values: the old >= 128 threshold read it as empty
    loaded = _scene_masks(scene)
    for got, want in zip(loaded, reference):
        iou = (got & want).sum() / (got | want).sum()
        assert iou > 0.9, iou


def test_jpeg_0_255_mask_of_a_thin_object_is_still_two_level(tmp_path):
    obj = np.zeros((60, 80), bool)
    obj[10:50, 38:41] = True  # a 3-pixel pole: JPEG ringing touches most of it
    Image.fromarray(obj.astype(np.uint8) * 255).convert("L").save(tmp_path / "pole.jpg", quality=75)
    got = read_mask(tmp_path / "pole.jpg", (60, 80))
    assert (got & obj).sum() / (got | obj).sum() > 0.8


def test_all_training_masks_empty_stops_with_a_clear_error(demo_scene, tmp_path):
    scene = _rewrite_masks(
        demo_scene, tmp_path, lambda obj, path: Image.fromarray(np.zeros_like(obj, np.uint8)).save(path)
    )
    with pytest.raises(MaldInputError) as info:
        _scene_masks(scene)
    text = str(info.value)
    assert "all 8 training masks are empty" in text and "object still there" in text
    assert str(scene / "images" / "label") in text


def test_photo_given_as_mask_is_refused_naming_the_values_found(demo_scene, tmp_path):
    def photo(obj, path):
        shutil.copy(demo_scene / "images" / path.name, path)

    scene = _rewrite_masks(demo_scene, tmp_path, photo)
    with pytest.raises(MaldInputError) as info:
        _scene_masks(scene)
    text = str(info.value)
    assert "not a two-level mask" in text and "distinct values" in text and "label" in text


def test_one_empty_mask_among_others_is_fine(demo_scene, tmp_path):
    scene = tmp_path / "scene"
    shutil.copytree(demo_scene, scene)
    first = sorted((scene / "images" / "label").glob("*.png"))[3]  # a training view (3 test views come first)
    with Image.open(first) as pil:
        Image.fromarray(np.zeros_like(np.asarray(pil.convert("L")))).save(first)
    masks = _scene_masks(scene)
    assert not masks[0].any() and masks[1:].any(axis=(1, 2)).all()
