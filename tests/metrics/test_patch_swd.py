"""The weight-free proxies rank fills as a viewer would: another sample of the right texture beats fog and noise,
and (the colour-aware m_rgb_swd) the right colour beats the wrong one."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from mald_nerfstudio.metrics.patch_swd import laplacian_pyramid, masked_sharpness, rgb_swd, sliced_wasserstein, swd

H, W = 96, 128


def _texture(seed: int) -> np.ndarray:
    """A stationary colour texture (filtered noise), different samples per seed."""
    noise = np.random.default_rng(seed).random((H, W, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 1.2) * 2.5 - 0.75, 0, 1)


def _t(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))


def _hole() -> torch.Tensor:
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[24:72, 32:96] = True
    return mask


def _fills():
    """Ground truths, and renders equal to them outside the hole and filled three ways inside it."""
    hole = _hole().numpy()[..., None]
    gts = [_texture(seed) for seed in range(4)]
    other = [_texture(100 + seed) for seed in range(4)]  # the same texture, other samples: a plausible fill
    fog = [cv2.GaussianBlur(gt, (0, 0), 4.0) for gt in gts]
    noise = [np.random.default_rng(200 + s).random((H, W, 3)).astype(np.float32) for s in range(4)]
    fill = {name: [_t(np.where(hole, f, gt)) for f, gt in zip(src, gts)]
            for name, src in (("plausible", other), ("fog", fog), ("noise", noise))}
    return [_t(gt) for gt in gts], fill


BROWN = ((0.35, 0.2, 0.1), (0.8, 0.55, 0.35))
"""Dark and light colour of a brick-like texture."""
TEAL = ((0.1, 0.3, 0.3), (0.35, 0.8, 0.75))
"""The same texture's wrong colour (as the teal fragments of issue 22's demo-seen fill)."""


def _coloured(seed: int, palette) -> np.ndarray:
    """A grey filtered-noise texture mapped between a palette's dark and light colour (the same pattern per seed)."""
    noise = np.random.default_rng(seed).random((H, W)).astype(np.float32)
    grey = np.clip(cv2.GaussianBlur(noise, (0, 0), 1.2) * 2.5 - 0.75, 0, 1)[..., None]
    dark, light = (np.array(c, np.float32) for c in palette)
    return dark + grey * (light - dark)


def test_laplacian_pyramid_reconstructs_the_image():
    image = _texture(0)
    pyramid = laplacian_pyramid(image, 4)
    rebuilt = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        rebuilt = cv2.pyrUp(rebuilt, dstsize=(band.shape[1], band.shape[0])) + band
    np.testing.assert_allclose(rebuilt, image, atol=1e-5)


def test_sliced_wasserstein_is_zero_for_one_set_and_grows_with_a_shift():
    a = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    assert sliced_wasserstein(a, a.clone()) == 0.0
    assert sliced_wasserstein(a, a + 0.5) > sliced_wasserstein(a, a + 0.1) > 0
    assert math.isnan(sliced_wasserstein(a[:1], a[:1]))


def test_masked_swd_prefers_a_plausible_fill_to_fog_and_noise():
    gts, fills = _fills()
    masks = [_hole()] * len(gts)
    score = {name: swd(renders, gts, masks) for name, renders in fills.items()}
    assert score["plausible"] < score["fog"] and score["plausible"] < score["noise"], score
    # Outside the hole the renders equal the truth, so the whole-image SWD sees less of the difference.
    whole = {name: swd(renders, gts) for name, renders in fills.items()}
    assert whole["fog"] < score["fog"], (whole, score)


def test_masked_sharpness_is_about_one_for_the_right_texture_below_for_fog_above_for_noise():
    gts, fills = _fills()
    hole = _hole()
    sharp = {name: float(np.mean([masked_sharpness(r, g, hole) for r, g in zip(renders, gts)]))
             for name, renders in fills.items()}
    assert 0.8 < sharp["plausible"] < 1.25, sharp
    assert sharp["fog"] < 0.5 < 1.5 < sharp["noise"], sharp
    assert math.isnan(masked_sharpness(gts[0], gts[0], torch.zeros(H, W, dtype=torch.bool)))


def test_rgb_swd_of_a_render_equal_to_the_truth_is_zero_and_nan_without_mask_pixels():
    gts, fills = _fills()
    masks = [_hole()] * len(gts)
    assert rgb_swd(gts, gts, masks) == 0.0
    assert rgb_swd(gts, gts, masks, [m.clone() for m in masks]) == 0.0  # the same masks passed twice, as ns-eval did
    assert rgb_swd(gts, gts) == 0.0  # whole images
    assert rgb_swd(fills["plausible"], gts, masks) > 0
    assert math.isnan(rgb_swd(gts, gts, [torch.zeros(H, W, dtype=torch.bool)] * len(gts)))


def test_rgb_swd_penalises_the_wrong_colour_that_m_swd_does_not_see():
    hole = _hole().numpy()[..., None]
    gts = [_coloured(seed, BROWN) for seed in range(4)]
    masks = [_hole()] * len(gts)
    right = [_t(np.where(hole, _coloured(100 + s, BROWN), gt)) for s, gt in enumerate(gts)]
    wrong = [_t(np.where(hole, _coloured(100 + s, TEAL), gt)) for s, gt in enumerate(gts)]
    blurred = [_t(np.where(hole, cv2.GaussianBlur(gt, (0, 0), 4.0), gt)) for gt in gts]
    gts = [_t(gt) for gt in gts]
    rgb = {name: rgb_swd(fills, gts, masks) for name, fills in (("right", right), ("wrong", wrong),
                                                                 ("blurred", blurred))}
    laplacian = {name: swd(fills, gts, masks) for name, fills in (("right", right), ("wrong", wrong),
                                                                  ("blurred", blurred))}
    assert rgb["wrong"] > 20 * rgb["right"], rgb
    # m_swd's per-channel normalisation hides a colour change entirely: renders of the right texture, all in the
    # wrong colour, score as the right colour to four digits. In the hole it only sees the seams at the border, and
    # ranks the sharp wrong-coloured fill ahead of a blurred fill of the right colour; m_rgb_swd ranks it last.
    wrong_views = [_t(_coloured(100 + s, TEAL)) for s in range(4)]
    right_views = [_t(_coloured(100 + s, BROWN)) for s in range(4)]
    assert swd(wrong_views, gts) == pytest.approx(swd(right_views, gts), rel=1e-4)
    assert rgb_swd(wrong_views, gts) > 20 * rgb_swd(right_views, gts)
    assert laplacian["wrong"] < laplacian["blurred"], laplacian
    assert rgb["right"] < rgb["blurred"] < rgb["wrong"], rgb


def test_rgb_swd_scores_a_blurred_or_noisy_fill_worse_than_another_sample_of_the_true_texture():
    gts, fills = _fills()
    masks = [_hole()] * len(gts)
    score = {name: rgb_swd(renders, gts, masks) for name, renders in fills.items()}
    assert 5 * score["plausible"] < score["fog"] and 5 * score["plausible"] < score["noise"], score


def test_rgb_swd_is_deterministic_with_a_seed():
    gts, fills = _fills()
    masks = [_hole()] * len(gts)
    first = rgb_swd(fills["plausible"], gts, masks, seed=3)
    assert rgb_swd(fills["plausible"], gts, masks, seed=3) == first
    assert rgb_swd(fills["plausible"], gts, masks, seed=4) != first  # the seed draws the patches and directions
