"""Visibility-aware inpainting: which masked pixels another training view saw, and which no view saw.

The paper inpaints every view's whole mask, so background that other views observe behind the object is replaced
by an invented fill, and the adversarial loss then pulls the NeRF towards it against the rays that saw the truth.
Here, after a warm-up on the observed pixels, every training view's depth is rendered and a masked pixel of view
``i`` is *seen* when its surface point (the pixel's ray at the rendered depth) projects into another training view
``j``

* in front of that camera and inside its image,
* outside view ``j``'s mask (view ``j`` observed that pixel), and
* at a distance from camera ``j`` that agrees with view ``j``'s rendered depth there within a relative
  ``depth_tolerance`` (the occlusion test: farther means something in front hid the point from ``j``; nearer
  means view ``j`` sees through where the point would be, so the point is not a surface).

The *unseen* mask is the mask minus the seen pixels, cleaned (an opening drops specks of unseen pixels, a closing
fills pin-holes of seen ones) and slightly dilated, inside the mask. The inpainter fills only the unseen region,
and the adversarial patches are drawn over it (:mod:`mald_nerfstudio.pipeline.dataset_update`,
:mod:`mald_nerfstudio.data.datamanager`). A seen pixel outside the cleaned unseen region takes the colour the views
that saw its surface point observed there (their mean), and with ``train_seen`` it is trained like an observed
pixel on that colour, in its own view too; the inpainter gets those colours (the render where none was found) as
known content.

The projection is a pinhole camera's (nerfstudio's pixel convention: pixel ``(row, col)`` covers
``[col, col + 1] x [row, row + 1]``); lens distortion is ignored (LLFF / SPIn-NeRF images are undistorted).
Depths are distances along unit rays, as nerfacto renders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.model_components.ray_generators import RayGenerator

if TYPE_CHECKING:
    from nerfstudio.models.base_model import Model


@dataclass
class VisibilityConfig:
    """Inpaint only what no training view saw (the paper inpaints each view's whole mask)."""

    enabled: bool = False
    """Fill only each mask's unseen part, after the warm-up (off, the default: the paper's whole-mask inpainting)."""
    depth_tolerance: float = 0.05
    """Relative depth agreement of the occlusion test: |distance - rendered depth| <= tolerance x rendered depth."""
    cleaning_radius: float = 0.01
    """Radius of the opening / closing that cleans the unseen mask, as a fraction of the image's longer side."""
    dilation: float = 0.01
    """Growth of the cleaned unseen mask (kept inside the mask), as a fraction of the image's longer side."""
    recompute_every: int = 0
    """Steps after which a dataset update computes the unseen masks again from the improved geometry (0: once)."""
    train_seen: bool = True
    """Train each mask's seen part, in its own view too, on the colour the views that saw it observed."""


def _pixels(fraction: float, height: int, width: int) -> int:
    return int(round(fraction * max(height, width)))


def seen_pixels(
    points: Tensor, view: int, cameras: Cameras, depths: Tensor, masks: Tensor, tolerance: float,
    images: Optional[Tensor] = None,
) -> Tensor:
    """Which of view ``view``'s surface points (float [M, 3]) another training view observed (bool [M]); with
    ``images`` (the N views' colours [N, H, W, 3]) also the mean colour those views observed there (float [M, 3],
    zero where unseen), as ``(seen, colours)``.

    ``depths`` (float [N, H, W]) are every view's rendered depths along unit rays, ``masks`` (bool [N, H, W])
    every view's inpainting masks; ``cameras`` are the N training cameras (pinhole).
    """
    seen = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    colour_sum = torch.zeros((len(points), 3), device=points.device)
    count = torch.zeros(len(points), device=points.device)
    height, width = masks.shape[1], masks.shape[2]
    c2w = cameras.camera_to_worlds.to(points)
    fx, fy = cameras.fx[:, 0].to(points), cameras.fy[:, 0].to(points)
    cx, cy = cameras.cx[:, 0].to(points), cameras.cy[:, 0].to(points)
    for other in range(len(c2w)):
        if other == view:
            continue
        centre = c2w[other, :, 3]
        local = (points - centre) @ c2w[other, :, :3]  # world -> camera (OpenGL: x right, y up, looking along -z)
        z = -local[:, 2]
        front = z > 1e-6
        z = torch.where(front, z, torch.ones_like(z))
        col = torch.floor(fx[other] * local[:, 0] / z + cx[other])
        row = torch.floor(cy[other] - fy[other] * local[:, 1] / z)
        inside = front & (col >= 0) & (col < width) & (row >= 0) & (row < height)
        r = row.clamp(0, height - 1).long()
        c = col.clamp(0, width - 1).long()
        observed = ~masks[other, r, c].to(points.device)
        rendered = depths[other, r, c].to(points)
        distance = torch.linalg.norm(points - centre, dim=-1)
        agrees = (distance - rendered).abs() <= tolerance * rendered
        hit = inside & observed & agrees
        seen |= hit
        if images is not None:
            colour_sum += hit[:, None] * images[other, r, c].to(colour_sum)
            count += hit
    if images is None:
        return seen
    return seen, colour_sum / count.clamp(min=1)[:, None]


def clean_unseen(unseen: np.ndarray, mask: np.ndarray, radius_px: int, dilation_px: int) -> np.ndarray:
    """Opening then closing with a disc of ``radius_px`` (drops unseen specks, fills seen pin-holes), then a dilation
    by ``dilation_px``; the result stays inside ``mask``. bool [H, W] -> bool [H, W]."""
    out = unseen.astype(np.uint8)
    if radius_px > 0:
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))
        out = cv2.morphologyEx(out, cv2.MORPH_OPEN, disc)
        out = cv2.morphologyEx(out, cv2.MORPH_CLOSE, disc)
    if dilation_px > 0:
        out = cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation_px + 1,) * 2))
    return out.astype(bool) & mask


