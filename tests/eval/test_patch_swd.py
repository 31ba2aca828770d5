"""The weight-free proxies rank fills as a viewer would: another sample of the right texture beats fog and noise."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from mald_nerfstudio.eval.patch_swd import laplacian_pyramid, masked_sharpness, sliced_wasserstein, swd

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
