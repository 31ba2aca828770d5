"""Crop/resize/paste geometry used to inpaint arbitrary image sizes at the model's working resolution."""

from __future__ import annotations

import math

import pytest
import torch

from mald_nerfstudio.inpaint.region import (
    CropBox,
    crop_resize,
    crop_resize_mask,
    mask_crop_box,
    paste_back,
    plan_region,
    working_resolution,
)


def _coordinate_image(height: int, width: int) -> torch.Tensor:
    """An image whose pixels encode their own position (row ramp, column ramp, constant)."""
    rows = torch.linspace(0.0, 1.0, height)[:, None].expand(height, width)
    cols = torch.linspace(0.0, 1.0, width)[None, :].expand(height, width)
    return torch.stack([rows, cols, torch.full((height, width), 0.5)], dim=-1)


def _smooth_image(height: int, width: int) -> torch.Tensor:
    """Low-frequency waves (periods of 90 to 150 px) that survive a 3-4x shrink and enlargement."""
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
    return torch.stack(
        [
            0.5 + 0.4 * torch.sin(2 * math.pi * rows / 90),
            0.5 + 0.4 * torch.cos(2 * math.pi * cols / 110),
            0.5 + 0.2 * torch.sin(2 * math.pi * (rows + cols) / 150),
        ],
        dim=-1,
    )


def test_empty_mask_has_no_crop():
    assert mask_crop_box(torch.zeros(40, 50, dtype=torch.bool), context_margin=0.5, min_size=16) is None
    assert plan_region(torch.zeros(40, 50, dtype=torch.bool), working_size=16, context_margin=0.5) is None


def test_box_contains_mask_plus_margin():
    mask = torch.zeros(400, 600, dtype=torch.bool)
    mask[100:140, 200:280] = True  # 40 x 80 box; margin 0.5 * 80 = 40 on each side
    box = mask_crop_box(mask, context_margin=0.5, min_size=0)
    assert box == CropBox(top=100 - 40, left=200 - 40, bottom=140 + 40, right=280 + 40)


def test_small_mask_in_large_image_is_cropped_at_native_scale():
    mask = torch.zeros(1000, 1500, dtype=torch.bool)
    mask[500:520, 700:730] = True
    plan = plan_region(mask, working_size=512, context_margin=0.25)
    assert (plan.box.height, plan.box.width) == (512, 512)
    assert plan.size == (512, 512)  # scale 1: neither upscaled nor downscaled
    rows, cols = plan.box.slices()
    assert mask[rows, cols].sum() == mask.sum()


def test_large_mask_is_downscaled_to_working_size_keeping_aspect():
    mask = torch.zeros(600, 1000, dtype=torch.bool)
    mask[100:500, 100:900] = True
    plan = plan_region(mask, working_size=256, context_margin=0.0)
    assert (plan.box.height, plan.box.width) == (400, 800)
    assert plan.size == (128, 256)
    assert plan.size[0] % 8 == 0 and plan.size[1] % 8 == 0


def test_working_resolution_is_multiple_of_eight_and_keeps_aspect():
    for height, width in [(567, 1008), (100, 37), (333, 333), (9, 700)]:
        h, w = working_resolution(height, width, long_side=512)
        assert h % 8 == 0 and w % 8 == 0
        assert max(h, w) == 512
        assert abs(h / w - height / width) <= 8 / min(h, w)


def test_image_smaller_than_working_size_uses_whole_image():
    mask = torch.zeros(48, 64, dtype=torch.bool)
    mask[10:20, 10:20] = True
    plan = plan_region(mask, working_size=128, context_margin=0.1)
    assert plan.box == CropBox(0, 0, 48, 64)
    assert plan.size == (96, 128)


def test_crop_paste_round_trip_restores_image_at_scale_one():
    image = _coordinate_image(90, 120)
    mask = torch.zeros(90, 120, dtype=torch.bool)
    mask[40:50, 60:70] = True
    plan = plan_region(mask, working_size=32, context_margin=0.2)
    assert plan.size == (plan.box.height, plan.box.width)
    patch = crop_resize(image, plan)
    assert torch.equal(paste_back(torch.zeros_like(image), patch, plan)[plan.box.slices()], image[plan.box.slices()])


def test_fill_lands_on_mask_near_image_corner():
    height, width = 120, 160
    image = _coordinate_image(height, width)
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[-12:, -9:] = True  # touches the bottom-right corner
    plan = plan_region(mask, working_size=48, context_margin=0.5)
    box = plan.box
    assert box.bottom == height and box.right == width and box.top >= 0 and box.left >= 0
    assert plan.size[0] % 8 == 0 and plan.size[1] % 8 == 0

    crop = crop_resize(image, plan)
    crop_mask = crop_resize_mask(mask, plan)
    assert crop_mask.shape == (1, *plan.size)
    fill_colour = torch.tensor([1.0, 0.0, 1.0])[:, None, None]
    filled = torch.where(crop_mask, fill_colour, crop)
    out = paste_back(image, filled, plan)

    assert torch.allclose(out[mask], fill_colour.flatten().expand(int(mask.sum()), 3), atol=1e-4)
    outside_box = torch.ones(height, width, dtype=torch.bool)
    outside_box[box.slices()] = False
    assert torch.equal(out[outside_box], image[outside_box])
    # Away from the hole (beyond resampling reach) the pasted crop reproduces the image at the right place.
    far = torch.zeros(height, width, dtype=torch.bool)
    far[box.slices()] = True
    far[-24:, -20:] = False
    assert torch.allclose(out[far], image[far], atol=0.02)


