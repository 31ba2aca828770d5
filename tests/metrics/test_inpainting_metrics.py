"""Unit tests of the evaluation metrics (mald_nerfstudio.eval): math on hand-computed cases, border crops,
loading of the pretrained networks from local files only, and the unavailable-with-reason behaviour offline.

Random networks appear here only as injected test doubles or as locally saved checkpoints that exercise the real
loading code; the production code never computes a metric with a random network.
"""

from __future__ import annotations

import math
import shutil
import socket
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from scipy import linalg

import mald_nerfstudio.metrics.inpainting as metrics_module
from mald_nerfstudio.errors import MaldInputError, MaldSetupError
from mald_nerfstudio.metrics.border_crops import border_crop_boxes, border_crops, mask_border_points
from mald_nerfstudio.metrics.networks import (
    INCEPTION_FID,
    LPIPS_BACKBONES,
    PerceptualDistance,
    build_inception,
    build_lpips,
)
from mald_nerfstudio.metrics.inpainting import (
    MASKED_METRICS,
    InpaintingMetrics,
    MetricsConfig,
    MetricUnavailableWarning,
    frechet_distance,
    kernel_distance,
)


class NetworkAccessAttempted(AssertionError):
    """Raised by the offline guard when code under test reaches for the network."""


@pytest.fixture(autouse=True)
def offline_with_empty_hub(tmp_path, monkeypatch):
    """Every test: an empty torch hub cache, no network, and a fresh once-per-process warning registry."""

    def refuse(*args, **kwargs):
        raise NetworkAccessAttempted(f"network access attempted: {args[:1]}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(metrics_module, "_WARNED", set())
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def _save_random_alexnet_features(path: Path) -> dict:
    """A torchvision-format AlexNet checkpoint (features only, random) at ``path``; returns its state dict."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        features = torchvision.models.alexnet(weights=None).features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def _random_lpips_distance() -> PerceptualDistance:
    """Test double: torchmetrics' LPIPS network with a random AlexNet and random heads (nothing loaded)."""
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return PerceptualDistance(_NoTrainLpips(pretrained=False, net="alex", pnet_rand=True))


class ChannelStats(torch.nn.Module):
    """Test double for the Inception features: per-channel mean and standard deviation (6 features)."""

    num_features = 6

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(2)
        return torch.cat([flat.mean(-1), flat.std(-1)], dim=1)


# ------------------------------------------------------------------------------------------------ PSNR / SSIM


def test_psnr_whole_and_masked_match_hand_computed_values():
    gt = torch.zeros(8, 8, 3)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:4] = True
    pred = torch.where(mask[..., None], gt + 0.1, gt + 0.3)
    result = InpaintingMetrics(MetricsConfig(metrics=("psnr", "masked_psnr"))).per_image(pred, gt, mask)
    assert result["masked_psnr"] == pytest.approx(10 * math.log10(1 / 0.1**2), abs=1e-4)
    assert result["psnr"] == pytest.approx(10 * math.log10(1 / ((0.1**2 + 0.3**2) / 2)), abs=1e-4)
    assert set(result) == {"psnr", "masked_psnr"}


def test_masked_ssim_is_the_ssim_map_averaged_inside_the_mask():
    # Left half: constant 0.2 vs 0.4 (zero variance, so SSIM = (2ab + c1) / (a^2 + b^2 + c1) there);
    # right half identical. The mask stays > 5 px (the window radius) away from the step.
    gt = torch.full((32, 64, 3), 0.7)
    pred = gt.clone()
    gt[:, :32] = 0.4
    pred[:, :32] = 0.2
    mask = torch.zeros(32, 64, dtype=torch.bool)
    mask[4:28, 2:20] = True
    result = InpaintingMetrics(MetricsConfig(metrics=("ssim", "masked_ssim"))).per_image(pred, gt, mask)
    c1 = 0.01**2
    expected_inside = (2 * 0.2 * 0.4 + c1) / (0.2**2 + 0.4**2 + c1)
    assert result["masked_ssim"] == pytest.approx(expected_inside, abs=1e-5)
    assert expected_inside + 0.05 < result["ssim"] < 1.0  # the identical right half pulls the whole image up


