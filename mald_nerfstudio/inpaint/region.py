"""Crop-and-paste geometry for inpainting images of any size with a fixed-resolution model.

A latent diffusion model works best near its native resolution (512 px for Stable Diffusion 2). Running it on a
whole 1008 x 567 image downscales a small object's surroundings and loses detail; running it on the bare mask
box upscales a tiny hole into a blurry fill. So each view is handled as:

1. :func:`mask_crop_box`: the mask's bounding box, grown by a context margin, then grown to at least the
   model's working size (when the image is large enough) so a small hole is filled at native scale, centred
   on the mask, shifted and clamped to stay inside the image (masks at corners and borders).
2. :func:`plan_region`: the resolution the model sees the crop at. A crop whose long side is at most
   ``max_size`` is filled at its own resolution: not resampled, only padded at its bottom and right (edge pixels
   repeated) to a multiple of the VAE factor. A longer crop is shrunk (:func:`working_resolution`: long side
   ``max_size``, aspect ratio kept, sides multiples of the VAE factor), filled and enlarged back with bicubic
   resampling, so its fill is softer than the image. A crop is only upscaled (to the working size) when the image
   itself is smaller than the working size.
3. :func:`crop_resize` the image, mask and start image into the working resolution, inpaint them, and
   :func:`paste_back` the result into the box at the original size.

All functions are pure torch and need no diffusion model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor


@dataclass(frozen=True)
class CropBox:
    """A pixel box ``[top, bottom) x [left, right)`` inside an image."""

    top: int
    """First row inside the box."""
    left: int
    """First column inside the box."""
    bottom: int
    """First row below the box."""
    right: int
    """First column right of the box."""

    @property
    def height(self) -> int:
        """Box height in pixels."""
        return self.bottom - self.top

    @property
    def width(self) -> int:
        """Box width in pixels."""
        return self.right - self.left

    def slices(self) -> Tuple[slice, slice]:
        """Row and column slices selecting the box from an ``[H, W, ...]`` array."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


@dataclass(frozen=True)
class RegionPlan:
    """Where one view is cropped and at which resolution the model sees the crop."""

    box: CropBox
    """The crop in the full image."""
    size: Tuple[int, int]
    """(height, width) of the model's input: ``content_size`` padded at the bottom and right to the VAE factor."""
    content_size: Tuple[int, int]
    """(height, width) the crop is resampled to inside the model's input; the box's own size when not resampled."""

    @property
    def resampled(self) -> bool:
        """Whether the crop is resized (shrunk or enlarged) for the model rather than filled at its own resolution."""
        return self.content_size != (self.box.height, self.box.width)


def _grow_interval(start: int, stop: int, length: int, limit: int) -> Tuple[int, int]:
    """Grow ``[start, stop)`` symmetrically to ``length`` (at most ``limit``) and shift it inside ``[0, limit)``."""
    length = min(max(length, stop - start), limit)
    extra = length - (stop - start)
    start = start - extra // 2
    start = min(max(start, 0), limit - length)
    return start, start + length


def mask_crop_box(mask: Bool[Tensor, "H W"], context_margin: float, min_size: int) -> Optional[CropBox]:
    """The box to crop around ``mask``; None when the mask is empty.

    Args:
        mask: True where the image must be filled.
        context_margin: context added on each side, as a fraction of the mask box's longer side.
        min_size: smallest crop side in pixels (usually the model's working size); limited by the image size.
    """
    if context_margin < 0:
        raise ValueError(f"context_margin must be >= 0, got {context_margin}")
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if rows.numel() == 0:
        return None
    height, width = mask.shape
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    margin = int(math.ceil(context_margin * max(bottom - top, right - left)))
    top, bottom = _grow_interval(top, bottom, bottom - top + 2 * margin, height)
    left, right = _grow_interval(left, right, right - left + 2 * margin, width)
    top, bottom = _grow_interval(top, bottom, min_size, height)
    left, right = _grow_interval(left, right, min_size, width)
    return CropBox(top=top, left=left, bottom=bottom, right=right)


