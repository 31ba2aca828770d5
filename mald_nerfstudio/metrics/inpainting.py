"""Evaluation metrics of NeRF inpainting: PSNR, SSIM, LPIPS, M-LPIPS, FID, KID, C-FID, C-KID.

Conventions (everything in this module):

* an image is a float tensor ``[H, W, 3]`` in [0, 1] (nerfstudio's ``outputs["rgb"]`` / ``batch["image"]``);
* a mask is ``[H, W]`` (or ``[H, W, 1]``), bool or 0/1, **True / 1 = inside the inpainting region**;
* a set is a sequence of such images (sizes may differ between images of a set).

Per image (:meth:`InpaintingMetrics.per_image`): ``psnr``, ``ssim`` (whole image, torchmetrics with
``data_range=1``), ``masked_psnr`` (MSE over the masked pixels), ``unmasked_psnr`` (over the other pixels),
``masked_ssim`` (torchmetrics' SSIM map averaged over the masked pixels), ``m_sharpness`` (Laplacian energy in the
mask relative to the truth's, weight-free), ``m_rgb_swd`` (that view's raw-RGB patch SWD in the mask, x 1000, see
below), ``lpips`` and ``m_lpips`` (LPIPS after setting the pixels outside the mask to black in both images). Masked
values of an image whose mask is empty are NaN (average them with a NaN-aware mean).

Per set (:meth:`InpaintingMetrics.per_set`): ``swd``, ``m_swd`` and the colour-aware ``m_rgb_swd`` (weight-free,
x 1000, patches of all views pooled, see :mod:`mald_nerfstudio.metrics.patch_swd`); ``fid``, ``kid`` and ``kid_std``
between the rendered and the ground-truth views; ``c_fid``, ``c_kid``, ``c_kid_std``: the same on crops around the
mask border (see :mod:`mald_nerfstudio.metrics.border_crops`). FID/KID use torchmetrics' ``FrechetInceptionDistance`` /
``KernelInceptionDistance`` fed with features extracted once per image by the FID Inception network.
KID's subset size adapts to small sets: ``min(kid_subset_size, n_rendered, n_reference)`` (with fewer samples
than the configured size, every subset is the whole set, so ``kid_std`` is 0); subsets are drawn with a fixed
seed. A set metric that cannot be computed (fewer than 2 samples on a side) is NaN, with a warning.

LPIPS and FID/KID need pretrained networks, read from local files only (see
:mod:`mald_nerfstudio.metrics.networks`). When a file is missing, the metrics that need it are left out of the
results and listed in :attr:`InpaintingMetrics.unavailable` with the reason; one warning per process says so.
They are never computed with a random network and never downloaded.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Set, Tuple, Type, Union

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from nerfstudio.configs.base_config import InstantiateConfig

from mald_nerfstudio.errors import MaldInputError, MaldSetupError
from mald_nerfstudio.metrics.border_crops import border_crops
from mald_nerfstudio.metrics.networks import PerceptualDistance, build_inception, build_lpips
from mald_nerfstudio.metrics.patch_swd import masked_sharpness, rgb_swd, swd

PER_IMAGE_METRICS = (
    "psnr", "ssim", "masked_psnr", "unmasked_psnr", "masked_ssim", "m_sharpness", "lpips", "m_lpips"
)
"""Metric names computed per image."""
PER_SET_METRICS = ("swd", "m_swd", "m_rgb_swd", "fid", "kid", "c_fid", "c_kid")
"""Metric names computed per set (``kid``/``c_kid`` also report ``kid_std``/``c_kid_std``; ``m_rgb_swd`` is also
given per image, for that view alone, but its scene value pools the patches of all views)."""
ALL_METRICS = PER_IMAGE_METRICS + PER_SET_METRICS
"""Every metric name :class:`MetricsConfig` accepts."""
MASKED_METRICS = (
    "masked_psnr", "unmasked_psnr", "masked_ssim", "m_sharpness", "m_lpips", "m_swd", "m_rgb_swd", "c_fid", "c_kid"
)
"""Metrics that need the inpainting masks of the scored views (inside them, or for ``unmasked_psnr`` outside)."""

_LPIPS_METRICS = ("lpips", "m_lpips")
_INCEPTION_METRICS = ("fid", "kid", "c_fid", "c_kid")
_WARNED: Set[str] = set()
"""Reasons already warned about in this process (one warning per process, not per image)."""


class MetricUnavailableWarning(UserWarning):
    """A metric is skipped because a resource it needs (pretrained weights) is missing."""


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, MetricUnavailableWarning, stacklevel=5)


@dataclass
class MetricsConfig(InstantiateConfig):
    """Configuration of the inpainting evaluation metrics."""

    _target: Type = field(default_factory=lambda: InpaintingMetrics)
    """Target class to instantiate."""
    metrics: Tuple[str, ...] = ALL_METRICS
    """Metrics to compute (names as in ns-eval's output; the default is all of them)."""
    lpips_net: Literal["alex", "vgg"] = "alex"
    """Backbone of LPIPS / M-LPIPS (torchmetrics' LPIPS with the torchvision ImageNet backbone)."""
    lpips_weights_path: Optional[Path] = None
    """Local LPIPS backbone checkpoint (torchvision's); None: its file in torch.hub.get_dir()/checkpoints."""
    inception_weights_path: Optional[Path] = None
    """Local FID Inception checkpoint (torch-fidelity's); None: its file in torch.hub.get_dir()/checkpoints."""
    inception_feature_dim: int = 2048
    """Inception layer used by FID/KID (64, 192, 768 or 2048; 2048 is the standard FID)."""
    crop_size: int = 128
    """Side in pixels of the square crops around the mask border for C-FID / C-KID (use 64 at low resolution)."""
    crops_per_image: int = 8
    """Number of crops per image, centred on evenly spaced points along the mask border."""
    kid_subset_size: int = 1000
    """KID subset size; it is reduced to the size of the smaller set when the sets are smaller (few test views)."""
    kid_subsets: int = 100
    """Number of random subsets KID averages over."""
    seed: int = 0
    """Seed of the KID subset sampling, so results are reproducible."""


def _as_image(image: Tensor, what: str) -> Float[Tensor, "H W 3"]:
    if image.ndim != 3 or image.shape[-1] != 3 or not torch.is_floating_point(image):
        raise MaldInputError(
            f"{what} must be a float image [H, W, 3] in [0, 1], got {image.dtype} {tuple(image.shape)}"
        )
    return image


def _as_mask(mask: Tensor, shape: Tuple[int, int], what: str = "mask") -> Bool[Tensor, "H W"]:
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if tuple(mask.shape) != tuple(shape):
        raise MaldInputError(f"The {what} has shape {tuple(mask.shape)} but its image is {tuple(shape)} [H, W]")
    return mask.bool() if mask.dtype == torch.bool else mask > 0.5


def _chw(image: Float[Tensor, "H W 3"]) -> Float[Tensor, "1 3 H W"]:
    return image.permute(2, 0, 1)[None]


def psnr(pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"]) -> float:
    """PSNR in dB of two [0, 1] images (torchmetrics, ``data_range=1``)."""
    return float(peak_signal_noise_ratio(pred, gt, data_range=1.0))


def masked_psnr(pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"], mask: Bool[Tensor, "H W"]) -> float:
    """PSNR over the pixels inside ``mask`` only (MSE over those pixels, all channels); NaN for an empty mask."""
    if not bool(mask.any()):
        return math.nan
    return float(peak_signal_noise_ratio(pred[mask], gt[mask], data_range=1.0))


def _ssim_map(pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"]) -> Tuple[Tensor, Float[Tensor, "H W"]]:
    value, full = structural_similarity_index_measure(_chw(pred), _chw(gt), data_range=1.0, return_full_image=True)
    return value, full[0].mean(dim=0)


def ssim(pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"]) -> float:
    """SSIM of two [0, 1] images (torchmetrics defaults: 11x11 Gaussian window, sigma 1.5, ``data_range=1``)."""
    return float(_ssim_map(pred, gt)[0])


def masked_ssim(pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"], mask: Bool[Tensor, "H W"]) -> float:
    """Mean of the SSIM map (as for :func:`ssim`, averaged over channels) over the pixels inside ``mask``."""
    if not bool(mask.any()):
        return math.nan
    return float(_ssim_map(pred, gt)[1][mask].mean())


class _FeatureIdentity(nn.Module):
    """Lets torchmetrics' FID/KID consume precomputed features (its custom-extractor path). The metrics are built
    with ``normalize=False``: torchmetrics before 1.4 casts the inputs to bytes under ``normalize=True`` even for a
    custom extractor."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def frechet_distance(real_features: Float[Tensor, "N D"], fake_features: Float[Tensor, "M D"]) -> float:
    """FID between two sets of features (torchmetrics' ``FrechetInceptionDistance``, float64 statistics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if real_features.shape[0] < 2 or fake_features.shape[0] < 2:
        raise MaldInputError(
            f"FID needs at least 2 samples per set, got {real_features.shape[0]} and {fake_features.shape[0]}"
        )
    metric = FrechetInceptionDistance(feature=_FeatureIdentity(real_features.shape[1]), normalize=False)
    metric.update(real_features.double().cpu(), real=True)
    metric.update(fake_features.double().cpu(), real=False)
    return float(metric.compute())


def kernel_distance(
    real_features: Float[Tensor, "N D"],
    fake_features: Float[Tensor, "M D"],
    subset_size: int = 1000,
    subsets: int = 100,
    seed: int = 0,
) -> Tuple[float, float]:
    """KID (mean, std over subsets) between two sets of features (torchmetrics' ``KernelInceptionDistance``,
    cubic polynomial kernel). ``subset_size`` is reduced to the smaller set's size; subsets use ``seed``."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, real_features.shape[0], fake_features.shape[0])
    if size < 2:
        raise MaldInputError(
            f"KID needs at least 2 samples per set, got {real_features.shape[0]} and {fake_features.shape[0]}"
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(
            feature=_FeatureIdentity(real_features.shape[1]), subsets=subsets, subset_size=size, normalize=False
        )
    metric.update(real_features.double().cpu(), real=True)
    metric.update(fake_features.double().cpu(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


class InpaintingMetrics:
    """Single entry point for the evaluation: per-image and per-set metrics of an inpainted scene.

    Args:
        config: which metrics, weight files, crop size, KID settings.
        device: where the networks run.
        lpips_distance: a ready LPIPS module to use instead of building one from pretrained weights. Injection
            point for tests only (tiny random networks); production code leaves it None.
        feature_extractor: a module ``[B, 3, H, W] in [0, 1] -> [B, D]`` to use instead of the FID Inception
            network. Injection point for tests only; production code leaves it None.
    """

    def __init__(
        self,
        config: MetricsConfig,
        device: Union[str, torch.device] = "cpu",
        lpips_distance: Optional[nn.Module] = None,
        feature_extractor: Optional[nn.Module] = None,
    ) -> None:
        unknown = sorted(set(config.metrics) - set(ALL_METRICS))
        if unknown:
            raise MaldInputError(f"Unknown metrics {unknown} in the metrics config", fix=f"choose from {ALL_METRICS}")
        self.config = config
        self.device = torch.device(device)
        self.enabled = tuple(name for name in ALL_METRICS if name in config.metrics)
        self.unavailable: Dict[str, str] = {}
        """Metric name -> why it is not computed (a missing weight file, with the fix)."""

        self.lpips_distance: Optional[nn.Module] = None
        if any(name in self.enabled for name in _LPIPS_METRICS):
            self.lpips_distance = lpips_distance if lpips_distance is not None else self._try_build_lpips()
            if self.lpips_distance is not None:
                self.lpips_distance = self.lpips_distance.to(self.device)

        self.feature_extractor: Optional[nn.Module] = None
        if any(name in self.enabled for name in _INCEPTION_METRICS):
            self.feature_extractor = feature_extractor if feature_extractor is not None else self._try_build_inception()
            if self.feature_extractor is not None:
                self.feature_extractor = self.feature_extractor.to(self.device).eval()

    def _mark_unavailable(self, names: Sequence[str], key: str, err: MaldSetupError) -> None:
        names = [name for name in names if name in self.enabled]
        for name in names:
            self.unavailable[name] = str(err)
        _warn_once(key, f"Metrics {', '.join(names)} are not computed: {err}")

    def _try_build_lpips(self) -> Optional[PerceptualDistance]:
        try:
            return build_lpips(self.config.lpips_net, self.config.lpips_weights_path)
        except MaldSetupError as err:
            self._mark_unavailable(_LPIPS_METRICS, f"lpips:{err}", err)
            return None

    def _try_build_inception(self) -> Optional[nn.Module]:
        try:
            return build_inception(self.config.inception_weights_path, self.config.inception_feature_dim)
        except MaldSetupError as err:
            self._mark_unavailable(_INCEPTION_METRICS, f"inception:{err}", err)
            return None

    def _wants(self, name: str) -> bool:
        return name in self.enabled and name not in self.unavailable

    @torch.no_grad()
    def per_image(
        self,
        pred: Float[Tensor, "H W 3"],
        gt: Float[Tensor, "H W 3"],
        mask: Optional[Union[Bool[Tensor, "H W"], Tensor]] = None,
    ) -> Dict[str, float]:
        """Metrics of one rendered view against its ground truth.

        Args:
            pred: rendered image [H, W, 3] in [0, 1].
            gt: ground-truth image [H, W, 3] in [0, 1].
            mask: inpainting mask [H, W] (True = inpainted region); without it the masked metrics are left out.

        Returns:
            Metric name -> float, for the enabled and available metrics.
        """
        pred = _as_image(pred, "The rendered image").to(self.device, torch.float32)
        gt = _as_image(gt, "The ground-truth image").to(self.device, torch.float32)
        if pred.shape != gt.shape:
            raise MaldInputError(
                f"Rendered image {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in size"
            )
        mask_b = None if mask is None else _as_mask(mask.to(self.device), tuple(pred.shape[:2]))
        out: Dict[str, float] = {}
        if self._wants("psnr"):
            out["psnr"] = psnr(pred, gt)
        if mask_b is not None and self._wants("masked_psnr"):
            out["masked_psnr"] = masked_psnr(pred, gt, mask_b)
        if mask_b is not None and self._wants("unmasked_psnr"):
            out["unmasked_psnr"] = masked_psnr(pred, gt, ~mask_b)
        want_masked_ssim = mask_b is not None and self._wants("masked_ssim")
        if self._wants("ssim") or want_masked_ssim:
            ssim_value, ssim_map = _ssim_map(pred, gt)
            if self._wants("ssim"):
                out["ssim"] = float(ssim_value)
            if want_masked_ssim:
                out["masked_ssim"] = float(ssim_map[mask_b].mean()) if bool(mask_b.any()) else math.nan
        if mask_b is not None and self._wants("m_sharpness"):
            out["m_sharpness"] = masked_sharpness(pred, gt, mask_b)
        if mask_b is not None and self._wants("m_rgb_swd"):
            out["m_rgb_swd"] = rgb_swd([pred], [gt], [mask_b], seed=self.config.seed)
        if self.lpips_distance is not None:
            if self._wants("lpips"):
                out["lpips"] = float(self.lpips_distance(_chw(pred), _chw(gt))[0])
            if mask_b is not None and self._wants("m_lpips"):
                out["m_lpips"] = (
                    float(self.lpips_distance(_chw(pred), _chw(gt), mask_b[None, None])[0])
                    if bool(mask_b.any())
                    else math.nan
                )
        return out

    def _features(self, images: Union[Sequence[Tensor], Tensor], batch_size: int = 16) -> Float[Tensor, "N D"]:
        """Features of channels-first images (a [N, 3, H, W] tensor, or a sequence of [3, H, W])."""
        assert self.feature_extractor is not None
        feats: List[Tensor] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = chunk if isinstance(chunk, Tensor) else torch.stack(list(chunk))
            feats.append(self.feature_extractor(batch.to(self.device, torch.float32)).reshape(len(batch), -1).cpu())
        return torch.cat(feats) if feats else torch.zeros((0, 0))

    def _set_distances(self, prefix: str, real: Tensor, fake: Tensor, out: Dict[str, float]) -> None:
        names = {"fid": f"{prefix}fid", "kid": f"{prefix}kid"}
        if self._wants(names["fid"]):
            try:
                out[names["fid"]] = frechet_distance(real, fake)
            except MaldInputError as err:
                warnings.warn(f"{names['fid']} is NaN: {err}", stacklevel=3)
                out[names["fid"]] = math.nan
        if self._wants(names["kid"]):
            try:
                kid_mean, kid_std = kernel_distance(
                    real, fake, self.config.kid_subset_size, self.config.kid_subsets, self.config.seed
                )
            except MaldInputError as err:
                warnings.warn(f"{names['kid']} is NaN: {err}", stacklevel=3)
                kid_mean, kid_std = math.nan, math.nan
            out[names["kid"]] = kid_mean
            out[f"{names['kid']}_std"] = kid_std

    @torch.no_grad()
    def crop_distances(self, fake: Float[Tensor, "N 3 S S"], real: Float[Tensor, "M 3 S S"]) -> Dict[str, float]:
        """Scenes without ground truth: ``c_swd`` (weight-free) and, where the Inception weights exist, ``c_fid``,
        ``c_kid`` and ``c_kid_std`` between rendered crops around the inpainting border and crops of observed
        pixels (channels-first, in [0, 1])."""
        out: Dict[str, float] = {}
        if self._wants("swd") or self._wants("m_swd"):
            out["c_swd"] = swd(list(fake.permute(0, 2, 3, 1)), list(real.permute(0, 2, 3, 1)), seed=self.config.seed)
        if self.feature_extractor is not None and (self._wants("c_fid") or self._wants("c_kid")):
            self._set_distances("c_", self._features(real), self._features(fake), out)
        return out

    @torch.no_grad()
    def per_set(
        self,
        preds: Sequence[Float[Tensor, "H W 3"]],
        gts: Sequence[Float[Tensor, "H W 3"]],
        masks: Optional[Sequence[Tensor]] = None,
        gt_masks: Optional[Sequence[Tensor]] = None,
    ) -> Dict[str, float]:
        """Set metrics: SWD, FID/KID between ``preds`` and ``gts``; in-mask SWDs; C-FID/C-KID between their border
        crops.

        Args:
            preds: rendered views, each [H, W, 3] in [0, 1].
            gts: reference views (ground-truth test views; for scenes without ground truth, the real images
                the crops are compared with), each [H, W, 3] in [0, 1]. Need not be paired with ``preds``.
            masks: inpainting masks of ``preds``; None leaves out the metrics that need them (``m_swd``,
                ``m_rgb_swd``, ``c_fid``, ``c_kid``: the caller says why).
            gt_masks: masks in ``gts``; default ``masks`` (then ``gts`` pair with ``preds``).

        Returns:
            Metric name -> float (``swd``, ``m_swd``, ``m_rgb_swd``, ``fid``, ``kid``, ``kid_std``, ``c_fid``,
            ``c_kid``, ``c_kid_std``) for the enabled and available metrics; NaN where a set has fewer than 2
            samples.
        """
        out: Dict[str, float] = {}
        preds = [_as_image(p, "A rendered image") for p in preds]
        gts = [_as_image(g, "A reference image") for g in gts]
        if self._wants("swd"):
            out["swd"] = swd(preds, gts, seed=self.config.seed)
        if self._wants("m_swd") and masks is not None:
            out["m_swd"] = swd(preds, gts, masks, gt_masks, seed=self.config.seed)
        if self._wants("m_rgb_swd") and masks is not None:
            out["m_rgb_swd"] = rgb_swd(preds, gts, masks, gt_masks, seed=self.config.seed)
        if self.feature_extractor is None:
            return out
        if self._wants("fid") or self._wants("kid"):
            fake = self._features([p.permute(2, 0, 1) for p in preds], batch_size=1)
            real = self._features([g.permute(2, 0, 1) for g in gts], batch_size=1)
            self._set_distances("", real, fake, out)
        if masks is not None and (self._wants("c_fid") or self._wants("c_kid")):
            gt_masks = masks if gt_masks is None else gt_masks
            size, count = self.config.crop_size, self.config.crops_per_image
            pred_masks = [_as_mask(m, tuple(p.shape[:2])) for m, p in zip(masks, preds)]
            ref_masks = [_as_mask(m, tuple(g.shape[:2])) for m, g in zip(gt_masks, gts)]
            if len(pred_masks) != len(preds) or len(ref_masks) != len(gts):
                raise MaldInputError(
                    f"Got {len(preds)} rendered views with {len(masks)} masks and {len(gts)} reference views with "
                    f"{len(gt_masks)} masks; C-FID / C-KID need one mask per image"
                )
            fake = self._features(border_crops(preds, pred_masks, size, count))
            real = self._features(border_crops(gts, ref_masks, size, count))
            self._set_distances("c_", real, fake, out)
        return out
