"""The offline exemplar inpainter: fills holes with real texture copied from the same image (OpenCV shift-map).

Why it exists: no weights can be loaded on a CPU-only machine, yet the problem MALD-NeRF solves (every view gets a
*sharp but different* fill, which pixel losses average into fog) must show up in offline runs. OpenCV's Telea
fill is smooth and nearly view-consistent, so that problem never appears with it. This inpainter behaves like a
diffusion model in the two ways that matter: its fills are as sharp as the surrounding texture, and a different
seed gives a clearly different fill.

How a view is filled (full mode, ``strength == 1``):

1. **Random context.** The mask's bounding box is grown on each side by a seeded random margin
   (``context_margin`` times the box's longer side, at least ``min_context`` pixels), clamped to the image, and
   optionally mirrored left-right (``random_flip``). Only this window is searched for texture.
2. **Shift-map search** (He and Sun, "Statistics of patch offsets for image completion", ECCV 2012, as
   implemented by ``cv2.xphoto.inpaint(..., INPAINT_SHIFTMAP)``): the 60 most frequent patch offsets of the
   window become labels of a graph-cut that gives every hole pixel one offset to a known pixel, with seams
   placed where the copies agree. The search sees CIELab plus one extra, seeded random guide channel (smooth
   noise of amplitude ``guide_noise``): it perturbs the patch statistics and seam costs so different seeds pick
   different offsets, while the copied colour channels are untouched. Holes larger than
   ``max_search_pixels`` are searched at a reduced resolution. Holes covering most of the window need a few
   passes (60 offsets cannot reach every pixel of a huge hole): pixels filled by one pass are sources for the
   next.
3. **Copy at full resolution.** Each output pixel of the search is an exact copy of one input pixel (colour
   *and* guide value), so its source position is decoded exactly and the offset is applied to the full-resolution
   window: before seam blending, every filled pixel is a copy of a real known pixel, whatever the search
   resolution. Pixels whose offset would land in the hole or outside the window (rare; at scaled-down search)
   copy their nearest known pixel.
4. **Seam blending** (``blend_seams``): the colour mismatch along the hole border between the surrounding
   pixels and the copied texture continued outwards is spread smoothly over the hole (multi-scale normalised
   convolution, a cheap stand-in for Poisson cloning) and added. This changes only low frequencies; the
   texture's sharpness is kept.

Partial mode (``0 < strength < 1``), used by the iterative dataset update with ``init`` = the NeRF's current
render, approximates what partial DDIM does at strength t: noise of that level drowns the render's detail finer
than some scale and leaves its coarser content, and denoising re-synthesises the drowned detail. Here the render's
low frequencies are kept and the high frequencies come from a fresh full-mode fill of the view (steps 1-4, texture
copied from the *observed* pixels only, never from the render):
``out = G_sigma * render + (fill - G_sigma * fill)`` inside the mask, with a Gaussian ``G_sigma`` whose scale
``sigma = strength**2 * partial_cutoff * (the mask box's longer side)`` falls with the strength. Early updates
(large t) re-synthesise everything but the hole's coarse layout; late ones (small t) only the finest texture, so
the views' fills converge to what the NeRF agrees on. ``strength == 0`` returns ``init`` inside the mask;
``strength == 1`` ignores ``init`` (partial DDIM from pure noise). The quadratic follows DDIM's signal-to-noise
ratio only qualitatively; see docs/decisions.md.

Fills are deterministic for a seed (same seed, same output, bit for bit, whatever OpenCV's thread count). Speed:
about 0.15-0.3 CPU seconds per 320x240 view with an object-sized hole (5-20% of the view; Telea: 0.02-0.03 s),
see ``benchmarks/inpainter_speed.py``. Needs OpenCV's contrib modules (``cv2.xphoto``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Type

import cv2
import numpy as np
import torch
from torch import Tensor

from mald_nerfstudio.errors import MaldInputError, MaldSetupError
from mald_nerfstudio.inpaint.base import Inpainter, InpainterConfig

_REINSTALL_OPENCV = "pip install --force-reinstall --no-deps opencv-contrib-python-headless==4.10.0.84"

_NOISE_CLIP = 6.0
"""Guide noise is clipped to this many standard deviations so the guide channel stays strictly positive."""

_MAX_PASSES = 6
"""Most shift-map searches per view; only holes covering most of the window need more than one."""


@dataclass
class ExemplarInpainterConfig(InpainterConfig):
    """Patch-based (shift-map) inpainting that copies texture from the unmasked part of each view; no weights."""

    _target: Type = field(default_factory=lambda: ExemplarInpainter)
    """Target class to instantiate."""
    context_margin: Tuple[float, float] = (0.5, 2.0)
    """Range of the seeded random margin of the texture window around the mask's box, in box long sides."""
    min_context: int = 32
    """Smallest margin in pixels around the mask's bounding box (keeps enough texture around small holes)."""
    random_flip: bool = True
    """Mirror the context window left-right for about half of the seeds (more variety; scenes stay plausible)."""
    guide_noise: float = 30.0
    """Amplitude (8-bit CIELab units) of the seeded random guide channel (larger: more varied fills)."""
    guide_noise_scale: float = 4.0
    """Spatial scale (Gaussian sigma, full-resolution pixels) of the guide noise."""
    max_search_pixels: int = 2048
    """Holes with more pixels are searched at reduced resolution (copied at full resolution; bounds run time)."""
    blend_seams: bool = True
    """Remove the low-frequency colour mismatch at the hole border with a smooth correction field."""
    partial_cutoff: float = 0.5
    """Partial mode's blur scale at strength 1, as a fraction of the mask box's longer side (module docstring)."""


