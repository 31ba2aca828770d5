"""Losses of masked adversarial training (MALD-NeRF component 1).

Real patches are cut from the current inpainted training images, fake patches are rendered by the NeRF at
the same pixels. Both are masked with :func:`mask_patches` (pixels outside the inpainting mask set to 0)
before the discriminator D sees them, so D cannot use the seam or the latent diffusion model's texture shift
at the mask border.

* Generator (NeRF) loss, :meth:`MaskedAdversarialLoss.generator_loss`:
  ``lambda_adv * softplus(-D(fake)).mean() + lambda_fm * L_fm``, with ``L_fm`` the L1 distance between D's
  intermediate features on the real (detached) and fake patches. D is frozen meanwhile (:func:`frozen`), so
  the gradient reaches the fake patches (and through them the NeRF) but never D's parameters.
* Discriminator loss, :meth:`MaskedAdversarialLoss.discriminator_loss`:
  ``softplus(D(fake.detach())).mean() + softplus(-D(real)).mean() + R1``; the fake patches are detached, so
  this loss never reaches the NeRF. ``R1 = r1_gamma / 2 * E[||grad_x D(real)||^2]`` (StyleGAN2), applied
  lazily every ``r1_interval`` steps and then multiplied by ``r1_interval`` so its average strength does not
  depend on the interval.

Precision: the penalty is computed in fp32 with autocast disabled, even when the caller runs under
``torch.autocast``: fp16 input gradients of a small network underflow easily and their squares overflow.
Because the penalty's ``autograd.grad`` runs on the unscaled fp32 logits, it is independent of any
``GradScaler``: the caller scales the total D loss (``scaler.scale(out.loss).backward()``) as usual and the
double backward runs on the scaled loss; ``scaler.step`` then unscales the gradients of D.

Logged values (:meth:`GeneratorLossOutput.metrics`, :meth:`DiscriminatorLossOutput.metrics`) are detached
fp32 scalars; mean D outputs are raw logits (positive = judged real), not probabilities.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio.configs.base_config import InstantiateConfig

from mald_nerfstudio.errors import MaldInputError


def rays_to_patches(values: Float[Tensor, "N C"], patch_size: int) -> Float[Tensor, "B C P P"]:
    """Reshape per-ray values from nerfstudio's ``PatchPixelSampler`` into channels-first patches.

    The sampler emits whole patches one after another, each in row-major order, so ``N`` rays form
    ``N / patch_size**2`` patches.
    """
    n, c = values.shape
    if n % (patch_size * patch_size):
        raise ValueError(f"{n} rays do not form whole {patch_size}x{patch_size} patches")
    return values.reshape(-1, patch_size, patch_size, c).permute(0, 3, 1, 2)


def mask_patches(patches: Float[Tensor, "B C P P"], masks: Tensor) -> Float[Tensor, "B C P P"]:
    """Zero every pixel outside the inpainting mask.

    Args:
        patches: channels-first patches.
        masks: the INPAINTING mask (True / 1 = pixel to inpaint, which D may see), ``[B, P, P]`` or
            ``[B, 1, P, P]``, bool or float (a float mask counts as inside where it exceeds 0.5). Note that
            nerfstudio's dataset ``mask`` means the opposite (True = observed pixel).

    Returns:
        The patches inside the mask, exact zeros outside. Uses ``torch.where``, so no gradient reaches pixels
        outside the mask and non-finite values there cannot leak in.
    """
    if masks.ndim == 3:
        masks = masks[:, None]
    expected = (patches.shape[0], 1, *patches.shape[2:])
    if masks.ndim != 4 or tuple(masks.shape) != expected:
        raise ValueError(
            f"masks must be [B, P, P] or [B, 1, P, P] matching patches {tuple(patches.shape)}, "
            f"got {tuple(masks.shape)}"
        )
    inside = masks if masks.dtype == torch.bool else masks > 0.5
    return torch.where(inside, patches, torch.zeros((), dtype=patches.dtype, device=patches.device))


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block, none of ``module``'s parameters require gradient; their flags are restored after.

    Autograd records whether a parameter requires grad when an operation runs, so a loss computed inside
    the block sends no gradient to the module even if ``backward()`` is called after the block ends, while
    gradients still flow through the module to its inputs.
    """
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss ``softplus(-D(fake)).mean()``, in fp32."""
    return F.softplus(-fake_logits.float()).mean()


def discriminator_adversarial_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Logistic discriminator loss ``softplus(D(fake)).mean() + softplus(-D(real)).mean()``, in fp32.

    The fake logits must come from detached fake patches (:meth:`MaskedAdversarialLoss.discriminator_loss`
    takes care of it).
    """
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def feature_matching_loss(real_features: Sequence[Tensor], fake_features: Sequence[Tensor]) -> Tensor:
    """Mean over layers of the mean absolute difference between D's features on fake and real patches.

    Real features are detached here: the loss moves only the fake patches. Computed in fp32.
    """
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError(f"need the same non-zero number of layers, got {len(real_features)} and {len(fake_features)}")
    per_layer = [F.l1_loss(f.float(), r.detach().float()) for r, f in zip(real_features, fake_features)]
    return torch.stack(per_layer).mean()