def working_resolution(height: int, width: int, long_side: int, multiple: int = 8) -> Tuple[int, int]:
    """(h, w) with the longer side equal to ``long_side``, the aspect ratio kept, each a multiple of ``multiple``."""
    if long_side % multiple != 0:
        raise ValueError(f"working size {long_side} must be a multiple of {multiple}")
    scale = long_side / max(height, width)
    return (
        max(multiple, int(round(height * scale / multiple)) * multiple),
        max(multiple, int(round(width * scale / multiple)) * multiple),
    )


def _round_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``value``."""
    return -(-value // multiple) * multiple


def plan_region(
    mask: Bool[Tensor, "H W"],
    working_size: int,
    context_margin: float,
    multiple: int = 8,
    max_size: Optional[int] = None,
) -> Optional[RegionPlan]:
    """Crop box and working resolution for one view; None when there is nothing to fill.

    Args:
        mask: True where the image must be filled.
        working_size: smallest crop side (where the image allows); crops of smaller images are upscaled to it.
        context_margin: context added on each side of the mask box, as a fraction of its longer side.
        multiple: the model's input sides must be multiples of this (the VAE factor).
        max_size: longest crop side filled at its own resolution; a longer crop is shrunk to this long side.
            None = ``working_size``.
    """
    max_size = working_size if max_size is None else max_size
    if max_size < working_size or max_size % multiple != 0:
        raise ValueError(f"max_size {max_size} must be a multiple of {multiple} and at least {working_size}")
    box = mask_crop_box(mask, context_margin=context_margin, min_size=working_size)
    if box is None:
        return None
    long_side = max(box.height, box.width)
    if long_side < working_size or long_side > max_size:  # an image smaller than the working size, or a huge crop
        target = working_size if long_side < working_size else max_size
        size = working_resolution(box.height, box.width, target, multiple)
        return RegionPlan(box=box, size=size, content_size=size)
    size = (_round_up(box.height, multiple), _round_up(box.width, multiple))
    return RegionPlan(box=box, size=size, content_size=(box.height, box.width))


def _resize(chw: Tensor, size: Tuple[int, int], mode: str) -> Tensor:
    """Resize ``[B, C, h, w]``; antialiased when shrinking so detail is averaged rather than aliased."""
    if tuple(chw.shape[-2:]) == tuple(size):
        return chw
    return F.interpolate(chw, size=size, mode=mode, align_corners=False, antialias=True)


def _pad_to(chw: Tensor, size: Tuple[int, int]) -> Tensor:
    """Pad ``[B, C, h, w]`` at the bottom and right to ``size`` by repeating the edge pixels."""
    pad_rows, pad_cols = size[0] - chw.shape[-2], size[1] - chw.shape[-1]
    if pad_rows == 0 and pad_cols == 0:
        return chw
    return F.pad(chw, (0, pad_cols, 0, pad_rows), mode="replicate")


def crop_resize(image: Float[Tensor, "H W C"], plan: RegionPlan, mode: str = "bicubic") -> Float[Tensor, "C h w"]:
    """Crop ``image`` to the plan's box and bring it to the working resolution (channels first)."""
    rows, cols = plan.box.slices()
    crop = image[rows, cols].permute(2, 0, 1)[None].float()
    return _pad_to(_resize(crop, plan.content_size, mode), plan.size)[0]


def crop_resize_mask(mask: Bool[Tensor, "H W"], plan: RegionPlan) -> Bool[Tensor, "1 h w"]:
    """Crop and resize a mask; a working pixel is masked when any mask pixel under it is (nothing is lost)."""
    rows, cols = plan.box.slices()
    crop = mask[rows, cols].float()[None, None]
    if plan.resampled:
        crop = (_resize(crop, plan.content_size, "bilinear") > 1e-3).float()
    return _pad_to(crop, plan.size)[0] > 0.5


def paste_back(
    target: Float[Tensor, "H W C"], patch: Float[Tensor, "C h w"], plan: RegionPlan, mode: str = "bicubic"
) -> Float[Tensor, "H W C"]:
    """Return a copy of ``target`` with ``patch`` (less its padding) resized to the box and written into it."""
    content = patch[:, : plan.content_size[0], : plan.content_size[1]]
    resized = _resize(content[None].float(), (plan.box.height, plan.box.width), mode)[0]
    out = target.clone()
    rows, cols = plan.box.slices()
    out[rows, cols] = resized.permute(1, 2, 0).to(out)
    return out