def require_xphoto():
    """Return ``cv2.xphoto``, or raise :class:`MaldSetupError` explaining how to get OpenCV's contrib modules."""
    xphoto = getattr(cv2, "xphoto", None)
    if xphoto is None or not hasattr(xphoto, "INPAINT_SHIFTMAP"):
        raise MaldSetupError(
            f"The exemplar inpainter needs OpenCV's contrib module cv2.xphoto (shift-map inpainting), but the cv2 "
            f"imported from {getattr(cv2, '__file__', '?')} (version {getattr(cv2, '__version__', '?')}) has no "
            f"xphoto. This happens when several OpenCV wheels are installed over each other and a build without "
            f"the contrib modules won. Fix: run `{_REINSTALL_OPENCV}`, or use the Telea inpainter instead."
        )
    return xphoto


class ExemplarInpainter(Inpainter):
    """Fills each view with texture copied from its own unmasked pixels; seeded, varied and sharp."""

    config: ExemplarInpainterConfig

    def __init__(self, config: ExemplarInpainterConfig, device: str | torch.device = "cpu", **kwargs) -> None:
        super().__init__(config, device=device, **kwargs)
        lo, hi = config.context_margin
        if not 0.0 <= lo <= hi:
            raise MaldInputError(
                f"context_margin must be a range (low, high) with 0 <= low <= high, got {config.context_margin}",
                fix="pass two non-negative numbers in increasing order",
            )
        if config.partial_cutoff <= 0 or config.max_search_pixels < 64 or config.min_context < 0:
            raise MaldInputError(
                "partial_cutoff must be > 0, max_search_pixels >= 64 and min_context >= 0 "
                f"(got {config.partial_cutoff}, {config.max_search_pixels}, {config.min_context})",
                fix="choose values in those ranges",
            )
        require_xphoto()

    def _fill(
        self, images: Tensor, masks: Tensor, init: Optional[Tensor], strength: float, seeds: Sequence[int]
    ) -> Tensor:
        xphoto = require_xphoto()
        images_np = images.detach().to("cpu", torch.float32).numpy()
        masks_np = masks.detach().to("cpu").numpy().astype(bool)
        init_np = None if init is None else init.detach().to("cpu", torch.float32).numpy()
        out = []
        for i, seed in enumerate(seeds):
            image, mask = np.clip(images_np[i], 0.0, 1.0), masks_np[i]
            rng = np.random.default_rng(int(seed) % (2**63))
            if mask.all():
                raise MaldInputError(
                    f"the mask of view {i} covers the whole image, so there is no texture to copy from",
                    fix="leave part of every view unmasked, or use the telea/ldm inpainter for this scene",
                )
            if strength >= 1.0 or init_np is None:
                out.append(self._fill_view(xphoto, image, mask, int(mask.sum()), rng) if mask.any() else image)
                continue
            render = np.where(mask[..., None], np.clip(init_np[i], 0.0, 1.0), image).astype(np.float32)
            sigma = partial_sigma(mask, strength, self.config.partial_cutoff)
            if sigma < 0.3 or not mask.any():  # a blur this small changes nothing: the render is kept
                out.append(render)
                continue
            fresh = self._fill_view(xphoto, image, mask, int(mask.sum()), rng)
            mixed = low_pass(render, sigma) + fresh - low_pass(fresh, sigma)
            out.append(np.where(mask[..., None], np.clip(mixed, 0.0, 1.0), image).astype(np.float32))
        return torch.from_numpy(np.stack(out)).to(images.device)

    def _fill_view(
        self, xphoto, canvas: np.ndarray, unknown: np.ndarray, hole_size: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Fill ``unknown`` pixels of one ``[H, W, 3]`` float canvas inside a random context window.

        ``hole_size`` (pixels) sets the search resolution, see :func:`shift_map_fill`.
        """
        cfg = self.config
        height, width = unknown.shape
        rows, cols = np.nonzero(unknown)
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        side = max(bottom - top, right - left)
        margins = np.maximum(cfg.min_context, rng.uniform(*cfg.context_margin, size=4) * side).astype(int)
        top, bottom = max(0, top - margins[0]), min(height, bottom + margins[1])
        left, right = max(0, left - margins[2]), min(width, right + margins[3])
        window = canvas[top:bottom, left:right]
        hole = unknown[top:bottom, left:right]
        flip = cfg.random_flip and rng.random() < 0.5
        if flip:
            window, hole = window[:, ::-1], hole[:, ::-1]
        filled = shift_map_fill(
            xphoto,
            np.ascontiguousarray(window, dtype=np.float32),
            np.ascontiguousarray(hole),
            rng,
            guide_noise=cfg.guide_noise,
            guide_noise_scale=cfg.guide_noise_scale,
            search_scale=min(1.0, math.sqrt(cfg.max_search_pixels / max(hole_size, 1))),
            blend_seams=cfg.blend_seams,
        )
        if flip:
            filled = filled[:, ::-1]
        out = canvas.copy()
        out[top:bottom, left:right] = filled
        return out


def partial_sigma(mask: np.ndarray, strength: float, cutoff: float) -> float:
    """Partial mode's Gaussian scale in pixels: ``strength**2 * cutoff * (longer side of the mask's box)``."""
    if not mask.any() or strength <= 0.0:
        return 0.0
    rows, cols = np.nonzero(mask)
    side = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    return float(strength**2 * cutoff * side)


def low_pass(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float [H, W, 3] image (edges reflected)."""
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def shift_map_fill(
    xphoto,
    canvas: np.ndarray,
    unknown: np.ndarray,
    rng: np.random.Generator,
    guide_noise: float,
    guide_noise_scale: float,
    search_scale: float,
    blend_seams: bool,
) -> np.ndarray:
    """Fill ``unknown`` pixels of a float ``[H, W, 3]`` canvas with copies of its known pixels (shift-map).

    The search runs at ``search_scale`` times the canvas resolution (copies are made at full resolution).

    Very large holes (most of the window) are filled in up to :data:`_MAX_PASSES` passes: the 60 offsets of one
    search cannot reach every hole pixel, so pixels filled by one pass become sources for the next. Pixels left
    after that copy their nearest known pixel. Returns a copy of ``canvas`` with the unknown pixels replaced;
    known pixels are unchanged.
    """
    if unknown.all():
        raise MaldInputError("nothing to copy texture from: the inpainting window has no unmasked pixel")
    out = canvas.copy()
    remaining = unknown.copy()
    copied = []
    for _ in range(_MAX_PASSES):
        rows, cols, off_r, off_c = _shift_map_pass(
            xphoto, out, remaining, rng, guide_noise, guide_noise_scale, search_scale
        )
        if len(rows) == 0:
            break
        out[rows, cols] = out[rows + off_r, cols + off_c]
        remaining[rows, cols] = False
        copied.append((rows, cols, off_r, off_c))
        if not remaining.any():
            break
    if remaining.any():
        nearest_r, nearest_c = _nearest_known(remaining)
        out[remaining] = out[nearest_r[remaining], nearest_c[remaining]]
    if blend_seams and copied:
        rows, cols, off_r, off_c = (np.concatenate(parts) for parts in zip(*copied))
        correction = _seam_correction(out, unknown, rows, cols, off_r, off_c)
        out[unknown] = np.clip(out[unknown] + correction[unknown], 0.0, 1.0)
    return out