def test_mask_survives_downscaling():
    mask = torch.zeros(800, 800, dtype=torch.bool)
    mask[0:700, 0:700] = True
    mask[750, 790] = True  # a single pixel must not vanish at working resolution
    plan = plan_region(mask, working_size=64, context_margin=0.0)
    small = crop_resize_mask(mask, plan)[0]
    scale_r, scale_c = plan.size[0] / plan.box.height, plan.size[1] / plan.box.width
    assert small[int((750 - plan.box.top) * scale_r), int((790 - plan.box.left) * scale_c)]


def test_crop_up_to_max_size_is_filled_at_its_own_resolution():
    """At SPIn-NeRF's 1008 x 756 a 700 x 903 crop is not resampled: only padded (edge pixels repeated) to 8."""
    height, width = 756, 1008
    image = _coordinate_image(height, width)
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[30:730, 50:953] = True
    plan = plan_region(mask, working_size=512, context_margin=0.0, max_size=1024)
    assert (plan.box.height, plan.box.width) == (700, 903)
    assert not plan.resampled and plan.content_size == (700, 903)
    assert plan.size == (704, 904)

    crop = crop_resize(image, plan)
    assert crop.shape == (3, 704, 904)
    box_pixels = image[plan.box.slices()].permute(2, 0, 1)
    assert torch.equal(crop[:, :700, :903], box_pixels)  # bit-exact: no resampling
    assert torch.equal(crop[:, 700:, :903], box_pixels[:, -1:].expand(3, 4, 903))  # bottom padding repeats
    assert torch.equal(crop[:, :700, 903:], box_pixels[:, :, -1:])  # right padding repeats
    crop_mask = crop_resize_mask(mask, plan)
    assert torch.equal(crop_mask[0, :700, :903], mask[plan.box.slices()])
    assert crop_mask[0, 700:].all() and crop_mask[0, :, 903:].all()  # the hole's edge pixels stay holes

    patch = torch.rand(3, 704, 904)
    out = paste_back(image, patch, plan)
    assert torch.equal(out[plan.box.slices()], patch[:, :700, :903].permute(1, 2, 0))  # padding dropped, unscaled


def test_crop_beyond_max_size_is_shrunk_to_it():
    mask = torch.zeros(756, 1008, dtype=torch.bool)
    mask[30:730, 50:953] = True
    plan = plan_region(mask, working_size=512, context_margin=0.0, max_size=768)
    assert (plan.box.height, plan.box.width) == (700, 903)
    assert plan.resampled and plan.size == plan.content_size
    assert max(plan.size) == 768 and plan.size[0] % 8 == 0
    assert crop_resize(_coordinate_image(756, 1008), plan).shape == (3, *plan.size)
    # Without max_size the old behaviour: everything above the working size is shrunk to it.
    assert max(plan_region(mask, working_size=512, context_margin=0.0).size) == 512


def test_max_size_must_be_at_least_working_size():
    mask = torch.ones(64, 64, dtype=torch.bool)
    with pytest.raises(ValueError, match="max_size"):
        plan_region(mask, working_size=64, context_margin=0.0, max_size=32)


def test_round_trip_through_resampling_keeps_a_smooth_image_in_place():
    """Shrink (about 3.5x) and enlarge back: a smooth image survives, nothing outside the box is touched, and the
    enlarged crop lands on its box (a paste one pixel off exceeds the tolerance, checked below)."""
    height, width = 240, 320
    image = _smooth_image(height, width)
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[70:170, 90:230] = True
    plan = plan_region(mask, working_size=64, context_margin=0.25, max_size=64)
    assert plan.resampled and plan.box.height > 2 * plan.size[0] and plan.box.width > 2 * plan.size[1]

    target = torch.rand(height, width, 3)
    out = paste_back(target, crop_resize(image, plan), plan)
    outside_box = torch.ones(height, width, dtype=torch.bool)
    outside_box[plan.box.slices()] = False
    assert torch.equal(out[outside_box], target[outside_box])

    rows, cols = plan.box.slices()
    error = (out[rows, cols] - image[rows, cols]).abs()
    interior = error[12:-12, 12:-12]  # more than 3 working pixels from the box's edges
    assert error.mean() < 0.002 and interior.max() < 0.002
    # The tolerance tells positions apart: the same image one pixel off is further from it than that.
    off_by_one = torch.roll(image, shifts=(1, 1), dims=(0, 1))[rows, cols]
    assert (off_by_one - image[rows, cols]).abs().mean() > 5 * 0.002

    # A fill at working resolution comes back over the hole (the mask, grown when shrunk, loses nothing).
    fill = torch.tensor([1.0, 0.0, 1.0])
    crop_mask = crop_resize_mask(mask, plan)
    filled = paste_back(image, torch.where(crop_mask, fill[:, None, None], crop_resize(image, plan)), plan)
    assert torch.allclose(filled[75:165, 95:225], fill.expand(90, 130, 3), atol=1e-3)