def test_masked_metrics_are_nan_for_an_empty_mask_and_absent_without_mask():
    metrics = InpaintingMetrics(MetricsConfig(metrics=("psnr", "masked_psnr", "masked_ssim")))
    image = torch.rand(16, 16, 3)
    empty = metrics.per_image(image, image * 0.5, torch.zeros(16, 16, dtype=torch.bool))
    assert math.isnan(empty["masked_psnr"]) and math.isnan(empty["masked_ssim"])
    assert set(metrics.per_image(image, image * 0.5)) == {"psnr"}


def test_per_image_rejects_mask_of_wrong_size_and_unknown_metric_names():
    metrics = InpaintingMetrics(MetricsConfig(metrics=("masked_psnr",)))
    with pytest.raises(MaldInputError, match="mask"):
        metrics.per_image(torch.rand(8, 8, 3), torch.rand(8, 8, 3), torch.ones(8, 9, dtype=torch.bool))
    with pytest.raises(MaldInputError, match="Unknown metrics"):
        InpaintingMetrics(MetricsConfig(metrics=("psnr", "fidd")))


# ------------------------------------------------------------------------------------------------ LPIPS / M-LPIPS


def test_m_lpips_ignores_pixels_outside_the_mask_but_lpips_does_not():
    metrics = InpaintingMetrics(MetricsConfig(metrics=("lpips", "m_lpips")), lpips_distance=_random_lpips_distance())
    generator = torch.Generator().manual_seed(1)
    gt = torch.rand(64, 64, 3, generator=generator)
    pred = torch.rand(64, 64, 3, generator=generator)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[16:48, 16:48] = True
    pred_changed_outside = torch.where(mask[..., None], pred, torch.rand(64, 64, 3, generator=generator))
    first = metrics.per_image(pred, gt, mask)
    second = metrics.per_image(pred_changed_outside, gt, mask)
    assert second["m_lpips"] == pytest.approx(first["m_lpips"], abs=1e-7)
    assert abs(second["lpips"] - first["lpips"]) > 1e-4
    assert first["m_lpips"] > 1e-4  # the inside still differs
    assert metrics.unavailable == {}


def test_lpips_builds_from_the_hub_cache_file_and_is_differentiable(offline_with_empty_hub):
    saved = _save_random_alexnet_features(offline_with_empty_hub / LPIPS_BACKBONES["alex"].file_names[0])
    distance = build_lpips("alex")
    assert torch.equal(distance.net.net.slice1[0].weight, saved["features.0.weight"])
    assert torch.equal(getattr(distance.net.net.slice5, "10").weight, saved["features.10.weight"])
    import torchmetrics.functional.image.lpips as tm_lpips

    heads = torch.load(Path(tm_lpips.__file__).parent / "lpips_models" / "alex.pth", map_location="cpu")
    assert torch.equal(distance.net.lin0.model[1].weight, heads["lin0.model.1.weight"])
    image = torch.rand(1, 3, 64, 64)
    assert float(distance(image, image)) == pytest.approx(0.0, abs=1e-7)
    pred = torch.rand(1, 3, 64, 64, requires_grad=True)
    distance(pred, image).sum().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_lpips_weights_path_config_field_is_used(tmp_path):
    local = tmp_path / "elsewhere" / "my_alexnet.pth"
    _save_random_alexnet_features(local)
    metrics = InpaintingMetrics(MetricsConfig(metrics=("lpips",), lpips_weights_path=local))
    assert metrics.unavailable == {}
    assert set(metrics.per_image(torch.rand(32, 32, 3), torch.rand(32, 32, 3))) == {"lpips"}


