"""From the reconstruction's depth to one clean mask per view, and the preview.

A pixel is object when its surface point ``origin + direction * depth`` lies inside the box (nerfstudio's ray
directions are unit vectors and its depths are distances along them). Only the rays that pass through the box
are rendered: no other ray's surface can lie inside it, and the object is usually a small part of each view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Literal, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import track

from mald_nerfstudio.box_masks.box import Box, format_box
from mald_nerfstudio.data.inpaint_metadata import InpaintMaskSpec
from mald_nerfstudio.errors import MaldInputError

MAX_MASK_FRACTION = InpaintMaskSpec().max_fraction
"""Views masked at least this much are refused by the inpainting parsers' data checks."""

_CONSOLE = Console()


def box_mask_from_depth(origins: torch.Tensor, directions: torch.Tensor, depth: torch.Tensor, box: Box) -> np.ndarray:
    """Pixels whose surface point ``origin + direction * depth`` lies in the box: bool [...] from rays [..., 3]
    with unit directions and depth [...] or [..., 1] along the ray (nerfstudio's convention)."""
    depth = depth.reshape(*directions.shape[:-1], 1)
    points = origins + directions * depth
    inside = box.contains(points) & torch.isfinite(depth[..., 0])
    return inside.cpu().numpy()


@dataclass
class ViewBoxMask:
    """The depth test of one view."""

    inside: np.ndarray
    """bool [H, W]: the pixel's surface point lies in the box."""
    through: np.ndarray
    """bool [H, W]: the pixel's ray passes through the box (the box's projection; no other pixel can be object)."""


def render_box_masks(pipeline, box: Box, depth_output: str = "expected_depth", show_progress: bool = True
                     ) -> List[ViewBoxMask]:
    """The depth test of every training view of the reconstruction, in its image order."""
    cameras = pipeline.datamanager.train_dataparser_outputs.cameras
    model = pipeline.model
    views = range(len(cameras))
    masks = []
    for index in track(views, description="Rendering depth inside the box") if show_progress else views:
        bundle = cameras[index : index + 1].generate_rays(camera_indices=0, keep_shape=True)
        inside = np.zeros(bundle.shape, dtype=bool)
        through = box.hit_by(bundle.origins, bundle.directions)
        if through.any():
            rays = bundle[through].reshape((-1, 1))  # [N, 1]: get_outputs_for_camera_ray_bundle wants 2 dims
            with torch.no_grad():
                outputs = model.get_outputs_for_camera_ray_bundle(rays)
            depth = outputs[depth_output] if depth_output in outputs else outputs["depth"]
            inside[through.cpu().numpy()] = box_mask_from_depth(rays.origins, rays.directions, depth, box)[:, 0]
        masks.append(ViewBoxMask(inside=inside, through=through.cpu().numpy()))
    return masks


@dataclass
class MaskCleaning:
    """How the depth test's masks are cleaned; None sizes scale with the image."""

    fill_holes_px: Optional[int] = None
    """Fill unmasked holes smaller than this (pixels) that do not touch the border; None: every such hole."""
    drop_islands_px: Optional[int] = None
    """Drop masked regions smaller than this (pixels); None: 0.1 % of the image area."""
    refine_edges: bool = True
    """Move the mask's edges onto the image's colour edges with OpenCV's GrabCut, inside the box's projection."""
    edge_colours: Literal["chromaticity", "rgb"] = "chromaticity"
    """Colours GrabCut models: chromaticity (r, g over r+g+b, and brightness; shading-invariant) or rgb."""
    dilate_px: Optional[int] = None
    """Grow the final mask by this many pixels (elliptical kernel; 0 keeps it); None: 0.5 % of the long edge, >= 1."""

    def sizes(self, height: int, width: int) -> Tuple[int, int, int]:
        """(fill_holes_px, drop_islands_px, dilate_px) for an image of this size."""
        area = height * width
        return (
            area if self.fill_holes_px is None else self.fill_holes_px,
            round(0.001 * area) if self.drop_islands_px is None else self.drop_islands_px,
            max(1, round(0.005 * max(height, width))) if self.dilate_px is None else self.dilate_px,
        )


