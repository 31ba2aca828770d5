"""The MALD-NeRF model: nerfacto trained on observed pixels and, inside the masks, adversarially.

Each training step's :class:`~mald_nerfstudio.data.training_batch.TrainingBatch` holds observed rays followed by
the rays of P x P patches laid over the inpainting masks. The pipeline renders them in one forward pass (one summed
step) or in two, one per step (:meth:`MaldPipeline.get_train_loss_phases`), and hands the patch rays' renders to
:meth:`MaldNerfModel.get_inpainting_losses` explicitly.

* Observed rays: nerfacto's losses (pixel MSE, proposal interlevel, distortion, camera-pose regulariser).
  The interlevel and distortion terms see the observed rays only, unless ``proposal_losses_on_patches``.
* Patches: masked adversarial training against a patch discriminator (real = patch of the current inpainted
  image, fake = render, both zero outside the mask) plus discriminator feature matching. No pixel or
  perceptual loss in the mask unless an ablation switches one on.

The NeRF's pass over the patches returns the patches (renders detached) with its losses
(:meth:`MaldNerfModel.get_inpainting_losses`); the trainer hands them to the discriminator step
(:meth:`MaldNerfModel.get_discriminator_losses`), so nothing is carried between the two calls. The discriminator
is a submodule (saved in checkpoints) with its own parameter group, which only that step updates. Building the
model never downloads anything: nerfacto's LPIPS metric, which fetches AlexNet weights at construction, is left
out (our metrics load local weights only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Type, Union

import numpy as np
import torch
from nerfstudio.cameras.camera_optimizers import CameraOptimizer
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.fields.density_fields import HashMLPDensityField
from nerfstudio.fields.nerfacto_field import NerfactoField
from nerfstudio.model_components.losses import MSELoss
from nerfstudio.model_components.ray_samplers import ProposalNetworkSampler, UniformSampler
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, NormalsRenderer, RGBRenderer
from nerfstudio.model_components.scene_colliders import NearFarCollider
from nerfstudio.model_components.shaders import NormalsShader
from nerfstudio.models.base_model import Model
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from torch import Tensor, nn
from torch.nn import Parameter

from mald_nerfstudio.data.training_batch import TrainingBatch, patch_rays, patch_size
from mald_nerfstudio.metrics.inpainting import InpaintingMetrics, MetricsConfig
from mald_nerfstudio.model.adversarial_loss import (
    AdversarialLossConfig,
    DiscriminatorLossOutput,
    MaskedAdversarialLoss,
    PatchBatch,
    mask_patches,
    rays_to_patches,
)
from mald_nerfstudio.model.appearance import PatchAppearance, PatchAwareAppearanceEmbedding
from mald_nerfstudio.model.discriminator import DiscriminatorConfig, PatchDiscriminator
from mald_nerfstudio.upstream_internals import proposal_sampler_counters, restore_proposal_sampler_counters

DISCRIMINATOR_GROUP = "discriminator"
Batch = Union[TrainingBatch, Dict[str, Tensor]]
"""What the losses and metrics read: a training step's batch, or nerfstudio's dict of an evaluation batch."""


@dataclass
class InpaintingLosses:
    """What the NeRF's pass over the mask patches gives: its losses, their logs, the patches for the D step."""

    losses: Dict[str, Tensor]
    """Weighted losses to add to the NeRF's step (empty without patches)."""
    metrics: Dict[str, Tensor]
    """Detached values to log."""
    patches: Optional[PatchBatch] = None
    """The iteration's patches, renders detached, for the discriminator step (None: no D step this iteration)."""


@dataclass
class LossPhase:
    """The losses of one NeRF optimizer step of an iteration (see ``MaldPipeline.get_train_loss_phases``)."""

    name: str
    """"nerf" (one summed step), or "reconstruction" then "inpainting"."""
    losses: Dict[str, Tensor]
    """The losses this step back-propagates (summed)."""
    metrics: Dict[str, Any]
    """Values to log."""
    patches: Optional[PatchBatch] = None
    """The patches the iteration's discriminator step judges, from the phase that rendered them."""


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
    """L1 between renders and inpainted images inside the mask (ablation and pixel-loss baselines)."""
    mask_l1_mult: float = 1.0
    """Weight of the in-mask L1 loss when enabled."""
    use_mask_lpips: bool = False
    """LPIPS between renders and inpainted patches inside the mask (SPIn-NeRF baseline; local LPIPS weights)."""
    mask_lpips_mult: float = 0.1
    """Weight of the in-mask LPIPS loss when enabled."""
    patch_appearance: PatchAppearance = "detached"
    """Per-view appearance codes on patch rays: detached (no gradient), mean (as evaluation), trained (nerfacto's)."""
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    """Patch discriminator architecture and size."""
    adversarial_loss: AdversarialLossConfig = field(default_factory=AdversarialLossConfig)
    """Adversarial, feature-matching and R1 weights."""
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    """Evaluation metrics and where their network weights are (LPIPS, Inception); never downloaded."""

    @property
    def has_inpainting_losses(self) -> bool:
        """Whether any loss supervises the masks (adversarial, in-mask L1 or LPIPS); without one, no patches."""
        return self.use_adversarial or self.use_mask_l1 or self.use_mask_lpips


