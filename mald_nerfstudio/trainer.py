"""The mald-nerf trainer: nerfstudio's Trainer with MALD-NeRF's three-step iteration.

Each iteration:

1. reconstruction + 2. inpainting: one forward pass renders the observed rays and the mask patches; the
   NeRF's loss (pixel, interlevel and distortion losses on observed rays; adversarial and feature-matching
   losses on the patches, with the discriminator frozen) updates every parameter group except the
   discriminator's;
3. discriminator update: the discriminator's loss on the detached renders and the inpainted patches (plus the
   R1 penalty) updates the discriminator's parameter group only.

Both steps share nerfstudio's gradient scaler (one ``update()`` per iteration, as PyTorch's AMP recipe for
several optimizers prescribes), so mixed precision works on GPU. Before the first iteration the pipeline gets
the chance to customise the diffusion model and inpaint the training views (skipped when a checkpoint already
holds them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

import torch

from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.trainer import TRAIN_INTERATION_OUTPUT, Trainer, TrainerConfig
from nerfstudio.utils import profiler

from mald_nerfstudio.model.mald_model import DISCRIMINATOR_GROUP


@dataclass
class AdamBetasOptimizerConfig(AdamOptimizerConfig):
    """Adam with configurable betas (GAN discriminators are usually trained with beta1 = 0)."""

    betas: Tuple[float, float] = (0.0, 0.99)
    """Adam's (beta1, beta2)."""


@dataclass
class MaldTrainerConfig(TrainerConfig):
    """nerfstudio TrainerConfig whose trainer runs MALD-NeRF's generator / discriminator iteration."""

    _target: Type = field(default_factory=lambda: MaldTrainer)
    """Target class to instantiate."""


class MaldTrainer(Trainer):
    """Trainer with a separate discriminator step and a pre-training preparation hook."""

    def train(self) -> None:
        prepare = getattr(self.pipeline, "prepare_training", None)
        if prepare is not None:
            prepare(self)
        super().train()

    def _autocast_device(self) -> str:
        device = self.device.split(":")[0]
        return "cpu" if device == "mps" else device

    @profiler.time_function
    def train_iteration(self, step: int) -> TRAIN_INTERATION_OUTPUT:
        groups = list(self.optimizers.parameters.keys())
        nerf_groups = [g for g in groups if g != DISCRIMINATOR_GROUP]
        accumulate = self.gradient_accumulation_steps
        self.optimizers.zero_grad_some([g for g in nerf_groups if step % accumulate[g] == 0])

        with torch.autocast(device_type=self._autocast_device(), enabled=self.mixed_precision):
            _, loss_dict, metrics_dict = self.pipeline.get_train_loss_dict(step=step)
            loss = functools.reduce(torch.add, loss_dict.values())
        self.grad_scaler.scale(loss).backward()  # type: ignore[union-attr]
        self.optimizers.optimizer_scaler_step_some(
            self.grad_scaler, [g for g in nerf_groups if step % accumulate[g] == accumulate[g] - 1]
        )

        if DISCRIMINATOR_GROUP in self.optimizers.optimizers:
            metrics_dict.update(self._discriminator_step(step))

        scale = self.grad_scaler.get_scale()
        self.grad_scaler.update()
        # A decreased scale means the step was skipped (inf/nan gradients): do not advance the schedulers.
        if scale <= self.grad_scaler.get_scale():
            self.optimizers.scheduler_step_all(step)
        return loss, loss_dict, metrics_dict  # type: ignore[return-value]

    def _discriminator_step(self, step: int) -> Dict[str, torch.Tensor]:
        """Update the discriminator on the patches of this iteration; returns its losses for logging."""
        self.optimizers.zero_grad_some([DISCRIMINATOR_GROUP])
        with torch.autocast(device_type=self._autocast_device(), enabled=self.mixed_precision):
            d_loss_dict = self.pipeline.get_discriminator_loss_dict(step)
        if not d_loss_dict or "discriminator_loss" not in d_loss_dict:
            return {}
        self.grad_scaler.scale(d_loss_dict["discriminator_loss"]).backward()  # type: ignore[union-attr]
        self.optimizers.optimizer_scaler_step_some(self.grad_scaler, [DISCRIMINATOR_GROUP])
        return {key: value.detach() for key, value in d_loss_dict.items()}