def fill_holes_and_drop_islands(mask: np.ndarray, cleaning: MaskCleaning) -> np.ndarray:
    """Fill the enclosed holes and drop the islands that ``cleaning`` names: bool [H, W] -> bool [H, W]."""
    out = mask.astype(bool).copy()
    h, w = out.shape
    fill_holes_px, drop_islands_px, _ = cleaning.sizes(h, w)
    if fill_holes_px > 0:
        count, labels, stats, _ = cv2.connectedComponentsWithStats((~out).astype(np.uint8), connectivity=4)
        for label in range(1, count):
            x, y, bw, bh, area = stats[label]
            touches_border = x == 0 or y == 0 or x + bw == w or y + bh == h
            if area < fill_holes_px and not touches_border:
                out[labels == label] = True
    if drop_islands_px > 0:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(out.astype(np.uint8), connectivity=8)
        for label in range(1, count):
            if stats[label, cv2.CC_STAT_AREA] < drop_islands_px:
                out[labels == label] = False
    return out


def dilate(mask: np.ndarray, dilate_px: int) -> np.ndarray:
    """Grow a bool mask by ``dilate_px`` pixels (elliptical kernel)."""
    if dilate_px <= 0:
        return mask
    k = 2 * dilate_px + 1
    return cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)


def chromaticity(image: np.ndarray) -> np.ndarray:
    """Normalised r and g (each over r + g + b) and the brightness (r + g + b) / 3, as a 3-channel uint8 image:
    the shaded and lit sides of one surface differ in brightness only, dark shades of different hues stay apart.
    RGB uint8 [H, W, 3] -> uint8 [H, W, 3]."""
    rgb = image.astype(np.float32) + 1.0  # keeps black defined
    total = rgb.sum(axis=-1, keepdims=True)
    out = np.concatenate([255.0 * rgb[..., :2] / total, total / 3.0], axis=-1)
    return np.ascontiguousarray(np.clip(out.round(), 0, 255).astype(np.uint8))


def refine_edges(image: np.ndarray, mask: np.ndarray, through: np.ndarray, core_fraction: float = 0.5,
                 iterations: int = 5, colours: str = "chromaticity") -> np.ndarray:
    """GrabCut (OpenCV) seeded by the depth test: background for certain outside the box's projection, object for
    certain in the mask's core (the pixels at least ``core_fraction`` of the mask's largest inner distance away
    from its edge), probably object in the rest of the mask and probably background in the rest of the
    projection; its colour models (of ``colours``: "chromaticity" or "rgb") and smoothness term then put the
    boundary on the image's edges. RGB uint8 [H, W, 3], bool masks [H, W] -> bool [H, W]."""
    inner = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    if inner.max() <= 0:
        return mask
    core = inner >= max(core_fraction * inner.max(), 1.0)
    possible = through | mask
    rows, cols = np.nonzero(possible)
    margin = max(8, round(0.25 * max(np.ptp(rows), np.ptp(cols))))  # certain background for its colour model
    y0, y1 = max(rows.min() - margin, 0), min(rows.max() + margin + 1, mask.shape[0])
    x0, x1 = max(cols.min() - margin, 0), min(cols.max() + margin + 1, mask.shape[1])
    window = (slice(y0, y1), slice(x0, x1))
    labels = np.full((y1 - y0, x1 - x0), cv2.GC_BGD, np.uint8)
    labels[possible[window]] = cv2.GC_PR_BGD
    labels[mask[window]] = cv2.GC_PR_FGD
    labels[core[window]] = cv2.GC_FGD
    if not (labels == cv2.GC_BGD).any():
        return mask  # the box's projection fills the view: no certain background to contrast with
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    crop = image[window]
    crop = chromaticity(crop) if colours == "chromaticity" else np.ascontiguousarray(crop[..., ::-1])  # RGB->BGR
    cv2.setRNGSeed(0)  # its colour models start from k-means: the same masks on every run
    cv2.grabCut(crop, labels, None, background, foreground, iterations, cv2.GC_INIT_WITH_MASK)
    out = np.zeros_like(mask)
    out[window] = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return out