class MaldNerfModel(NerfactoModel):
    """nerfacto with a patch discriminator and in-mask losses."""

    config: MaldNerfModelConfig

    def populate_modules(self) -> None:
        """nerfstudio 1.1.5's ``NerfactoModel.populate_modules`` (copied), changed to leave out the LPIPS metric,
        whose torchmetrics class downloads AlexNet at construction (our metrics load local weights only), then
        the discriminator at the datamanager's patch size and the adversarial losses."""
        Model.populate_modules(self)
        self._populate_nerfacto_modules()
        self.discriminator: Optional[PatchDiscriminator] = None
        if self.config.use_adversarial:
            self.discriminator = self.config.discriminator.setup(patch_size=patch_size(self.kwargs.get("metadata")))
        adversarial = self.config.adversarial_loss
        if not self.config.use_feature_matching:
            adversarial = AdversarialLossConfig(**{**vars(adversarial), "lambda_fm": 0.0})
        self.adversarial_loss: MaskedAdversarialLoss = adversarial.setup()
        self._evaluation_networks: Dict[str, Any] = {}
        """Networks built on first use and never saved in checkpoints (in-mask LPIPS, evaluation metrics): a
        plain dict, so torch does not register them as submodules."""

    def _populate_nerfacto_modules(self) -> None:
        """The body of nerfacto's ``populate_modules`` (nerfstudio 1.1.5) without its LPIPS metric."""
        scene_contraction = None if self.config.disable_scene_contraction else SceneContraction(order=float("inf"))
        appearance_embedding_dim = self.config.appearance_embed_dim if self.config.use_appearance_embedding else 0
        self.field = NerfactoField(
            self.scene_box.aabb,
            hidden_dim=self.config.hidden_dim,
            num_levels=self.config.num_levels,
            max_res=self.config.max_res,
            base_res=self.config.base_res,
            features_per_level=self.config.features_per_level,
            log2_hashmap_size=self.config.log2_hashmap_size,
            hidden_dim_color=self.config.hidden_dim_color,
            hidden_dim_transient=self.config.hidden_dim_transient,
            spatial_distortion=scene_contraction,
            num_images=self.num_train_data,
            use_pred_normals=self.config.predict_normals,
            use_average_appearance_embedding=self.config.use_average_appearance_embedding,
            appearance_embedding_dim=appearance_embedding_dim,
            average_init_density=self.config.average_init_density,
            implementation=self.config.implementation,
        )
        if self.field.embedding_appearance is not None:  # same parameters, same checkpoint keys as nerfacto's
            self.field.embedding_appearance = PatchAwareAppearanceEmbedding(
                self.num_train_data, appearance_embedding_dim
            )
        self.camera_optimizer: CameraOptimizer = self.config.camera_optimizer.setup(
            num_cameras=self.num_train_data, device="cpu"
        )
        self.density_fns = []
        num_prop_nets = self.config.num_proposal_iterations
        self.proposal_networks = torch.nn.ModuleList()
        if self.config.use_same_proposal_network:
            assert len(self.config.proposal_net_args_list) == 1, "Only one proposal network is allowed."
            network = HashMLPDensityField(
                self.scene_box.aabb,
                spatial_distortion=scene_contraction,
                **self.config.proposal_net_args_list[0],
                average_init_density=self.config.average_init_density,
                implementation=self.config.implementation,
            )
            self.proposal_networks.append(network)
            self.density_fns.extend([network.density_fn for _ in range(num_prop_nets)])
        else:
            for i in range(num_prop_nets):
                prop_net_args = self.config.proposal_net_args_list[min(i, len(self.config.proposal_net_args_list) - 1)]
                network = HashMLPDensityField(
                    self.scene_box.aabb,
                    spatial_distortion=scene_contraction,
                    **prop_net_args,
                    average_init_density=self.config.average_init_density,
                    implementation=self.config.implementation,
                )
                self.proposal_networks.append(network)
            self.density_fns.extend([network.density_fn for network in self.proposal_networks])

        def update_schedule(step):
            return np.clip(
                np.interp(step, [0, self.config.proposal_warmup], [0, self.config.proposal_update_every]),
                1,
                self.config.proposal_update_every,
            )

        initial_sampler = None  # None is for piecewise as default (see ProposalNetworkSampler)
        if self.config.proposal_initial_sampler == "uniform":
            initial_sampler = UniformSampler(single_jitter=self.config.use_single_jitter)
        self.proposal_sampler = ProposalNetworkSampler(
            num_nerf_samples_per_ray=self.config.num_nerf_samples_per_ray,
            num_proposal_samples_per_ray=self.config.num_proposal_samples_per_ray,
            num_proposal_network_iterations=self.config.num_proposal_iterations,
            single_jitter=self.config.use_single_jitter,
            update_sched=update_schedule,
            initial_sampler=initial_sampler,
        )
        self.collider = NearFarCollider(near_plane=self.config.near_plane, far_plane=self.config.far_plane)
        self.renderer_rgb = RGBRenderer(background_color=self.config.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="median")
        self.renderer_expected_depth = DepthRenderer(method="expected")
        self.renderer_normals = NormalsRenderer()
        self.normals_shader = NormalsShader()
        self.rgb_loss = MSELoss()
        from torchmetrics.functional import structural_similarity_index_measure
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = structural_similarity_index_measure
        self.step = 0

    def get_extra_state(self) -> Dict[str, Any]:
        """The proposal sampler's schedule counters, which nerfacto leaves out of checkpoints (a resumed run would
        otherwise update the proposal networks at other steps than the uninterrupted run)."""
        return proposal_sampler_counters(self.proposal_sampler)

    def set_extra_state(self, state: Any) -> None:
        if isinstance(state, dict) and "proposal_step" in state:
            restore_proposal_sampler_counters(self.proposal_sampler, state)

    def get_outputs(self, ray_bundle):
        """nerfacto's outputs; patch rays use the appearance code ``patch_appearance`` says (model/appearance.py)."""
        embedding = self.field.embedding_appearance
        flags = patch_rays(ray_bundle)
        if not isinstance(embedding, PatchAwareAppearanceEmbedding) or flags is None or not self.training:
            return super().get_outputs(ray_bundle)
        with embedding.for_rays(flags, self.config.patch_appearance):
            return super().get_outputs(ray_bundle)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = super().get_param_groups()
        if self.discriminator is not None:
            groups[DISCRIMINATOR_GROUP] = list(self.discriminator.parameters())
        return groups

    # ----------------------------------------------------------------- batch
    @staticmethod
    def _observed(outputs: Dict, batch: Batch) -> Tuple[int, Dict[str, Tensor]]:
        """The number of observed rays in ``outputs`` and nerfstudio's batch dict for them: a training step's
        :class:`TrainingBatch`, or nerfstudio's dict of an evaluation batch (every ray observed)."""
        if isinstance(batch, TrainingBatch):
            return batch.num_observed, batch.observed.nerfstudio_batch()
        return outputs["rgb"].shape[0], batch

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

    # ---------------------------------------------------------------- losses
    def get_metrics_dict(self, outputs, batch: Batch) -> Dict[str, Tensor]:
        num_recon, observed = self._observed(outputs, batch)
        return super().get_metrics_dict(self._recon_outputs(outputs, num_recon), observed)

    def get_reconstruction_loss_dict(self, outputs, batch: Batch, metrics_dict=None) -> Dict[str, Tensor]:
        """nerfacto's losses on the batch's observed rays (the first rays of ``outputs``)."""
        num_recon, observed = self._observed(outputs, batch)
        return super().get_loss_dict(self._recon_outputs(outputs, num_recon), observed, metrics_dict)

    def get_loss_dict(self, outputs, batch: Batch, metrics_dict=None) -> Dict[str, Tensor]:
        """nerfacto's losses on the observed rays plus the inpainting losses on the patch rays (one pass over
        both, as nerfstudio's ``get_train_loss_dict`` renders them)."""
        losses = self.get_reconstruction_loss_dict(outputs, batch, metrics_dict)
        if isinstance(batch, TrainingBatch):
            losses.update(self.get_inpainting_losses(outputs["rgb"][batch.num_observed:], batch).losses)
        return losses

    def get_inpainting_losses(self, patch_rgb: Tensor, batch: TrainingBatch) -> InpaintingLosses:
        """The losses inside the masks (adversarial with feature matching, ablation terms) on ``patch_rgb``, the
        renders of the batch's patch rays (float [P * S * S, 3] in patch order), and the patches the discriminator
        step needs; nothing without patches or outside training."""
        if batch.patches is None or not self.training:
            return InpaintingLosses(losses={}, metrics={})
        size = batch.patches.size
        patches = PatchBatch(
            real=rays_to_patches(batch.patches.real.to(self.device).reshape(-1, 3), size),
            fake=rays_to_patches(patch_rgb, size),
            mask=rays_to_patches(batch.patches.mask.to(self.device).reshape(-1, 1), size),
        )
        losses: Dict[str, Tensor] = {}
        metrics: Dict[str, Tensor] = {}
        for_discriminator = None
        if self.discriminator is not None:
            out = self.adversarial_loss.generator_loss(self.discriminator, patches.real, patches.fake, patches.mask)
            losses["adversarial_loss"] = out.loss  # lambda_adv * adversarial + lambda_fm * feature matching
            metrics.update(out.metrics())
            for_discriminator = patches.detached()
        if self.config.use_mask_l1:
            # Normalised as if the masked pixels were extra rays of the reconstruction batch, so that a masked
            # pixel weighs what an observed one does (a mean over the mask alone would weigh each far more).
            inside = patches.mask.float()
            l1 = ((patches.fake - patches.real).abs() * inside).sum() / (3.0 * (batch.num_observed + inside.sum()))
            losses["mask_l1_loss"] = self.config.mask_l1_mult * l1
        if self.config.use_mask_lpips:
            lpips = self.mask_lpips_net()
            losses["mask_lpips_loss"] = self.config.mask_lpips_mult * lpips(
                mask_patches(patches.fake, patches.mask), mask_patches(patches.real, patches.mask)
            ).mean()
        return InpaintingLosses(losses=losses, metrics=metrics, patches=for_discriminator)

    def mask_lpips_net(self) -> nn.Module:
        """The LPIPS network of the in-mask LPIPS loss (raises MaldSetupError when its weights are missing)."""
        if "mask_lpips" not in self._evaluation_networks:
            from mald_nerfstudio.metrics.networks import build_lpips

            metrics = self.config.metrics  # the same network and weight file as the LPIPS metric
            net = build_lpips(metrics.lpips_net, metrics.lpips_weights_path).to(self.device)
            net.requires_grad_(False)
            self._evaluation_networks["mask_lpips"] = net
        return self._evaluation_networks["mask_lpips"]

    def get_discriminator_losses(self, patches: PatchBatch, step: int) -> Optional[DiscriminatorLossOutput]:
        """The discriminator's loss on an iteration's patches (renders detached); None without a discriminator."""
        if self.discriminator is None:
            return None
        return self.adversarial_loss.discriminator_loss(self.discriminator, patches.real, patches.fake,
                                                        patches.mask, step)

    # ------------------------------------------------------------ evaluation
    @property
    def metrics(self) -> InpaintingMetrics:
        """Evaluation metrics, built on first use (networks come from local weight files only)."""
        if "metrics" not in self._evaluation_networks:
            self._evaluation_networks["metrics"] = self.config.metrics.setup(device=self.device)
        return self._evaluation_networks["metrics"]

    def get_image_metrics_and_images(self, outputs, batch):
        gt = self.renderer_rgb.blend_background(batch["image"].to(self.device))
        pred = outputs["rgb"]
        mask = batch.get("inpaint_mask")
        metrics = self.metrics.per_image(pred, gt, mask if mask is not None and bool(mask.any()) else None)
        images = {"img": torch.cat([gt, pred], dim=1)}
        if mask is not None:
            images["inpaint_mask"] = mask.to(self.device).float().expand_as(pred)
            magenta = torch.tensor([1.0, 0.0, 1.0], device=self.device)
            overlay = torch.where(mask.to(self.device), 0.5 * pred + 0.5 * magenta, pred)
            images["mask_overlay"] = overlay
        return metrics, images
