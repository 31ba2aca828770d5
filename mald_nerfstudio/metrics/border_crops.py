"""Square crops around the inpainting-mask border, for C-FID / C-KID.

Scenes without ground-truth views (LLFF) are scored by FID/KID on crops centred on the border of the
inpainting region, where seams and texture shifts show. Crop centres are taken deterministically:

1. The border is the set of mask pixels with at least one 4-neighbour *inside the image* that is not masked
   (a morphological erosion whose out-of-image value never erodes, so where the mask touches the image edge
   there is no border: that is not a seam).
2. The border pixels are ordered along the mask's contours (OpenCV ``findContours``, all contours, holes
   included, in OpenCV's deterministic order) and ``num_crops`` of them are picked at evenly spaced positions
   of that ordered list (indices ``floor(k * L / num_crops)``, k = 0..num_crops-1).
3. Each crop of side ``crop_size`` is centred on its point (top-left = centre - crop_size // 2) and then shifted,
   not shrunk, to lie fully inside the image, so every crop has the same size.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from mald_nerfstudio.errors import MaldInputError


def mask_border_points(mask: Bool[Tensor, "H W"]) -> List[Tuple[int, int]]:
    """Border pixels ``(row, col)`` of the inpainting region, ordered along its contours."""
    mask_u8 = mask.detach().to("cpu", torch.uint8).numpy()
    if mask_u8.sum() == 0:
        return []
    # OpenCV's default border value for erosion never erodes, so the image edge is not a border.
    eroded = cv2.erode(mask_u8, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))
    border = (mask_u8 > 0) & (eroded == 0)
    contours, _ = cv2.findContours(mask_u8, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    points: List[Tuple[int, int]] = []
    seen = set()
    for contour in contours:
        for x, y in contour.reshape(-1, 2):
            key = (int(y), int(x))
            if border[key] and key not in seen:
                seen.add(key)
                points.append(key)
    return points


def border_crop_boxes(
    mask: Bool[Tensor, "H W"], crop_size: int, num_crops: int
) -> List[Tuple[int, int]]:
    """Top-left corners ``(top, left)`` of ``num_crops`` crops centred on the mask border (see module doc).

    Returns an empty list when the mask has no border (empty mask, or a mask covering the whole image).

    Raises:
        MaldInputError: the crop is larger than the image, or the sizes are not positive.
    """
    height, width = mask.shape
    if crop_size <= 0 or num_crops <= 0:
        raise MaldInputError(f"crop_size and num_crops must be positive, got {crop_size} and {num_crops}")
    if crop_size > min(height, width):
        raise MaldInputError(
            f"Border crops of {crop_size} px do not fit into a {height}x{width} image",
            fix="set the metrics config field `crop_size` to at most the shorter image side (e.g. 64 at low res)",
        )
    points = mask_border_points(mask)
    if not points:
        return []
    boxes = []
    for k in range(num_crops):
        row, col = points[(k * len(points)) // num_crops]
        top = min(max(row - crop_size // 2, 0), height - crop_size)
        left = min(max(col - crop_size // 2, 0), width - crop_size)
        boxes.append((top, left))
    return boxes


def border_crops(
    images: Sequence[Float[Tensor, "H W 3"]],
    masks: Sequence[Bool[Tensor, "H W"]],
    crop_size: int,
    num_crops: int,
) -> Float[Tensor, "N 3 S S"]:
    """All border crops of a set of images, stacked channels-first (images with an empty mask give none)."""
    if len(images) != len(masks):
        raise MaldInputError(f"Got {len(images)} images but {len(masks)} masks for the border crops")
    crops = []
    for image, mask in zip(images, masks):
        if image.shape[:2] != mask.shape:
            raise MaldInputError(
                f"A mask of shape {tuple(mask.shape)} does not match its image of shape {tuple(image.shape)}"
            )
        for top, left in border_crop_boxes(mask, crop_size, num_crops):
            crops.append(image[top : top + crop_size, left : left + crop_size].permute(2, 0, 1))
    if not crops:
        return torch.zeros((0, 3, crop_size, crop_size))
    return torch.stack(crops)


def observed_crops(
    images: Sequence[Float[Tensor, "H W 3"]],
    masks: Sequence[Bool[Tensor, "H W"]],
    crop_size: int,
    num_crops: int,
    seed: int = 0,
) -> Float[Tensor, "N 3 S S"]:
    """Reference crops for scenes without ground truth: per image, ``num_crops`` crops of observed pixels only
    (no mask pixel inside), at seeded random positions among those that fit; fewer where fewer fit."""
    generator = torch.Generator().manual_seed(seed)
    crops = []
    for image, mask in zip(images, masks):
        height, width = mask.shape
        if crop_size > min(height, width):
            raise MaldInputError(f"Crops of {crop_size} px do not fit into a {height}x{width} image")
        # A crop is allowed where the box-filtered mask is zero (integral image of the mask).
        integral = torch.nn.functional.pad(mask.to(torch.float64).cumsum(0).cumsum(1), (1, 0, 1, 0))
        s = crop_size
        inside = integral[s:, s:] - integral[:-s, s:] - integral[s:, :-s] + integral[:-s, :-s]
        tops, lefts = torch.nonzero(inside == 0, as_tuple=True)
        if len(tops) == 0:
            continue
        pick = torch.randperm(len(tops), generator=generator)[:num_crops]
        for top, left in zip(tops[pick].tolist(), lefts[pick].tolist()):
            crops.append(image[top : top + s, left : left + s].permute(2, 0, 1))
    if not crops:
        return torch.zeros((0, 3, crop_size, crop_size))
    return torch.stack(crops)
