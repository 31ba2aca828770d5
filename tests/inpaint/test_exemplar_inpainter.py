"""Tests of the exemplar (shift-map) inpainter: object replaced by copied texture, seeded variety, sharpness, partial
mode; and the base class's exact composite outside the mask, which every inpainter inherits.

Two textures: a procedural dead-leaves image (overlapping random discs plus fine grain; always available, no
periodicity, sharp edges like natural images) and a real LLFF photo (fern, read from the shared data folder
when it is present). The hole is an object-sized ellipse (about 11% of a 320x240 view).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest
import torch

from mald_nerfstudio.errors import MaldInputError, MaldSetupError
from mald_nerfstudio.inpaint.base import Inpainter, InpainterConfig
from mald_nerfstudio.inpaint.exemplar import ExemplarInpainter, ExemplarInpainterConfig, low_pass, partial_sigma
from mald_nerfstudio.inpaint.telea import TeleaInpainterConfig

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FERN_IMAGE = SHARED / "data" / "llff-fern" / "images_8" / "image000.png"
HEIGHT, WIDTH = 240, 320

DIVERSITY_MARGIN = 0.5
"""Two seeds' fills must differ (mean absolute difference in the hole) by at least this fraction of how much two
unrelated patches of the same texture differ (the texture against itself shifted by a quarter of the view)."""
SHARPNESS_RATIO = 0.5
"""The fill's mean |Laplacian| must reach this fraction of the surrounding texture's."""
SMOOTH_RATIO = 0.25
"""Telea's fill stays below this fraction: it shows the measure separates smooth fills from sharp ones."""


def dead_leaves(seed: int = 0) -> np.ndarray:
    """``[H, W, 3]`` float32 dead-leaves texture: 600 random discs (power-law radii) plus fine grain."""
    rng = np.random.default_rng(seed)
    image = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    radii = 3.0 * (1.0 - rng.random(600)) ** (-1.0 / 1.5)
    for radius in np.minimum(radii, 50.0):
        r, c = rng.uniform(-20, HEIGHT + 20), rng.uniform(-20, WIDTH + 20)
        image[(rows - r) ** 2 + (cols - c) ** 2 < radius**2] = rng.random(3)
    image += rng.normal(0.0, 0.03, image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


def load_fern() -> np.ndarray:
    """The first fern photo (504x378), area-resized to 320x240, float32 RGB in [0, 1]."""
    bgr = cv2.imread(str(FERN_IMAGE), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(cv2.resize(bgr, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return rgb.astype(np.float32) / 255.0


def object_mask() -> np.ndarray:
    """Object-sized elliptic hole in the middle of the view (about 11% of the pixels)."""
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    return ((rows - 120) / (0.22 * HEIGHT)) ** 2 + ((cols - 160) / (0.16 * WIDTH)) ** 2 < 1.0


def mean_abs_laplacian(image: np.ndarray, region: np.ndarray) -> float:
    """Mean |Laplacian| (3x3, of the grey image in [0, 1]) over ``region``: high-frequency energy."""
    grey = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=1))[region].mean())


def batch(image: np.ndarray, mask: np.ndarray):
    """Single-view torch batch ``([1, H, W, 3], [1, H, W])``."""
    return torch.from_numpy(image)[None], torch.from_numpy(mask)[None]


@pytest.fixture(scope="module", params=["procedural", "fern"])
def texture(request) -> Dict:
    """A texture, the object mask, and the exemplar fills of seeds 0 and 1 (computed once per texture)."""
    if request.param == "fern":
        if not FERN_IMAGE.is_file():
            pytest.skip(f"real-photo variant needs {FERN_IMAGE} (the shared data folder beside the repo)")
        image = load_fern()
    else:
        image = dead_leaves()
    mask = object_mask()
    inpainter = ExemplarInpainterConfig().setup()
    images, masks = batch(image, mask)
    fills = inpainter.inpaint(images.repeat(2, 1, 1, 1), masks.repeat(2, 1, 1), seeds=[0, 1])
    return {"name": request.param, "image": image, "mask": mask, "fills": fills.numpy()}


class _GarbageEverywhereInpainter(Inpainter):
    """A subclass whose ``_fill`` changes every pixel, inside and outside the mask, and returns float64 values
    outside [0, 1]: whatever the base class returns outside the mask is then its own doing."""

    def _fill(self, images, masks, init, strength, seeds):
        noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(seeds[0]), dtype=torch.float64)
        return 3.0 * noise - 1.0