def r1_penalty(
    discriminator: nn.Module,
    real_patches: Float[Tensor, "B 3 P P"],
    gamma: float,
    interval: int = 1,
    masks: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """StyleGAN2's R1 penalty ``interval * gamma / 2 * E_batch[||grad_x D(x)||^2]`` on real patches.

    Runs D in fp32 with autocast disabled (D's parameters must be fp32) and keeps the graph
    (``create_graph=True``) so the penalty can be back-propagated into D. D must judge each patch on its
    own (no batch statistics), since the input gradient is taken of the summed logits.

    Args:
        discriminator: D.
        real_patches: unmasked (when ``masks`` is given) or already masked real patches; detached here.
        gamma: R1 weight (the paper's lambda_gp).
        interval: lazy regularisation interval; the penalty is multiplied by it.
        masks: inpainting masks; when given, D sees ``mask_patches(real, masks)`` and only the in-mask
            directions (the only ones real data varies in) are penalised.

    Returns:
        ``(penalty, real_logits)``: the fp32 scalar penalty and D's fp32 logits on the (masked) real patches,
        which the caller may reuse for the adversarial term.
    """
    x = real_patches.detach().float().requires_grad_(True)
    with torch.autocast(device_type=x.device.type, enabled=False):
        d_in = x if masks is None else mask_patches(x, masks)
        logits = discriminator(d_in).float()
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True, allow_unused=True)
        if grad is None:  # D ignores its input entirely: zero gradient.
            grad = torch.zeros_like(x)
        penalty = grad.square().flatten(1).sum(1).mean() * (0.5 * gamma * interval)
    return penalty, logits


@dataclass(frozen=True)
class PatchBatch:
    """One iteration's mask patches, channels first: the NeRF's pass makes them, the discriminator's step judges
    them (:meth:`MaskedAdversarialLoss.generator_loss`, then :meth:`MaskedAdversarialLoss.discriminator_loss`)."""

    real: Float[Tensor, "B 3 P P"]
    """Patches of the current inpainted training images, unmasked."""
    fake: Float[Tensor, "B 3 P P"]
    """The NeRF's renders of the same pixels, unmasked (carrying the NeRF's graph until :meth:`detached`)."""
    mask: Tensor
    """Inpainting masks of the patches, bool ``[B, 1, P, P]`` (True = inside)."""

    def detached(self) -> "PatchBatch":
        """The same patches with the renders cut from the NeRF's graph (what the discriminator step takes)."""
        return PatchBatch(real=self.real.detach(), fake=self.fake.detach(), mask=self.mask)


@dataclass
class GeneratorLossOutput:
    """What :meth:`MaskedAdversarialLoss.generator_loss` returns."""

    loss: Tensor
    """Weighted total ``lambda_adv * adversarial + lambda_fm * feature_matching``; back-propagate this."""
    adversarial: Tensor
    """Unweighted ``softplus(-D(fake)).mean()``."""
    feature_matching: Tensor
    """Unweighted feature-matching L1 (0 when lambda_fm is 0: then it is not computed)."""
    fake_logit: Tensor
    """Mean D logit on the fake patches (detached)."""

    def metrics(self, prefix: str = "adv_") -> Dict[str, Tensor]:
        """Detached scalars for logging."""
        return {
            f"{prefix}g_loss": self.loss.detach(),
            f"{prefix}g_adversarial": self.adversarial.detach(),
            f"{prefix}g_feature_matching": self.feature_matching.detach(),
            f"{prefix}g_fake_logit": self.fake_logit,
        }


@dataclass
class DiscriminatorLossOutput:
    """What :meth:`MaskedAdversarialLoss.discriminator_loss` returns."""

    loss: Tensor
    """Total D loss ``adversarial + r1``; back-propagate this (through a GradScaler if used)."""
    adversarial: Tensor
    """``softplus(D(fake)).mean() + softplus(-D(real)).mean()``."""
    r1: Tensor
    """The R1 term as added to the loss (already times ``r1_interval``); 0 on steps without it."""
    r1_applied: bool
    """Whether this step included the R1 term."""
    real_logit: Tensor
    """Mean D logit on the real patches (detached)."""
    fake_logit: Tensor
    """Mean D logit on the fake patches (detached)."""

    def metrics(self, prefix: str = "adv_") -> Dict[str, Tensor]:
        """Detached scalars for logging. The R1 value is logged only on the steps that compute it."""
        out = {
            f"{prefix}d_loss": self.loss.detach(),
            f"{prefix}d_adversarial": self.adversarial.detach(),
            f"{prefix}d_real_logit": self.real_logit,
            f"{prefix}d_fake_logit": self.fake_logit,
        }
        if self.r1_applied:
            out[f"{prefix}d_r1"] = self.r1.detach()
        return out