@dataclass
class SeenColours:
    """The colours observed at the seen pixels of some views' masks."""

    colours: Tensor
    """float [V, H, W, 3] in [0, 1]: the mean colour the views that saw each pixel's surface point observed."""
    valid: Tensor
    """bool [V, H, W]: seen pixels outside the cleaned unseen mask, where ``colours`` holds such a colour."""


def unseen_masks(
    cameras: Cameras, depths: Tensor, masks: Tensor, views: Sequence[int], config: VisibilityConfig,
    images: Optional[Tensor] = None,
):
    """The cleaned unseen masks (bool [len(views), H, W]) of ``views``, from every training view's rendered depth
    (float [N, H, W], along unit rays) and mask (bool [N, H, W]); with ``images`` (every view's observed colours,
    uint8 [N, H, W, 3], or float in [0, 1]) also the :class:`SeenColours` of the rest of each mask, as
    ``(unseen, seen)``."""
    height, width = masks.shape[1], masks.shape[2]
    generator = RayGenerator(cameras.to("cpu"))
    depths, masks = depths.float().cpu(), masks.bool().cpu()
    out = torch.zeros((len(views), height, width), dtype=torch.bool)
    colours = torch.zeros((len(views), height, width, 3)) if images is not None else None
    valid = torch.zeros((len(views), height, width), dtype=torch.bool)
    radius = _pixels(config.cleaning_radius, height, width)
    dilation = _pixels(config.dilation, height, width)
    for row, view in enumerate(views):
        ys, xs = torch.nonzero(masks[view], as_tuple=True)
        if len(ys) == 0:
            continue
        bundle = generator(torch.stack([torch.full_like(ys, int(view)), ys, xs], dim=-1))
        points = bundle.origins + bundle.directions * depths[view, ys, xs, None]
        if images is None:
            seen = seen_pixels(points, int(view), cameras, depths, masks, config.depth_tolerance)
        else:
            seen, found = seen_pixels(points, int(view), cameras, depths, masks, config.depth_tolerance,
                                      images.cpu())
            if images.dtype == torch.uint8:
                found = found / 255.0
            colours[row, ys[seen], xs[seen]] = found[seen]
            valid[row, ys[seen], xs[seen]] = True
        raw = torch.zeros((height, width), dtype=torch.bool)
        raw[ys[~seen], xs[~seen]] = True
        out[row] = torch.from_numpy(clean_unseen(raw.numpy(), masks[view].numpy(), radius, dilation))
    if images is None:
        return out
    return out, SeenColours(colours=colours, valid=valid & ~out)


@torch.no_grad()
def render_depths(
    model: "Model",
    ray_generator: Callable[[Tensor], Any],
    views: Sequence[int],
    height: int,
    width: int,
    on_view: Optional[Callable[[], None]] = None,
) -> Tensor:
    """The model's depth (along unit rays) of whole training views: float [len(views), H, W] on the CPU."""
    camera_optimizer = getattr(model, "camera_optimizer", None)
    was_training = model.training
    model.eval()
    out = torch.zeros((len(views), height, width))
    try:
        grid_y, grid_x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        for row, view in enumerate(views):
            indices = torch.stack([torch.full_like(grid_y, int(view)), grid_y, grid_x], dim=-1).reshape(-1, 3)
            bundle = ray_generator(indices.to(model.device))
            if camera_optimizer is not None:
                camera_optimizer.apply_to_raybundle(bundle)
            outputs = model.get_outputs_for_camera_ray_bundle(bundle.reshape((height, width)))
            out[row] = outputs["depth"].reshape(height, width).float().cpu()
            if on_view is not None:
                on_view()
    finally:
        model.train(was_training)
    return out