def test_base_class_inpaint_keeps_pixels_outside_the_mask_bit_exact_whatever_the_fill():
    """The base class's guarantee (inpaint/base.py), for every inpainter: ``Inpainter.inpaint`` returns the input
    pixels bit for bit outside the mask, and the subclass's fill (clamped to [0, 1], in the input's dtype) inside."""
    image, mask = dead_leaves(seed=2), object_mask()
    images, masks = batch(image, mask)
    inpainter = _GarbageEverywhereInpainter(InpainterConfig())
    out = inpainter.inpaint(images, masks, seeds=[9])
    raw = inpainter._fill(images, masks, None, 1.0, [9])
    assert not torch.equal(raw[0].float()[~masks[0]], images[0][~masks[0]])  # the fill did change them
    assert out.dtype == images.dtype and out.shape == images.shape
    assert torch.equal(out[0][~masks[0]], images[0][~masks[0]])
    assert torch.equal(out[0][masks[0]], raw[0].float().clamp(0.0, 1.0)[masks[0]])


OBJECT_COLOUR = np.array([1.0, 0.0, 1.0], np.float32)
"""Saturated magenta, painted into the mask as the object to remove."""


def test_exemplar_fill_replaces_the_object_with_texture_copied_from_around_it(texture):
    """The exemplar's own contribution, without the base class's composite (its ``_fill`` is called directly): with
    an object under the mask, the fill is exactly the one it makes when the texture is under the mask (it reads no
    masked pixel) and does not show the object, and without seam blending (which only adds a smooth
    correction) each filled pixel is an exact copy of an observed pixel of the view."""
    image, mask = texture["image"], texture["mask"]
    with_object = np.where(mask[..., None], OBJECT_COLOUR, image).astype(np.float32)
    for config in (ExemplarInpainterConfig(), ExemplarInpainterConfig(blend_seams=False)):
        inpainter = ExemplarInpainter(config)
        fill = inpainter._fill(*batch(with_object, mask), None, 1.0, [0])[0].numpy()
        without_object = inpainter._fill(*batch(image, mask), None, 1.0, [0])[0].numpy()
        assert fill.shape == image.shape
        assert np.array_equal(fill[mask], without_object[mask]), "the fill depends on the pixels under the mask"
        assert np.abs(fill[mask] - OBJECT_COLOUR).mean() > 0.2, "the hole still shows the object"
        if not config.blend_seams:
            assert np.isin(_pixel_keys(fill[mask]), _pixel_keys(image[~mask])).all()


def test_same_seed_gives_identical_fill(texture):
    images, masks = batch(texture["image"], texture["mask"])
    again = ExemplarInpainterConfig().setup().inpaint(images, masks, seeds=[1])
    assert torch.equal(again[0], torch.from_numpy(texture["fills"][1]))