@dataclass
class AdversarialLossConfig(InstantiateConfig):
    """Weights of masked adversarial training (the paper gives none; see docs/decisions.md)."""

    _target: Type = field(default_factory=lambda: MaskedAdversarialLoss)
    """Target class to instantiate."""
    lambda_adv: float = 0.002
    """Weight of the NeRF's non-saturating adversarial loss in the mask (docs/decisions.md: its scale)."""
    lambda_fm: float = 0.02
    """Weight of the feature-matching L1 between D's features on real and fake patches (10x lambda_adv)."""
    r1_gamma: float = 1.0
    """R1 gradient-penalty weight gamma on real patches (the paper's lambda_gp): gamma/2 * ||grad D||^2."""
    r1_interval: int = 16
    """Lazy R1 (StyleGAN2): applied every r1_interval-th D step, times r1_interval (1: every step)."""


class MaskedAdversarialLoss:
    """Generator and discriminator losses of masked adversarial training. Holds no parameters or state.

    D is any module mapping ``[B, 3, P, P]`` patches to ``[B, 1]`` logits that also accepts
    ``return_features=True`` (see :class:`~mald_nerfstudio.model.discriminator.PatchDiscriminator`).
    """

    config: AdversarialLossConfig

    def __init__(self, config: AdversarialLossConfig, **kwargs) -> None:
        if config.r1_interval < 1:
            raise MaldInputError(f"r1_interval must be at least 1, got {config.r1_interval}")
        for name in ("lambda_adv", "lambda_fm", "r1_gamma"):
            if getattr(config, name) < 0:
                raise MaldInputError(f"{name} must not be negative, got {getattr(config, name)}")
        self.config = config

    def applies_r1(self, step: int) -> bool:
        """Whether the discriminator step ``step`` includes the lazy R1 penalty."""
        return self.config.r1_gamma > 0 and step % self.config.r1_interval == 0

    def generator_loss(
        self,
        discriminator: nn.Module,
        real_patches: Float[Tensor, "B 3 P P"],
        fake_patches: Float[Tensor, "B 3 P P"],
        masks: Tensor,
    ) -> GeneratorLossOutput:
        """The NeRF's loss inside the mask. D is frozen while it runs: no gradient ever reaches D.

        Args:
            discriminator: D.
            real_patches: patches of the current inpainted training images, ``[0, 1]``, unmasked.
            fake_patches: the NeRF's renders of the same pixels, unmasked, carrying the NeRF's graph.
            masks: inpainting masks of the patches (True = inside), ``[B, P, P]`` or ``[B, 1, P, P]``.
        """
        fake = mask_patches(fake_patches, masks)
        with frozen(discriminator):
            if self.config.lambda_fm > 0:
                fake_logits, fake_features = discriminator(fake, return_features=True)
                with torch.no_grad():
                    _, real_features = discriminator(mask_patches(real_patches, masks), return_features=True)
                fm = feature_matching_loss(real_features, fake_features)
            else:
                fake_logits = discriminator(fake)
                fm = torch.zeros((), device=fake.device)
            adv = generator_adversarial_loss(fake_logits)
        loss = self.config.lambda_adv * adv + self.config.lambda_fm * fm
        return GeneratorLossOutput(
            loss=loss, adversarial=adv, feature_matching=fm, fake_logit=fake_logits.detach().float().mean()
        )

    def discriminator_loss(
        self,
        discriminator: nn.Module,
        real_patches: Float[Tensor, "B 3 P P"],
        fake_patches: Float[Tensor, "B 3 P P"],
        masks: Tensor,
        step: int,
    ) -> DiscriminatorLossOutput:
        """D's loss. The fake patches are detached: no gradient ever reaches the NeRF.

        Args:
            discriminator: D.
            real_patches: patches of the current inpainted training images, unmasked.
            fake_patches: the NeRF's renders of the same pixels, unmasked (may still carry the NeRF's graph).
            masks: inpainting masks of the patches (True = inside).
            step: D's step counter; R1 is added when ``applies_r1(step)``. On those steps the real logits
                come from the fp32 R1 pass (one D forward saved).
        """
        fake = mask_patches(fake_patches.detach(), masks)
        if self.applies_r1(step):
            r1, real_logits = r1_penalty(
                discriminator, real_patches, self.config.r1_gamma, self.config.r1_interval, masks=masks
            )
            applied = True
        else:
            real_logits = discriminator(mask_patches(real_patches.detach(), masks))
            r1 = torch.zeros((), device=fake.device)
            applied = False
        fake_logits = discriminator(fake)
        adv = discriminator_adversarial_loss(real_logits, fake_logits)
        return DiscriminatorLossOutput(
            loss=adv + r1,
            adversarial=adv,
            r1=r1,
            r1_applied=applied,
            real_logit=real_logits.detach().float().mean(),
            fake_logit=fake_logits.detach().float().mean(),
        )


__all__: List[str] = [
    "AdversarialLossConfig",
    "DiscriminatorLossOutput",
    "GeneratorLossOutput",
    "MaskedAdversarialLoss",
    "PatchBatch",
    "discriminator_adversarial_loss",
    "feature_matching_loss",
    "frozen",
    "generator_adversarial_loss",
    "mask_patches",
    "r1_penalty",
    "rays_to_patches",
]