@dataclass
class ShadowExtension:
    """Extend each view's mask over the object's cast shadow (off by default; docs/decisions.md, "Cast shadows")."""

    enabled: bool = False
    """Add the object's cast shadow to the masks (near the mask, darker than the lit surface, joined to the mask)."""
    reach: float = 1.0
    """Search the shadow up to this many times the mask's size (its bounding box's longer side) from the mask."""
    darkness: float = 0.6
    """A pixel is shadow when its brightness is below this share of the lit surface's around the box."""
    chroma_tolerance: float = 0.04
    """... and its chromaticity (r and g over r + g + b) differs from the lit surface's by at most this much."""
    attach_px: Optional[int] = None
    """Keep only shadow regions within this many pixels of the object's mask; None: 1 % of the long edge, >= 2."""


def shadow_pixels(image: np.ndarray, mask: np.ndarray, region: np.ndarray, shadow: ShadowExtension) -> np.ndarray:
    """The object's cast shadow in one view: pixels of ``region`` (e.g. :func:`near_mask`) outside ``mask`` whose
    brightness is below ``shadow.darkness`` times the lit surface's around them (a local mean over the region's
    lit pixels, found in rounds so the shadow does not lower it; a local mean follows the light's falloff), at the
    lit surface's chromaticity, opened to drop texture lines, and only the parts that come within ``attach_px`` of
    the mask (a cast shadow starts where the object meets the surface). RGB uint8 [H, W, 3], bool [H, W] masks ->
    bool [H, W]."""
    candidates = region & ~mask
    if candidates.sum() < 16 or not mask.any():
        return np.zeros_like(mask)
    rgb = image.astype(np.float32) + 1.0
    brightness = rgb.mean(axis=-1)
    chroma = rgb[..., :2] / rgb.sum(axis=-1, keepdims=True)
    h, w = mask.shape
    sigma = 0.06 * max(h, w)

    def local_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Gaussian-weighted mean of values [H, W, C] over the pixels ``weights`` marks: [H, W, C]."""
        weights = weights.astype(np.float32)
        total = cv2.GaussianBlur(weights, (0, 0), sigma)[..., None]
        return cv2.GaussianBlur(values * weights[..., None], (0, 0), sigma).reshape(values.shape) / np.maximum(
            total, 1e-6)

    lit = candidates.copy()
    for _ in range(3):
        reference = local_mean(brightness[..., None], lit)[..., 0]
        dark = candidates & (brightness < shadow.darkness * reference)
        lit = candidates & ~dark
        if lit.sum() < 16:
            return np.zeros_like(mask)
    lit_chroma = local_mean(chroma, lit)
    dark &= np.abs(chroma - lit_chroma).max(axis=-1) <= shadow.chroma_tolerance
    if dark.any():  # hysteresis: grow into neighbours as dark as the shadow found, where the local mean mixes surfaces
        weak = candidates & (brightness <= np.percentile(brightness[dark], 90))
        dark = components_touching(weak | dark, dark)
    side = max(3, round(0.006 * max(h, w)) * 2 + 1)
    dark = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))).astype(bool)
    attach = max(2, round(0.01 * max(h, w))) if shadow.attach_px is None else shadow.attach_px
    return components_touching(dark, dilate(mask, attach))


def components_touching(pixels: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The 8-connected regions of ``pixels`` that hold at least one pixel of ``seeds``: bool [H, W]."""
    labels = cv2.connectedComponents(pixels.astype(np.uint8), connectivity=8)[1]
    keep = np.unique(labels[seeds & pixels])
    return np.isin(labels, keep[keep > 0])


def clean_mask(view: ViewBoxMask, image: Optional[np.ndarray], cleaning: MaskCleaning) -> np.ndarray:
    """The final mask of a view: holes filled and islands dropped, edges refined on ``image`` (when given and
    ``cleaning.refine_edges``), holes and islands again, then dilated."""
    mask = fill_holes_and_drop_islands(view.inside, cleaning)
    if cleaning.refine_edges and image is not None and mask.any():
        mask = fill_holes_and_drop_islands(refine_edges(image, mask, view.through, colours=cleaning.edge_colours),
                                           cleaning)
    return dilate(mask, cleaning.sizes(*mask.shape)[2])


def near_mask(mask: np.ndarray, reach: float) -> np.ndarray:
    """Pixels within ``reach`` times the mask's bounding-box size of it: where its cast shadow can be seen."""
    if not mask.any():
        return np.zeros_like(mask)
    rows, cols = np.nonzero(mask)
    radius = max(1, round(reach * max(np.ptp(rows) + 1, np.ptp(cols) + 1)))
    outside = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    return cv2.distanceTransform(outside, cv2.DIST_L2, 3)[1:-1, 1:-1] <= radius