def _shift_map_pass(
    xphoto,
    canvas: np.ndarray,
    unknown: np.ndarray,
    rng: np.random.Generator,
    guide_noise: float,
    guide_noise_scale: float,
    scale: float,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One shift-map search at ``scale`` times the canvas resolution.

    Returns the rows, columns and full-resolution offsets of the pixels it could fill; every offset points from
    an unknown pixel to a known one inside the canvas.
    """
    height, width = unknown.shape
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (small_w, small_h) != (width, height):
        small = cv2.resize(canvas, (small_w, small_h), interpolation=cv2.INTER_AREA)
        # A low-resolution pixel is known only if all the pixels it averages are: sources stay outside the hole.
        small_unknown = cv2.resize(unknown.astype(np.float32), (small_w, small_h), interpolation=cv2.INTER_AREA) > 0
    else:
        small, small_unknown = canvas, unknown
    empty = np.zeros(0, np.int64)
    if small_unknown.all():
        return empty, empty, empty, empty
    lab = cv2.cvtColor(np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2Lab).astype(np.float32)
    noise = rng.standard_normal((small_h, small_w)).astype(np.float32)
    if guide_noise_scale > 0:
        noise = cv2.GaussianBlur(noise, (0, 0), max(guide_noise_scale * scale, 0.5))
    noise = np.clip(noise / (noise.std() + 1e-8), -_NOISE_CLIP, _NOISE_CLIP)
    # Strictly positive guide: pixels the search leaves unfilled come back as 0 and are never decoded.
    guide = guide_noise * (noise + _NOISE_CLIP) + 1.0
    source = np.ascontiguousarray(np.dstack([lab, guide]))
    result = np.zeros_like(source)
    # xphoto's mask is the opposite of cv2.inpaint's: non-zero marks VALID pixels, and it must be exactly 255
    # there (the implementation blanks the pixels where 255 - mask is non-zero).
    xphoto.inpaint(source, np.where(small_unknown, 0, 255).astype(np.uint8), result, xphoto.INPAINT_SHIFTMAP)
    offsets, decoded = _decode_offsets(source, result, small_unknown)

    # Apply the decoded low-resolution offsets to the full-resolution pixels they cover.
    step_y, step_x = height / small_h, width / small_w
    rows, cols = np.nonzero(unknown)
    cell_r = np.minimum((rows / step_y).astype(np.int64), small_h - 1)
    cell_c = np.minimum((cols / step_x).astype(np.int64), small_w - 1)
    off_r = np.round(offsets[cell_r, cell_c, 0] * step_y).astype(np.int64)
    off_c = np.round(offsets[cell_r, cell_c, 1] * step_x).astype(np.int64)
    src_r, src_c = rows + off_r, cols + off_c
    ok = decoded[cell_r, cell_c] & (src_r >= 0) & (src_r < height) & (src_c >= 0) & (src_c < width)
    ok[ok] &= ~unknown[src_r[ok], src_c[ok]]
    return rows[ok], cols[ok], off_r[ok], off_c[ok]


def _decode_offsets(source: np.ndarray, result: np.ndarray, unknown: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per unknown pixel, the offset to the known pixel it was copied from, found by exact value lookup.

    Shift-map writes exact copies of (colour, guide) vectors, and the random guide makes these vectors unique
    in practice; where two known pixels share a vector either is a valid source. Returns ``[h, w, 2]`` offsets
    and a ``[h, w]`` map of pixels whose source was found.
    """
    height, width = unknown.shape
    known_idx = np.flatnonzero(~unknown)
    unknown_idx = np.flatnonzero(unknown)
    vectors = np.concatenate([source.reshape(-1, 4)[known_idx], result.reshape(-1, 4)[unknown_idx]])
    keys = np.ascontiguousarray(vectors).view(np.dtype((np.void, 16))).ravel()
    _, group = np.unique(keys, return_inverse=True)
    group = group.ravel()
    representative = np.full(int(group.max()) + 1, -1, np.int64)
    representative[group[: len(known_idx)]] = known_idx
    src = representative[group[len(known_idx) :]]
    found = src >= 0
    dst_r, dst_c = np.divmod(unknown_idx[found], width)
    src_r, src_c = np.divmod(src[found], width)
    offsets = np.zeros((height, width, 2), np.int64)
    offsets[dst_r, dst_c, 0] = src_r - dst_r
    offsets[dst_r, dst_c, 1] = src_c - dst_c
    decoded = np.zeros((height, width), bool)
    decoded[dst_r, dst_c] = True
    return offsets, decoded


def _nearest_known(unknown: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Row and column maps of the nearest known pixel of every pixel (OpenCV's labelled distance transform)."""
    _, labels = cv2.distanceTransformWithLabels(
        unknown.astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # DIST_LABEL_PIXEL numbers the zero (known) pixels 1..n in row-major order.
    known_r, known_c = np.nonzero(~unknown)
    index = np.clip(labels - 1, 0, len(known_r) - 1)
    return known_r[index], known_c[index]


def _seam_correction(
    canvas: np.ndarray, unknown: np.ndarray, rows: np.ndarray, cols: np.ndarray, off_r: np.ndarray, off_c: np.ndarray
) -> np.ndarray:
    """Smooth ``[H, W, 3]`` field that removes the colour mismatch at the hole border.

    For each known pixel next to a filled pixel, the mismatch is its colour minus the colour the copied texture
    would have there (the same offset continued one pixel outwards). The mismatches are spread over the hole
    with a heavy-tailed kernel (a sum of box-approximated Gaussians of doubling width, normalised by the same
    sum of the sample counts): near the border the correction matches the local mismatch, far inside it tends
    to the mean mismatch.
    """
    height, width = unknown.shape
    acc = np.zeros((height, width, 4), np.float32)
    for d_r, d_c in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        n_r, n_c = rows + d_r, cols + d_c
        t_r, t_c = n_r + off_r, n_c + off_c
        ok = (n_r >= 0) & (n_r < height) & (n_c >= 0) & (n_c < width)
        ok &= (t_r >= 0) & (t_r < height) & (t_c >= 0) & (t_c < width)
        ok[ok] &= ~unknown[n_r[ok], n_c[ok]] & ~unknown[t_r[ok], t_c[ok]]
        n_r, n_c, t_r, t_c = n_r[ok], n_c[ok], t_r[ok], t_c[ok]
        np.add.at(acc, (n_r, n_c), np.concatenate([canvas[n_r, n_c] - canvas[t_r, t_c], np.ones((len(n_r), 1))], 1))
    total = np.zeros_like(acc)
    sigma = 1.0
    while True:
        ksize = 2 * int(math.ceil(2.0 * sigma)) + 1
        total += cv2.stackBlur(acc, (ksize, ksize)) if sigma > 1.0 else cv2.GaussianBlur(acc, (0, 0), sigma)
        if sigma >= max(height, width):
            break
        sigma *= 2.0
    weight = total[..., 3:]
    return np.where(weight > 1e-8, total[..., :3] / np.maximum(weight, 1e-8), 0.0).astype(np.float32)
