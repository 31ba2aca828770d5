"""The MALD-NeRF model: nerfacto trained on observed pixels and, inside the masks, adversarially.

Each training batch (see :mod:`mald_nerfstudio.data.datamanager`) holds ``num_recon_rays`` observed rays
followed by the rays of P x P patches laid over the inpainting masks. The pipeline renders them in one forward pass
(one summed step) or in two, one per step (:meth:`MaldPipeline.get_train_loss_phases`).

* Observed rays: nerfacto's losses (pixel MSE, proposal interlevel, distortion, camera-pose regulariser).
  The interlevel and distortion terms see the observed rays only, unless ``proposal_losses_on_patches``.
* Patches: masked adversarial training against a patch discriminator (real = patch of the current inpainted
  image, fake = render, both zero outside the mask) plus discriminator feature matching. No pixel or
  perceptual loss in the mask unless an ablation switches one on.

The discriminator is a submodule (saved in checkpoints) with its own parameter group, which only the
trainer's discriminator step updates. Building the model never downloads anything: nerfacto's LPIPS metric,
which fetches AlexNet weights at construction, is replaced by our offline-aware metrics.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

import torch
from torch import Tensor, nn
from torch.nn import Parameter

from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig

from mald_nerfstudio.eval.metrics import InpaintingMetrics, MetricsConfig
from mald_nerfstudio.model.adversarial_loss import AdversarialLossConfig, MaskedAdversarialLoss, mask_patches
from mald_nerfstudio.model.discriminator import DiscriminatorConfig, PatchDiscriminator

DISCRIMINATOR_GROUP = "discriminator"


class _NoLPIPS(nn.Module):
    """Stands in for torchmetrics' LPIPS while nerfacto builds its modules (that class downloads AlexNet)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()


@contextlib.contextmanager
def _nerfacto_without_lpips_download() -> Iterator[None]:
    import torchmetrics.image.lpip as lpip_module

    original = lpip_module.LearnedPerceptualImagePatchSimilarity
    lpip_module.LearnedPerceptualImagePatchSimilarity = _NoLPIPS  # type: ignore[misc]
    try:
        yield
    finally:
        lpip_module.LearnedPerceptualImagePatchSimilarity = original  # type: ignore[misc]


@dataclass
class MaldNerfModelConfig(NerfactoModelConfig):
    """nerfacto plus masked adversarial training inside the inpainting masks."""

    _target: Type = field(default_factory=lambda: MaldNerfModel)
    """Target class to instantiate."""
    proposal_losses_on_patches: bool = False
    """Let nerfacto's interlevel and distortion losses see the patch rays too (as one summed step did before)."""
    use_adversarial: bool = True
    """Masked adversarial loss in the mask (the paper's core loss; off = the 'no adversarial' ablation)."""
    use_feature_matching: bool = True
    """Discriminator feature-matching loss in the mask (off = ablation)."""
    use_mask_l1: bool = False
    """L1 between renders and inpainted images inside the mask (ablation / pixel-loss baselines), weighted per
    pixel like the reconstruction loss weighs an observed ray."""
    mask_l1_mult: float = 1.0
    """Weight of the in-mask L1 loss when enabled."""
    use_mask_lpips: bool = False
    """LPIPS between renders and inpainted patches inside the mask (ablation / SPIn-NeRF baseline); needs the
    LPIPS backbone weights locally (see README, 'Metric weights')."""
    mask_lpips_mult: float = 0.1
    """Weight of the in-mask LPIPS loss when enabled."""
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    """Patch discriminator architecture and size."""
    adversarial_loss: AdversarialLossConfig = field(default_factory=AdversarialLossConfig)
    """Adversarial, feature-matching and R1 weights."""
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    """Evaluation metrics and where their network weights are (LPIPS, Inception); never downloaded."""