def add_cast_shadow(mask: np.ndarray, image: np.ndarray, shadow: ShadowExtension, cleaning: MaskCleaning
                    ) -> np.ndarray:
    """A cleaned mask (:func:`clean_mask`) with the object's cast shadow near it (:func:`shadow_pixels` within
    :func:`near_mask`) added, dilated as the mask was, holes filled."""
    found = shadow_pixels(image, mask, near_mask(mask, shadow.reach), shadow)
    return fill_holes_and_drop_islands(mask | dilate(found, cleaning.sizes(*mask.shape)[2]), cleaning)


def check_raw_fractions(fractions: Sequence[float], box: Box, config_path: Path, min_fraction: float = 1e-4) -> None:
    """Refuse a box that holds no surface in any view, or (nearly) the whole scene in every view."""
    fractions = np.asarray(fractions, dtype=np.float64)
    look = (f"open the reconstruction with ns-viewer --load-config {config_path}, open \"Crop Viewport\" in the "
            "control panel, tick \"Enable\", fit the box around the object and pass the --obb_* flags the export "
            "panel prints with --from-viewer")
    if len(fractions) == 0 or fractions.max() < min_fraction:
        raise MaldInputError(
            f"the box ({format_box(box)}) contains no reconstructed surface in any of the {len(fractions)} views "
            f"(largest masked fraction {fractions.max() if len(fractions) else 0:.4%}); the coordinates are "
            "probably not in the reconstruction's frame, or the box is too small or floats in empty space",
            fix=look,
        )
    if fractions.min() >= MAX_MASK_FRACTION:
        raise MaldInputError(
            f"the box ({format_box(box)}) contains (nearly) the whole scene: every view is at least "
            f"{MAX_MASK_FRACTION:.0%} masked (least {fractions.min():.1%}), so nothing would be left to inpaint from",
            fix="shrink the box to the object: " + look,
        )


def report_fractions(names: Sequence[str], fractions: Sequence[float]) -> List[str]:
    """Print the masked fraction per view; name the views the data checks will refuse (returned)."""
    over = [n for n, f in zip(names, fractions) if f >= MAX_MASK_FRACTION]
    for name, frac in zip(names, fractions):
        _CONSOLE.print(f"  {name}: {frac:6.1%} masked" + ("  [red](refused by ns-train)[/red]" if name in over else ""))
    if over:
        _CONSOLE.print(
            f"[yellow]{len(over)} view(s) are masked {MAX_MASK_FRACTION:.0%} or more ({', '.join(over)}): ns-train's "
            "data checks refuse such views. Shrink the box, or delete those frames from transforms.json (the "
            "object fills them; nothing is left to inpaint from).[/yellow]"
        )
    return over


def write_preview(path: Path, images: Sequence[Path], masks: Sequence[np.ndarray], names: Sequence[str],
                  max_views: int = 6, tile_width: int = 320) -> None:
    """A grid of a few views (at most 3 per row) with the mask in red, its outline in yellow, and each view's
    name and masked fraction written on it."""
    picks = np.unique(np.linspace(0, len(images) - 1, min(max_views, len(images))).round().astype(int))
    tiles = []
    for i in picks:
        rgb = np.asarray(Image.open(images[i]).convert("RGB")).astype(np.float32)
        mask = masks[i]
        rgb[mask] = 0.45 * rgb[mask] + 0.55 * np.array([255.0, 0.0, 0.0])
        edges = mask ^ cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        rgb[edges] = [255.0, 255.0, 0.0]
        h, w = mask.shape
        tile = cv2.resize(rgb.astype(np.uint8), (tile_width, max(1, round(h * tile_width / w))),
                          interpolation=cv2.INTER_AREA)
        label = f"{names[i]}  {mask.mean():.1%}"
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    th = max(t.shape[0] for t in tiles)
    cols = min(3, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    grid = np.zeros((rows * th, cols * tile_width, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * th : r * th + tile.shape[0], c * tile_width : (c + 1) * tile_width] = tile
    Image.fromarray(grid).save(path)
