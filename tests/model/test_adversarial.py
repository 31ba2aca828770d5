"""Tests of the patch discriminator and the masked adversarial losses (MALD-NeRF component 1).

Everything runs on CPU with tiny discriminators; the "generator" is a learnable patch tensor standing in for
the NeRF's rendered patches.
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import pytest
import torch
from torch import Tensor, nn

from nerfstudio.data.pixel_samplers import PatchPixelSamplerConfig

from mald_nerfstudio.errors import MaldInputError
from mald_nerfstudio.model.adversarial_loss import (
    AdversarialLossConfig,
    MaskedAdversarialLoss,
    feature_matching_loss,
    mask_patches,
    r1_penalty,
    rays_to_patches,
)
from mald_nerfstudio.model.discriminator import DiscriminatorConfig, PatchDiscriminator

P = 16
B = 4


def tiny_discriminator(patch_size: int = P, seed: int = 0) -> PatchDiscriminator:
    """The CPU-sized discriminator used throughout."""
    torch.manual_seed(seed)
    return DiscriminatorConfig(patch_size=patch_size, base_channels=8, max_channels=32).setup()


def random_masks(batch: int, size: int, generator: torch.Generator) -> Tensor:
    """Random rectangles covering roughly a quarter to the whole of each patch, as bool [B, P, P]."""
    masks = torch.zeros(batch, size, size, dtype=torch.bool)
    for i in range(batch):
        y0, x0 = torch.randint(0, size // 2, (2,), generator=generator).tolist()
        h, w = torch.randint(size // 2, size - max(y0, x0) + 1, (2,), generator=generator).tolist()
        masks[i, y0 : y0 + h, x0 : x0 + w] = True
    return masks


def striped_real_patches(batch: int, size: int, generator: torch.Generator) -> Tensor:
    """Toy "real" data: vertical stripes of random phase plus a little noise, in [0, 1]."""
    xs = torch.arange(size, dtype=torch.float32)
    phase = torch.rand(batch, 1, 1, 1, generator=generator) * 2 * math.pi
    stripes = 0.5 + 0.4 * torch.sin(xs.view(1, 1, 1, size) * (2 * math.pi / 4) + phase)
    noise = 0.05 * torch.randn(batch, 3, size, size, generator=generator)
    return (stripes.expand(batch, 3, size, size) + noise).clamp(0, 1)


def params_snapshot(module: nn.Module) -> Dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_params(module: nn.Module, snapshot: Dict[str, Tensor]) -> bool:
    return all(torch.equal(v, snapshot[k]) for k, v in module.state_dict().items())


def accuracy(d: nn.Module, real: Tensor, fake: Tensor, masks: Tensor) -> float:
    with torch.no_grad():
        real_ok = (d(mask_patches(real, masks)) > 0).float()
        fake_ok = (d(mask_patches(fake, masks)) < 0).float()
    return torch.cat([real_ok, fake_ok]).mean().item()


def train_discriminator(
    d: nn.Module, fake: Tensor, loss: MaskedAdversarialLoss, steps: int, seed: int
) -> Tuple[float, float]:
    """Train D against fixed fake patches on fresh real batches; returns accuracy (before, after) on held-out data."""
    g = torch.Generator().manual_seed(seed)
    eval_real, eval_masks = striped_real_patches(B, P, g), random_masks(B, P, g)
    before = accuracy(d, eval_real, fake, eval_masks)
    opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.99))
    for step in range(steps):
        real, masks = striped_real_patches(B, P, g), random_masks(B, P, g)
        opt.zero_grad()
        loss.discriminator_loss(d, real, fake, masks, step).loss.backward()
        opt.step()
    return before, accuracy(d, eval_real, fake, eval_masks)


# ----------------------------------------------------------------------------------------------- discriminator


@pytest.mark.parametrize("patch_size", [16, 32, 64])
def test_discriminator_gives_one_logit_per_patch_and_features_per_block(patch_size: int) -> None:
    d = tiny_discriminator(patch_size)
    x = torch.rand(3, 3, patch_size, patch_size)
    logits, features = d(x, return_features=True)
    assert logits.shape == (3, 1)
    assert torch.equal(d(x), logits)
    assert d.num_blocks == int(math.log2(patch_size)) - 2
    assert len(features) == d.num_blocks + 1
    assert [f.shape[-1] for f in features] == [patch_size // 2 ** (i + 1) for i in range(d.num_blocks)] + [4]


def test_discriminator_logit_depends_only_on_its_own_patch() -> None:
    d = tiny_discriminator()
    x = torch.rand(B, 3, P, P)
    alone = torch.cat([d(x[i : i + 1]) for i in range(B)])
    torch.testing.assert_close(d(x), alone)


def test_discriminator_rejects_bad_patch_size_and_bad_input_shape() -> None:
    with pytest.raises(MaldInputError):
        DiscriminatorConfig(patch_size=48).setup()
    with pytest.raises(MaldInputError):
        DiscriminatorConfig(base_channels=64, max_channels=32).setup()
    with pytest.raises(ValueError):
        tiny_discriminator(16)(torch.rand(2, 3, 32, 32))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_discriminator_runs_under_autocast(dtype: torch.dtype) -> None:
    d = tiny_discriminator()
    x = torch.rand(B, 3, P, P)
    with torch.autocast("cpu", dtype=dtype):
        logits, features = d(x, return_features=True)
    assert logits.dtype == dtype and features[0].dtype == dtype
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits.float(), d(x), atol=0.05, rtol=0.05)


# ----------------------------------------------------------------------------------------------- masking


def test_rays_to_patches_matches_nerfstudio_patch_sampler_order() -> None:
    torch.manual_seed(0)
    images = torch.rand(3, 20, 24, 3)
    sampler = PatchPixelSamplerConfig(num_rays_per_batch=2 * 8 * 8, patch_size=8).setup()
    batch = sampler.sample({"image": images, "image_idx": torch.arange(3)})
    patches = rays_to_patches(batch["image"], 8)
    corners = batch["indices"].view(2, 64, 3)[:, 0]
    assert patches.shape == (2, 3, 8, 8)
    for patch, (c, y, x) in zip(patches, corners.tolist()):
        torch.testing.assert_close(patch, images[c, y : y + 8, x : x + 8].permute(2, 0, 1))


def test_mask_patches_zeroes_exactly_the_pixels_outside_the_mask() -> None:
    g = torch.Generator().manual_seed(0)
    patches = torch.rand(B, 3, P, P, generator=g)
    masks = random_masks(B, P, g)
    patches_nan = torch.where(masks[:, None], patches, torch.nan)
    for m in (masks, masks[:, None].float()):
        out = mask_patches(patches_nan, m)
        assert torch.equal(out[~masks[:, None].expand_as(out)], torch.zeros(int((~masks).sum()) * 3))
        assert torch.equal(out[masks[:, None].expand_as(out)], patches[masks[:, None].expand_as(out)])


def test_pixels_outside_mask_change_no_loss() -> None:
    g = torch.Generator().manual_seed(1)
    d = tiny_discriminator()
    loss = AdversarialLossConfig(r1_interval=1).setup()
    real, fake = torch.rand(B, 3, P, P, generator=g), torch.rand(B, 3, P, P, generator=g)
    masks = random_masks(B, P, g)
    inside = masks[:, None].expand_as(real)

    def all_losses(real: Tensor, fake: Tensor) -> Tensor:
        gen = loss.generator_loss(d, real, fake, masks)
        dis = loss.discriminator_loss(d, real, fake, masks, step=0)
        return torch.stack([gen.adversarial, gen.feature_matching, dis.adversarial, dis.r1]).detach()

    reference = all_losses(real, fake)
    other_outside = all_losses(
        torch.where(inside, real, torch.rand(real.shape, generator=g)),
        torch.where(inside, fake, torch.rand(fake.shape, generator=g)),
    )
    assert torch.equal(reference, other_outside)
    # Control: the same change inside the mask does change every loss.
    other_inside = all_losses(
        torch.where(inside, torch.rand(real.shape, generator=g), real),
        torch.where(inside, torch.rand(fake.shape, generator=g), fake),
    )
    assert (reference != other_inside).all()


def test_gradients_reach_the_fake_patch_only_inside_the_mask() -> None:
    g = torch.Generator().manual_seed(2)
    d = tiny_discriminator()
    real = torch.rand(B, 3, P, P, generator=g)
    fake = torch.rand(B, 3, P, P, generator=g).requires_grad_(True)
    masks = random_masks(B, P, g)
    AdversarialLossConfig().setup().generator_loss(d, real, fake, masks).loss.backward()
    inside = masks[:, None].expand_as(fake)
    assert torch.equal(fake.grad[~inside], torch.zeros(int((~inside).sum())))
    assert (fake.grad[inside] != 0).float().mean() > 0.9


# ----------------------------------------------------------------------------------------------- separation of G and D


def test_generator_step_leaves_discriminator_parameters_unchanged() -> None:
    g = torch.Generator().manual_seed(3)
    d = tiny_discriminator()
    generator = nn.Parameter(torch.randn(B, 3, P, P, generator=g))
    real, masks = torch.rand(B, 3, P, P, generator=g), random_masks(B, P, g)
    before = params_snapshot(d)
    # One optimizer over both, as a trainer that steps every optimizer would do.
    opt = torch.optim.Adam([generator, *d.parameters()], lr=1e-2)
    out = AdversarialLossConfig().setup().generator_loss(d, real, torch.sigmoid(generator), masks)
    out.loss.backward()
    opt.step()
    assert all(p.grad is None for p in d.parameters())
    assert all(p.requires_grad for p in d.parameters())  # frozen() restored the flags
    assert same_params(d, before)
    assert generator.grad is not None and generator.grad.abs().sum() > 0


def test_discriminator_step_leaves_generator_parameters_unchanged() -> None:
    g = torch.Generator().manual_seed(4)
    d = tiny_discriminator()
    generator = nn.Parameter(torch.randn(B, 3, P, P, generator=g))
    generator_before = generator.detach().clone()
    d_before = params_snapshot(d)
    real, masks = torch.rand(B, 3, P, P, generator=g), random_masks(B, P, g)
    opt = torch.optim.Adam([generator, *d.parameters()], lr=1e-2)
    out = AdversarialLossConfig(r1_interval=1).setup().discriminator_loss(
        d, real, torch.sigmoid(generator), masks, step=0
    )
    assert out.r1_applied
    out.loss.backward()
    opt.step()
    assert generator.grad is None
    assert torch.equal(generator.detach(), generator_before)
    assert not same_params(d, d_before)


# ----------------------------------------------------------------------------------------------- toy GAN dynamics


def test_discriminator_accuracy_rises_when_generator_is_frozen() -> None:
    d = tiny_discriminator(seed=5)
    fake = torch.full((B, 3, P, P), 0.5) + 0.05 * torch.randn(B, 3, P, P, generator=torch.Generator().manual_seed(5))
    loss = AdversarialLossConfig(r1_gamma=0.1, r1_interval=4).setup()
    before, after = train_discriminator(d, fake.clamp(0, 1), loss, steps=30, seed=5)
    assert after >= 0.95
    assert after > before + 0.2


def test_generator_adversarial_loss_falls_when_discriminator_is_frozen() -> None:
    d = tiny_discriminator(seed=6)
    g = torch.Generator().manual_seed(6)
    generator = nn.Parameter(0.1 * torch.randn(B, 3, P, P, generator=g))
    loss = AdversarialLossConfig(lambda_adv=1.0, lambda_fm=0.0, r1_gamma=0.1, r1_interval=4).setup()
    train_discriminator(d, torch.sigmoid(generator).detach(), loss, steps=30, seed=6)
    d.requires_grad_(False)
    real, masks = striped_real_patches(B, P, g), random_masks(B, P, g)
    opt = torch.optim.Adam([generator], lr=0.05)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        out = loss.generator_loss(d, real, torch.sigmoid(generator), masks)
        out.loss.backward()
        opt.step()
        losses.append(out.adversarial.item())
    assert losses[0] > math.log(2.0)  # D had learned to reject the fakes
    assert losses[-1] < 0.5 * losses[0]


def test_feature_matching_loss_vanishes_only_when_fake_equals_real_and_leaves_real_untouched() -> None:
    g = torch.Generator().manual_seed(7)
    d = tiny_discriminator()
    real = torch.rand(B, 3, P, P, generator=g).requires_grad_(True)
    fake = torch.rand(B, 3, P, P, generator=g).requires_grad_(True)
    _, real_features = d(real, return_features=True)
    _, fake_features = d(fake, return_features=True)
    _, same_features = d(real.detach().clone(), return_features=True)
    assert feature_matching_loss(real_features, same_features).item() == 0.0
    fm = feature_matching_loss(real_features, fake_features)
    assert fm.item() > 0
    fm.backward()
    assert real.grad is None
    assert fake.grad is not None and fake.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------- R1


class InputIgnoringDiscriminator(nn.Module):
    """Returns a learnable constant logit whatever the patch."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.3]))

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
        return self.bias.expand(x.shape[0], 1)