def test_lpips_loss_constructor_raises_setup_error_naming_file_place_and_url(offline_with_empty_hub, tmp_path):
    with pytest.raises(MaldSetupError) as missing:
        build_lpips("vgg")
    message = str(missing.value)
    assert str(offline_with_empty_hub / "vgg16-397923af.pth") in message
    assert LPIPS_BACKBONES["vgg"].url in message and "lpips_weights_path" in message
    with pytest.raises(MaldSetupError, match="nowhere.pth"):
        build_lpips("alex", tmp_path / "nowhere.pth")
    offline_with_empty_hub.mkdir(parents=True)
    corrupt = offline_with_empty_hub / "alexnet-owt-7be5be79.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(MaldSetupError, match="could not be read"):
        build_lpips("alex")


# ------------------------------------------------------------------------------------------------ offline behaviour


def test_missing_weights_make_metrics_unavailable_with_reason_without_any_download(offline_with_empty_hub):
    # The guard works: torchmetrics' own LPIPS would download and is stopped by it.
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    with pytest.raises(NetworkAccessAttempted):
        LearnedPerceptualImagePatchSimilarity(net_type="alex")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = InpaintingMetrics(MetricsConfig())
        InpaintingMetrics(MetricsConfig())
        image, mask = torch.rand(32, 32, 3), torch.zeros(32, 32, dtype=torch.bool)
        mask[8:16, 8:16] = True
        per_image = [metrics.per_image(image, image * 0.9, mask) for _ in range(3)]
        per_set = metrics.per_set([image, image * 0.9], [image, image * 0.8], [mask, mask])
    assert set(metrics.unavailable) == {"lpips", "m_lpips", "fid", "kid", "c_fid", "c_kid"}
    lpips_reason, inception_reason = metrics.unavailable["m_lpips"], metrics.unavailable["c_kid"]
    assert str(offline_with_empty_hub / "alexnet-owt-7be5be79.pth") in lpips_reason
    assert LPIPS_BACKBONES["alex"].url in lpips_reason
    assert str(offline_with_empty_hub / "weights-inception-2015-12-05-6726825d.pth") in inception_reason
    assert INCEPTION_FID.url in inception_reason
    assert all(set(result) == {"psnr", "ssim", "masked_psnr", "unmasked_psnr", "masked_ssim", "m_sharpness",
                               "m_rgb_swd"} for result in per_image)
    assert set(per_set) == {"swd", "m_swd", "m_rgb_swd"}  # the weight-free proxies are always there
    unavailable_warnings = [w for w in caught if issubclass(w.category, MetricUnavailableWarning)]
    assert len(unavailable_warnings) == 2  # one for LPIPS, one for Inception, not per instance or image


# ------------------------------------------------------------------------------------------------ border crops


def test_border_crop_centres_cover_exactly_the_mask_perimeter():
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[20:30, 30:40] = True
    perimeter = {(r, c) for r in range(20, 30) for c in range(30, 40) if r in (20, 29) or c in (30, 39)}
    assert set(mask_border_points(mask)) == perimeter and len(mask_border_points(mask)) == 36
    boxes = border_crop_boxes(mask, crop_size=16, num_crops=36)
    assert {(top + 8, left + 8) for top, left in boxes} == perimeter
    four = border_crop_boxes(mask, crop_size=16, num_crops=4)
    assert len(four) == 4 and four == border_crop_boxes(mask, crop_size=16, num_crops=4)
    assert all((top + 8, left + 8) in perimeter for top, left in four)


def test_border_crops_at_image_corners_are_shifted_inside_and_cut_the_right_pixels():
    height, width, size = 32, 40, 16
    image = torch.arange(height * width * 3, dtype=torch.float32).reshape(height, width, 3)
    top_left = torch.zeros(height, width, dtype=torch.bool)
    top_left[:6, :6] = True
    # the image edge is not a seam: only row 5 and column 5 are border
    assert set(mask_border_points(top_left)) == {(5, c) for c in range(6)} | {(r, 5) for r in range(6)}
    assert set(border_crop_boxes(top_left, size, 5)) == {(0, 0)}
    bottom_right = torch.zeros(height, width, dtype=torch.bool)
    bottom_right[-3:, -3:] = True
    assert set(border_crop_boxes(bottom_right, size, 3)) == {(height - size, width - size)}
    crops = border_crops([image, image], [top_left, bottom_right], size, 2)
    assert crops.shape == (4, 3, size, size)
    assert torch.equal(crops[0], image[:size, :size].permute(2, 0, 1))
    assert torch.equal(crops[3], image[-size:, -size:].permute(2, 0, 1))