def test_two_seeds_give_clearly_different_fills(texture):
    image, mask = texture["image"], texture["mask"]
    fill_a, fill_b = texture["fills"]
    seed_difference = float(np.abs(fill_a - fill_b)[mask].mean())
    unrelated = np.roll(image, (HEIGHT // 4, WIDTH // 4), axis=(0, 1))
    unrelated_difference = float(np.abs(image - unrelated)[mask].mean())
    print(
        f"\n[{texture['name']}] seed 0 vs seed 1: {seed_difference:.4f}; "
        f"unrelated patches: {unrelated_difference:.4f}; ratio {seed_difference / unrelated_difference:.2f}"
    )
    assert seed_difference >= DIVERSITY_MARGIN * unrelated_difference


def test_fill_is_as_sharp_as_surrounding_texture_where_telea_is_not(texture):
    image, mask = texture["image"], texture["mask"]
    hole = mask.astype(np.uint8)
    interior = cv2.erode(hole, np.ones((7, 7), np.uint8)) > 0  # skip the 3-pixel seam band
    near = cv2.dilate(hole, np.ones((41, 41), np.uint8)) > 0
    ring = near & ~(cv2.dilate(hole, np.ones((7, 7), np.uint8)) > 0)  # 3..20 px outside the hole
    surround = mean_abs_laplacian(image, ring)
    exemplar = min(mean_abs_laplacian(fill, interior) for fill in texture["fills"])
    images, masks = batch(image, mask)
    telea = mean_abs_laplacian(TeleaInpainterConfig().setup().inpaint(images, masks)[0].numpy(), interior)
    print(
        f"\n[{texture['name']}] mean |Laplacian|: surrounding texture {surround:.4f}, "
        f"exemplar fill {exemplar:.4f} ({exemplar / surround:.2f}x), telea fill {telea:.4f} ({telea / surround:.2f}x)"
    )
    assert exemplar >= SHARPNESS_RATIO * surround
    assert telea <= SMOOTH_RATIO * surround


def _pixel_keys(pixels: np.ndarray) -> np.ndarray:
    """One hashable 12-byte key per float32 RGB pixel of an ``[N, 3]`` array (exact-value comparison)."""
    return np.ascontiguousarray(pixels, dtype=np.float32).view(np.dtype((np.void, 12))).ravel()


def test_without_seam_blending_every_filled_pixel_is_a_copy_of_an_unmasked_pixel():
    image, mask = dead_leaves(seed=3), object_mask()
    inpainter = ExemplarInpainterConfig(blend_seams=False).setup()
    fill = inpainter.inpaint(*batch(image, mask), seeds=[4])[0].numpy()
    assert np.isin(_pixel_keys(fill[mask]), _pixel_keys(image[~mask])).all()
    assert not np.array_equal(fill[mask], image[mask])


def _partial_setup():
    """Texture, mask, and a smooth foggy 'render' (blurred texture plus grain, so no value repeats by chance)."""
    image, mask = dead_leaves(seed=5), object_mask()
    rng = np.random.default_rng(1)
    init = cv2.GaussianBlur(image, (0, 0), 5.0) + rng.normal(0.0, 0.01, image.shape).astype(np.float32)
    return image, mask, np.clip(init, 0.0, 1.0)


def test_partial_strength_zero_returns_init_in_mask():
    image, mask, init = _partial_setup()
    images, masks = batch(image, mask)
    out = ExemplarInpainterConfig().setup().inpaint(images, masks, init=torch.from_numpy(init)[None], strength=0.0)
    assert np.array_equal(out[0].numpy()[mask], init[mask])


def _inner(mask: np.ndarray, pixels: int = 8) -> np.ndarray:
    """The mask shrunk by ``pixels`` (away from the border, where the blur mixes in observed pixels)."""
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)).astype(bool)


def test_partial_mode_keeps_the_renders_coarse_content_and_resynthesises_less_as_strength_falls():
    """Documented: low frequencies from the render, high frequencies from a fresh fill, cutoff falling with t."""
    image, mask, init = _partial_setup()
    images, masks = batch(image, mask)
    inpainter = ExemplarInpainterConfig().setup()
    full = inpainter.inpaint(images, masks, seeds=[2])[0].numpy()  # the fresh fill partial mode draws (same seed)
    inner = _inner(mask)
    render = np.where(mask[..., None], init, image)  # what the inpainter sees: the render inside, the view outside
    changes = []
    for strength in (0.3, 0.6, 0.9):
        out = inpainter.inpaint(images, masks, init=torch.from_numpy(init)[None], strength=strength, seeds=[2])
        out = out[0].numpy()
        sigma = partial_sigma(mask, strength, 0.5)
        # Compared at twice the cutoff scale, where the fill's detail band has faded (a Gaussian is no ideal filter).
        coarse_kept = np.abs(low_pass(out, 2 * sigma) - low_pass(render, 2 * sigma))[inner].mean()
        coarse_of_fill = np.abs(low_pass(full, 2 * sigma) - low_pass(render, 2 * sigma))[inner].mean()
        if strength < 0.8:  # at larger scales the blur is dominated by the observed pixels around the hole
            assert coarse_kept < 0.4 * coarse_of_fill, (strength, coarse_kept, coarse_of_fill)
        detail = (out - low_pass(out, sigma))[inner].ravel()
        fill_detail = (full - low_pass(full, sigma))[inner].ravel()
        assert np.corrcoef(detail, fill_detail)[0, 1] > 0.8, strength  # the detail is the fill's
        assert np.array_equal(out[~mask], image[~mask])
        changes.append(float(np.abs(out - init)[mask].mean()))
    assert changes == sorted(changes), changes