class LinearDiscriminator(nn.Module):
    """``D(x) = <w, x>``: its input gradient is ``w``, so R1 is known in closed form."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
        return (x * self.weight).flatten(1).sum(1, keepdim=True)


def test_r1_is_zero_for_a_discriminator_that_ignores_its_input_and_positive_otherwise() -> None:
    real = torch.rand(B, 3, P, P)
    zero, _ = r1_penalty(InputIgnoringDiscriminator(), real, gamma=10.0)
    assert zero.item() == 0.0
    positive, _ = r1_penalty(tiny_discriminator(), real, gamma=10.0)
    assert positive.item() > 0


def test_r1_matches_closed_form_inside_the_mask_and_scales_with_the_lazy_interval() -> None:
    g = torch.Generator().manual_seed(8)
    weight = torch.randn(1, 3, P, P, generator=g)
    d = LinearDiscriminator(weight)
    real, masks = torch.rand(B, 3, P, P, generator=g), random_masks(B, P, g)
    penalty, _ = r1_penalty(d, real, gamma=2.0, masks=masks)
    # gradient is w inside the mask and 0 outside: R1 = gamma / 2 * mean_b ||w * m_b||^2
    expected = (2.0 / 2) * ((weight * masks[:, None]) ** 2).flatten(1).sum(1).mean()
    torch.testing.assert_close(penalty, expected)
    lazy, _ = r1_penalty(d, real, gamma=2.0, interval=4, masks=masks)
    torch.testing.assert_close(lazy, 4 * penalty)


def test_discriminator_loss_applies_r1_every_interval_steps_scaled_by_the_interval() -> None:
    g = torch.Generator().manual_seed(9)
    d = tiny_discriminator()
    loss = AdversarialLossConfig(r1_gamma=3.0, r1_interval=4).setup()
    real, fake, masks = torch.rand(B, 3, P, P, generator=g), torch.rand(B, 3, P, P, generator=g), random_masks(B, P, g)
    applied = []
    for step in range(8):
        out = loss.discriminator_loss(d, real, fake, masks, step)
        applied.append(out.r1_applied)
        torch.testing.assert_close(out.loss, out.adversarial + out.r1)
        if out.r1_applied:
            every_step, _ = r1_penalty(d, real, gamma=3.0, interval=1, masks=masks)
            torch.testing.assert_close(out.r1, 4 * every_step)
            assert "adv_d_r1" in out.metrics()
        else:
            assert out.r1.item() == 0.0 and "adv_d_r1" not in out.metrics()
    assert applied == [True, False, False, False, True, False, False, False]


def test_r1_is_computed_in_fp32_under_autocast() -> None:
    d = tiny_discriminator()
    real = torch.rand(B, 3, P, P)
    reference, _ = r1_penalty(d, real, gamma=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert d(real).dtype == torch.bfloat16  # autocast is in force here
        penalty, logits = r1_penalty(d, real, gamma=1.0)
    assert penalty.dtype == torch.float32 and logits.dtype == torch.float32
    torch.testing.assert_close(penalty, reference, rtol=1e-6, atol=0)


def test_discriminator_loss_with_r1_backpropagates_through_a_grad_scaler() -> None:
    g = torch.Generator().manual_seed(10)
    d = tiny_discriminator()
    loss = AdversarialLossConfig(r1_gamma=1.0, r1_interval=1).setup()
    real, fake, masks = torch.rand(B, 3, P, P, generator=g), torch.rand(B, 3, P, P, generator=g), random_masks(B, P, g)

    def d_loss() -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = loss.discriminator_loss(d, real, fake, masks, step=0)
        assert out.r1_applied and out.r1.item() > 0
        return out.loss

    d_loss().backward()
    reference = [p.grad.clone() for p in d.parameters()]
    d.zero_grad()

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    opt = torch.optim.SGD(d.parameters(), lr=1e-2)
    before = params_snapshot(d)
    scaler.scale(d_loss()).backward()
    scaler.unscale_(opt)
    for p, ref in zip(d.parameters(), reference):
        assert torch.isfinite(p.grad).all()
        torch.testing.assert_close(p.grad, ref, rtol=1e-3, atol=1e-6)
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 2.0**12  # no inf/NaN found, so the step was not skipped
    assert not same_params(d, before)


# ----------------------------------------------------------------------------------------------- config


def test_loss_config_rejects_invalid_weights() -> None:
    with pytest.raises(MaldInputError):
        AdversarialLossConfig(r1_interval=0).setup()
    with pytest.raises(MaldInputError):
        AdversarialLossConfig(lambda_fm=-1.0).setup()


def test_generator_loss_weights_its_terms() -> None:
    g = torch.Generator().manual_seed(11)
    d = tiny_discriminator()
    real, fake, masks = torch.rand(B, 3, P, P, generator=g), torch.rand(B, 3, P, P, generator=g), random_masks(B, P, g)
    out = AdversarialLossConfig(lambda_adv=0.3, lambda_fm=2.0).setup().generator_loss(d, real, fake, masks)
    torch.testing.assert_close(out.loss, 0.3 * out.adversarial + 2.0 * out.feature_matching)
    no_fm = AdversarialLossConfig(lambda_adv=0.3, lambda_fm=0.0).setup().generator_loss(d, real, fake, masks)
    torch.testing.assert_close(no_fm.adversarial, out.adversarial)
    assert no_fm.feature_matching.item() == 0.0
    assert set(out.metrics()) == {"adv_g_loss", "adv_g_adversarial", "adv_g_feature_matching", "adv_g_fake_logit"}