class MaldNerfModel(NerfactoModel):
    """nerfacto with a patch discriminator and in-mask losses."""

    config: MaldNerfModelConfig

    def populate_modules(self) -> None:
        with _nerfacto_without_lpips_download():
            super().populate_modules()
        del self.lpips
        self.discriminator: Optional[PatchDiscriminator] = None
        if self.config.use_adversarial:
            self.discriminator = self.config.discriminator.setup()
        adversarial = self.config.adversarial_loss
        if not self.config.use_feature_matching:
            adversarial = AdversarialLossConfig(**{**vars(adversarial), "lambda_fm": 0.0})
        self.adversarial_loss: MaskedAdversarialLoss = adversarial.setup()
        self._mask_lpips: Optional[nn.Module] = None
        self._last_patches: Optional[Tuple[Tensor, Tensor, Tensor]] = None
        self._metrics: Optional[InpaintingMetrics] = None

    def get_extra_state(self) -> Dict[str, Any]:
        """The proposal sampler's schedule counters, which nerfacto leaves out of checkpoints (a resumed run would
        otherwise update the proposal networks at other steps than the uninterrupted run)."""
        sampler = self.proposal_sampler
        return {"proposal_step": int(sampler._step), "proposal_steps_since_update": int(sampler._steps_since_update)}

    def set_extra_state(self, state: Any) -> None:
        if isinstance(state, dict) and "proposal_step" in state:
            self.proposal_sampler._step = int(state["proposal_step"])
            self.proposal_sampler._steps_since_update = int(state["proposal_steps_since_update"])

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = super().get_param_groups()
        if self.discriminator is not None:
            groups[DISCRIMINATOR_GROUP] = list(self.discriminator.parameters())
        return groups

    # ----------------------------------------------------------------- batch
    @staticmethod
    def _num_recon(outputs: Dict, batch: Dict) -> int:
        return int(batch.get("num_recon_rays", outputs["rgb"].shape[0]))

    def _recon_outputs(self, outputs: Dict, num_recon: int) -> Dict:
        """Outputs restricted to the observed rays for nerfacto's terms (the sample lists only without
        ``proposal_losses_on_patches``)."""
        sliced = dict(outputs)
        for key in ("rgb", "accumulation", "depth", "expected_depth"):
            if key in outputs:
                sliced[key] = outputs[key][:num_recon]
        if not self.config.proposal_losses_on_patches:
            for key in ("weights_list", "ray_samples_list"):
                if key in outputs:
                    sliced[key] = [item[:num_recon] for item in outputs[key]]
        return sliced

    def _patches(self, outputs: Dict, batch: Dict) -> Optional[Tuple[Tensor, Tensor, Tensor]]:
        """(real, fake, mask) patches as [B, 3, P, P], [B, 3, P, P], [B, 1, P, P], or None without patches. The
        patch rays follow the batch's observed rays in ``outputs``, or are all of them (``patch_rays_only``)."""
        if "patch_real" not in batch:
            return None
        real = batch["patch_real"].to(self.device)
        num_patches, size = real.shape[0], real.shape[1]
        first = 0 if batch.get("patch_rays_only", False) else self._num_recon(outputs, batch)
        fake = outputs["rgb"][first:].reshape(num_patches, size, size, 3)
        mask = batch["patch_mask"].to(self.device)
        return real.permute(0, 3, 1, 2), fake.permute(0, 3, 1, 2), mask.permute(0, 3, 1, 2)

    # ---------------------------------------------------------------- losses
    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        return super().get_metrics_dict(self._recon_outputs(outputs, self._num_recon(outputs, batch)), batch)

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        """nerfacto's losses on the observed rays plus the inpainting losses on the patch rays."""
        num_recon = self._num_recon(outputs, batch)
        loss_dict = super().get_loss_dict(self._recon_outputs(outputs, num_recon), batch, metrics_dict)
        loss_dict.update(self.get_inpainting_loss_dict(outputs, batch))
        return loss_dict

    def get_inpainting_loss_dict(self, outputs: Dict, batch: Dict) -> Dict[str, Tensor]:
        """The losses inside the masks (adversarial, feature matching, ablation terms); empty without patches.
        Keeps the detached patches for this iteration's discriminator step."""
        patches = self._patches(outputs, batch) if self.training else None
        self._last_patches = None
        loss_dict: Dict[str, Tensor] = {}
        if patches is None:
            return loss_dict
        num_recon = int(batch["num_recon_rays"])
        real, fake, mask = patches
        inside = mask.float()
        if self.discriminator is not None:
            out = self.adversarial_loss.generator_loss(self.discriminator, real, fake, mask)
            loss_dict["adversarial_loss"] = self.adversarial_loss.config.lambda_adv * out.adversarial
            if self.config.use_feature_matching:
                loss_dict["feature_matching_loss"] = self.adversarial_loss.config.lambda_fm * out.feature_matching
            self._last_patches = (real.detach(), fake.detach(), mask)
        if self.config.use_mask_l1:
            # Normalised as if the masked pixels were extra rays of the reconstruction batch, so that a masked
            # pixel weighs what an observed one does (a mean over the mask alone would weigh each far more).
            l1 = ((fake - real).abs() * inside).sum() / (3.0 * (num_recon + inside.sum()))
            loss_dict["mask_l1_loss"] = self.config.mask_l1_mult * l1
        if self.config.use_mask_lpips:
            lpips = self.mask_lpips_net()
            loss_dict["mask_lpips_loss"] = self.config.mask_lpips_mult * lpips(
                mask_patches(fake, mask), mask_patches(real, mask)
            ).mean()
        return loss_dict

    def mask_lpips_net(self) -> nn.Module:
        """The LPIPS network of the in-mask LPIPS loss (raises MaldSetupError when its weights are missing)."""
        if self._mask_lpips is None:
            from mald_nerfstudio.eval.metric_networks import build_lpips

            net = build_lpips().to(self.device)
            net.requires_grad_(False)
            object.__setattr__(self, "_mask_lpips", net)  # not a submodule: never saved in checkpoints
        assert self._mask_lpips is not None
        return self._mask_lpips

    def get_discriminator_loss_dict(self, step: int) -> Dict[str, Tensor]:
        """The discriminator's loss on this iteration's patches (renders detached); empty when there are none."""
        if self.discriminator is None or self._last_patches is None:
            return {}
        real, fake, mask = self._last_patches
        out = self.adversarial_loss.discriminator_loss(self.discriminator, real, fake, mask, step)
        logs = {
            "discriminator_loss": out.loss,
            "discriminator_adversarial": out.adversarial.detach(),
            "d_real_logit": out.real_logit,
            "d_fake_logit": out.fake_logit,
            "d_real_prob": torch.sigmoid(out.real_logit),
            "d_fake_prob": torch.sigmoid(out.fake_logit),
        }
        if out.r1_applied:
            logs["r1_penalty"] = out.r1.detach()
        return logs

    # ------------------------------------------------------------ evaluation
    @property
    def metrics(self) -> InpaintingMetrics:
        """Evaluation metrics, built on first use (networks come from local weight files only)."""
        if self._metrics is None:
            object.__setattr__(self, "_metrics", self.config.metrics.setup(device=self.device))
        assert self._metrics is not None
        return self._metrics

    def get_image_metrics_and_images(self, outputs, batch):
        gt = self.renderer_rgb.blend_background(batch["image"].to(self.device))
        pred = outputs["rgb"]
        mask = batch.get("inpaint_mask")
        metrics = self.metrics.per_image(pred, gt, mask if mask is not None and bool(mask.any()) else None)
        images = {"img": torch.cat([gt, pred], dim=1)}
        if mask is not None:
            images["inpaint_mask"] = mask.to(self.device).float().expand_as(pred)
            overlay = torch.where(mask.to(self.device), 0.5 * pred + 0.5 * torch.tensor([1.0, 0.0, 1.0], device=self.device), pred)
            images["mask_overlay"] = overlay
        return metrics, images