def test_updates_at_falling_strength_make_two_views_fills_agree():
    """Two views of one region, filled with different seeds; the 'NeRF' renders their average (what a pixel loss
    converges to) and each update re-inpaints from that render at the schedule's falling strength."""
    image, mask, _ = _partial_setup()
    images, masks = batch(image, mask)
    inpainter = ExemplarInpainterConfig().setup()
    views = [inpainter.inpaint(images, masks, seeds=[seed])[0].numpy() for seed in (11, 12)]
    disagreement = [float(np.abs(views[0] - views[1])[mask].mean())]
    schedule = [0.85 - (0.85 - 0.2) * math.sqrt(k / 5) for k in range(6)]
    for k, strength in enumerate(schedule):
        render = torch.from_numpy((views[0] + views[1]) / 2)[None]
        views = [
            inpainter.inpaint(images, masks, init=render, strength=strength, seeds=[100 * k + v])[0].numpy()
            for v in range(2)
        ]
        disagreement.append(float(np.abs(views[0] - views[1])[mask].mean()))
    assert disagreement[-1] < 0.5 * disagreement[0], disagreement
    assert all(later < earlier for earlier, later in zip(disagreement, disagreement[1:])), disagreement


def test_strength_one_ignores_init():
    image, mask, init = _partial_setup()
    images, masks = batch(image, mask)
    inpainter = ExemplarInpainterConfig().setup()
    with_init = inpainter.inpaint(images, masks, init=torch.from_numpy(init)[None], strength=1.0, seeds=[3])
    with_other_init = inpainter.inpaint(images, masks, init=torch.zeros_like(images), strength=1.0, seeds=[3])
    assert torch.equal(with_init, with_other_init)


def test_empty_border_and_large_masks():
    image = dead_leaves(seed=7)
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    empty = np.zeros((HEIGHT, WIDTH), bool)
    corner = (rows < 90) & (cols < 100)  # touches two image borders
    large = rows >= 24  # 90% of the view: only the top strip is known
    images = torch.from_numpy(image)[None].repeat(3, 1, 1, 1)
    masks = torch.from_numpy(np.stack([empty, corner, large]))
    out = ExemplarInpainterConfig().setup().inpaint(images, masks).numpy()
    assert np.array_equal(out[0], image)
    for filled, mask in zip(out[1:], (corner, large)):
        assert np.array_equal(filled[~mask], image[~mask])
        assert np.isfinite(filled).all() and filled.min() >= 0.0 and filled.max() <= 1.0
        # Real texture, not a flat colour: the fill varies as much as a tenth of the texture does.
        assert filled[mask].std(axis=0).mean() > 0.1 * image.std(axis=(0, 1)).mean()


def test_fully_masked_view_is_an_input_error():
    images, masks = batch(dead_leaves(), np.ones((HEIGHT, WIDTH), bool))
    with pytest.raises(MaldInputError, match="whole image"):
        ExemplarInpainterConfig().setup().inpaint(images, masks)


def test_missing_xphoto_raises_setup_error_with_the_fix(monkeypatch):
    monkeypatch.delattr(cv2, "xphoto")
    with pytest.raises(MaldSetupError, match="opencv-contrib-python-headless==4.10.0.84"):
        ExemplarInpainter(ExemplarInpainterConfig())