def test_border_crops_skip_empty_masks_and_reject_crops_larger_than_the_image():
    image = torch.rand(24, 24, 3)
    assert border_crops([image], [torch.zeros(24, 24, dtype=torch.bool)], 8, 4).shape == (0, 3, 8, 8)
    with pytest.raises(MaldInputError, match="crop_size"):
        border_crop_boxes(torch.ones(24, 24, dtype=torch.bool), 32, 4)


# ------------------------------------------------------------------------------------------------ FID / KID


def _features_with_known_statistics(n: int = 50, dim: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return torch.randn(n, dim, generator=generator, dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.3, 0.0, 0.0], [0.0, 0.8, 0.2, 0.0], [0.0, 0.0, 1.5, 0.1], [0.0, 0.0, 0.0, 0.5]], dtype=torch.float64
    )


def test_fid_of_identical_sets_is_zero_and_of_shifted_sets_the_squared_shift():
    real = _features_with_known_statistics()
    shift = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    assert frechet_distance(real, real.clone()) == pytest.approx(0.0, abs=1e-6)
    # same covariance, means differ by `shift`: the trace term vanishes
    assert frechet_distance(real, real + shift) == pytest.approx(float(shift.square().sum()), rel=1e-5)


def test_fid_matches_the_closed_form_frechet_distance_of_the_sample_statistics():
    real = _features_with_known_statistics()
    fake = real * 2.0 + 1.0
    # S_fake = 4 S_real, so Tr(S + 4S - 2 sqrt(4 S^2)) = Tr(S); means differ by mean(real) + 1
    closed_form = float((real.mean(0) + 1.0).square().sum() + torch.cov(real.T).trace())
    assert frechet_distance(real, fake) == pytest.approx(closed_form, rel=1e-5)
    other = torch.randn(40, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 0.7
    mu1, mu2 = real.mean(0).numpy(), other.mean(0).numpy()
    s1, s2 = torch.cov(real.T).numpy(), torch.cov(other.T).numpy()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(real, other) == pytest.approx(expected, rel=1e-5)


def test_kid_on_small_sets_uses_the_whole_set_and_matches_the_hand_computed_mmd():
    real = _features_with_known_statistics(n=6)
    fake = real[:5] + 0.5

    def kernel(a, b):
        return (a @ b.T / a.shape[1] + 1.0) ** 3

    m = 5  # both sets have 5 samples: the default subset size 1000 adapts to 5, so every subset is the whole set
    mean, std = kernel_distance(real[:5], fake)
    k_xx, k_yy, k_xy = kernel(real[:5], real[:5]), kernel(fake, fake), kernel(real[:5], fake)
    expected = (
        (k_xx.sum() - k_xx.diag().sum() + k_yy.sum() - k_yy.diag().sum()) / (m * (m - 1)) - 2 * k_xy.sum() / m**2
    )
    assert mean == pytest.approx(float(expected), rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-12)
    assert kernel_distance(real, fake, seed=1) == kernel_distance(real, fake, seed=1)
    with pytest.raises(MaldInputError, match="at least 2"):
        kernel_distance(real[:1], fake)


def test_per_set_uses_the_extractor_features_for_fid_kid_and_border_crops():
    config = MetricsConfig(metrics=("fid", "kid", "c_fid", "c_kid"), crop_size=16, crops_per_image=3)
    metrics = InpaintingMetrics(config, feature_extractor=ChannelStats())
    generator = torch.Generator().manual_seed(5)
    preds = [torch.rand(32, 40, 3, generator=generator) for _ in range(5)]
    gts = [torch.rand(32, 40, 3, generator=generator) * 0.5 for _ in range(5)]
    masks = [torch.zeros(32, 40, dtype=torch.bool) for _ in range(5)]
    for i, mask in enumerate(masks):
        mask[8 + i : 20, 10 : 25 + i] = True
    result = metrics.per_set(preds, gts, masks)

    def feats(images):
        return ChannelStats()(torch.stack([image.permute(2, 0, 1) for image in images]))

    assert result["fid"] == pytest.approx(frechet_distance(feats(gts), feats(preds)), rel=1e-6)
    assert (result["kid"], result["kid_std"]) == pytest.approx(kernel_distance(feats(gts), feats(preds)), rel=1e-6)
    crops_fake, crops_real = ChannelStats()(border_crops(preds, masks, 16, 3)), ChannelStats()(
        border_crops(gts, masks, 16, 3)
    )
    assert crops_fake.shape[0] == 15
    assert result["c_fid"] == pytest.approx(frechet_distance(crops_real, crops_fake), rel=1e-6)
    assert result["c_kid"] == pytest.approx(kernel_distance(crops_real, crops_fake)[0], rel=1e-6)
    assert metrics.per_set(gts, gts, masks)["fid"] == pytest.approx(0.0, abs=1e-6)


def test_inception_builds_from_a_local_file_and_reports_a_wrong_file(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity

    # A randomly initialised torch-fidelity Inception (its constructor would download: bypassed here only),
    # saved the way the real checkpoint is, as a state dict.
    with monkeypatch.context() as patch:
        patch.setattr(fidelity, "load_state_dict_from_url", lambda *args, **kwargs: {})
        patch.setattr(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *args, **kwargs: None)
        fidelity_net = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["64"])
    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(fidelity_net.state_dict(), weights)

    extractor = build_inception(weights, feature_dim=64)
    assert torch.equal(extractor.inception.Conv2d_1a_3x3.conv.weight, fidelity_net.Conv2d_1a_3x3.conv.weight)
    assert extractor(torch.rand(2, 3, 32, 32)).shape == (2, 64)

    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(MaldSetupError, match="does not match"):
        build_inception(wrong)


def test_scene_without_object_free_views_is_scored_on_border_crops_against_observed_crops(demo_scene, tmp_path):
    from tests.training_harness import tiny_config, train

    trainer = train(tiny_config(demo_scene, tmp_path, steps=2, num_test_views=0))
    result = trainer.pipeline.get_average_eval_image_metrics(get_std=True)
    assert result["num_views"] == 11  # every view of the demo fixture is a training view now
    fake, real = result["num_crops"]
    assert fake > 0 and real > 0 and math.isfinite(result["c_swd"]) and result["c_swd"] > 0
    assert "psnr" not in result  # nothing to compare pixels with


def test_observed_crops_never_contain_a_masked_pixel():
    from mald_nerfstudio.metrics.border_crops import observed_crops

    mask = torch.zeros(60, 80, dtype=torch.bool)
    mask[20:40, 30:50] = True
    image = torch.zeros(60, 80, 3)
    image[mask] = 1.0  # the object is white: a crop that saw it would hold a 1
    crops = observed_crops([image], [mask], 16, 8, seed=3)
    assert crops.shape == (8, 3, 16, 16) and crops.max() == 0
    assert observed_crops([image], [torch.ones(60, 80, dtype=torch.bool)], 16, 8).shape[0] == 0


def test_fid_and_kid_keep_precomputed_features_under_the_old_torchmetrics_cast(monkeypatch):
    """torchmetrics < 1.4 casts FID/KID inputs with (x * 255).byte() whenever normalize=True, custom extractor or not;
    here that rule is forced on the installed release, and the precomputed features must still reach the statistics
    unchanged (the metrics are built with normalize=False): the same values as without the rule."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    real = _features_with_known_statistics()
    fake = real * 0.5 + 0.25
    expected = (frechet_distance(real, fake), kernel_distance(real, fake, subsets=5))
    for cls in (FrechetInceptionDistance, KernelInceptionDistance):
        original_init = cls.__init__

        def old_rule(self, *args, _init=original_init, **kwargs):
            _init(self, *args, **kwargs)
            self.used_custom_model = False  # torchmetrics 1.2-1.3 did not look at it

        monkeypatch.setattr(cls, "__init__", old_rule)
    assert frechet_distance(real, fake) == pytest.approx(expected[0], rel=1e-9)
    assert kernel_distance(real, fake, subsets=5) == pytest.approx(expected[1], rel=1e-9)


# ------------------------------------------------------------------------------ ns-eval: scenes with(out) test masks


def _numbers(value):
    """Every float in ns-eval's results, nested ones (per_image) included."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, float) else []


def test_ns_eval_without_test_view_masks_lists_the_masked_metrics_unavailable_with_where_the_masks_go(
    demo_scene, tmp_path
):
    from tests.training_harness import tiny_config, train

    scene = tmp_path / "scene"
    shutil.copytree(demo_scene, scene)
    test_views = ("image000.png", "image001.png", "image002.png")  # the fixture's 3 object-free views
    for folder in ("images", "images_2"):
        for name in test_views:
            (scene / folder / "label" / name).unlink()
    trainer = train(tiny_config(scene, tmp_path / "out", steps=2))
    result = trainer.pipeline.get_average_eval_image_metrics(get_std=True)
    assert result["num_views"] == 3 and math.isfinite(result["psnr"]) and math.isfinite(result["swd"])
    assert not [n for n in _numbers(result) if math.isnan(n)], result  # m_swd used to be NaN
    unavailable = result["unavailable_metrics"]
    for name in MASKED_METRICS:
        assert name not in result and all(name not in entry for entry in result["per_image"]), name
        reason = unavailable[name]
        assert "none of the 3 object-free test views has an inpainting mask" in reason, reason
        # exactly where the SPIn-NeRF layout's parser looks for a test view's mask
        assert str(scene / "images" / "label" / "image000.png") in reason, reason
        assert "first 3 images" in reason, reason


def test_ns_eval_with_test_view_masks_reports_every_masked_metric(demo_scene, tmp_path):
    from tests.training_harness import tiny_config, train

    trainer = train(tiny_config(demo_scene, tmp_path, steps=2))
    result = trainer.pipeline.get_average_eval_image_metrics(get_std=True)
    weights_missing = set(trainer.pipeline.model.metrics.unavailable)
    assert set(result["unavailable_metrics"]) == weights_missing  # no masked metric is unavailable for want of masks
    for name in set(MASKED_METRICS) - weights_missing:
        assert math.isfinite(result[name]), (name, result)
    assert result["m_rgb_swd"] > 0 and result["m_swd"] > 0
    assert all(math.isfinite(entry["m_rgb_swd"]) for entry in result["per_image"])  # each view alone too
    assert "m_rgb_swd_std" not in result  # the scene value pools the views' patches: not a mean over views


def test_where_test_masks_go_names_the_nerfstudio_layouts_key_and_file(tmp_path):
    from mald_nerfstudio.data.auto_dataparser import MaldDataParserConfig
    from mald_nerfstudio.data.nerfstudio_inpaint_dataparser import InpaintNerfstudioDataParserConfig
    from mald_nerfstudio.eval.evaluate import where_test_masks_go

    scene = tmp_path / "capture"
    scene.mkdir()
    (scene / "transforms.json").write_text("{}")
    images = [scene / "images" / "clean_00001.png"]
    for parser in (InpaintNerfstudioDataParserConfig(data=scene).setup(), MaldDataParserConfig(data=scene).setup()):
        hint = where_test_masks_go(parser, images)
        assert str(scene / "transforms.json") in hint and '"inpaint_mask_path"' in hint, hint
        assert '"object_free": true' in hint and "inpaint_masks/clean_00001.png" in hint, hint
