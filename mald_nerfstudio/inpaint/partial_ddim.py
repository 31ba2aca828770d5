"""Partial DDIM inpainting with a 9-channel latent diffusion U-Net (MALD-NeRF's iterative dataset update).

Given a start image (the NeRF's render of a view), a strength ``s`` and ``n`` DDIM steps:

1. ``scheduler.set_timesteps(n)``; keep the last ``m = round(s * n)`` timesteps (``s = 0``: nothing to do, the
   start image is returned as is).
2. Encode the start image with the VAE and noise it with ``scheduler.add_noise`` at the first kept timestep
   (``s = 1``: start from pure noise instead, as diffusers' inpainting pipeline does).
3. Run ``m`` ``scheduler.step`` calls down to timestep 0. The U-Net input is the concatenation
   ``[noisy latents, mask, masked-image latents]`` (the layout of Stable Diffusion 2 inpainting), with
   classifier-free guidance.
4. Decode with the VAE.

Randomness comes from one seeded ``torch.Generator`` per image (on the CPU, so results do not depend on the
device), so a view's result does not depend on which other views share its batch. Written against the
documented diffusers scheduler / model API (``set_timesteps``, ``add_noise``, ``scale_model_input``, ``step``),
with ``DDIMScheduler`` in mind.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, Optional, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

if TYPE_CHECKING:  # heavy imports only for type checkers
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel


def num_denoising_steps(strength: float, num_inference_steps: int) -> int:
    """Number of denoising steps a partial run makes: ``strength * num_inference_steps`` rounded half up."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    return min(int(math.floor(strength * num_inference_steps + 0.5)), num_inference_steps)


def vae_scale_factor(vae: "AutoencoderKL") -> int:
    """Spatial downsampling of the VAE (8 for Stable Diffusion)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def encode_latents(vae: "AutoencoderKL", images: Float[Tensor, "B 3 h w"]) -> Float[Tensor, "B 4 h8 w8"]:
    """VAE latents of images in ``[0, 1]``, scaled as the U-Net expects (posterior mean, deterministic)."""
    pixels = (images * 2.0 - 1.0).to(device=vae.device, dtype=vae.dtype)
    latents = vae.encode(pixels).latent_dist.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def decode_latents(vae: "AutoencoderKL", latents: Float[Tensor, "B 4 h8 w8"]) -> Float[Tensor, "B 3 h w"]:
    """Images in ``[0, 1]`` (float32) from scaled latents."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    latents = latents.to(vae.dtype) / vae.config.scaling_factor + shift
    images = vae.decode(latents, return_dict=False)[0]
    return (images.float() / 2.0 + 0.5).clamp(0.0, 1.0)


def latent_mask(mask: Bool[Tensor, "B 1 h w"], factor: int) -> Float[Tensor, "B 1 h8 w8"]:
    """The mask at latent resolution: a latent pixel is masked when any pixel it covers is (max-pooling)."""
    return F.max_pool2d(mask.float(), kernel_size=factor, stride=factor, ceil_mode=True)


def masked_image_condition(images: Float[Tensor, "B 3 h w"], mask: Bool[Tensor, "B 1 h w"]) -> Float[Tensor, "B 3 h w"]:
    """The masked-image conditioning in ``[0, 1]``: hole pixels set to 0.5 (0 in the VAE's [-1, 1] range).

    Matches diffusers' ``init_image * (mask < 0.5)`` in the ``[-1, 1]`` range, so whatever is under the mask
    (the object to remove) never reaches the model.
    """
    return torch.where(mask, torch.full_like(images, 0.5), images)


def initial_noise(
    generators: Sequence[torch.Generator], shape: Sequence[int], device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Standard-normal noise ``[B, *shape]``, row ``i`` drawn from ``generators[i]`` (float32, then cast)."""
    noise = [torch.randn(tuple(shape), generator=g, device=g.device, dtype=torch.float32) for g in generators]
    return torch.stack(noise).to(device=device, dtype=dtype)


@torch.no_grad()
def partial_ddim_inpaint(
    vae: "AutoencoderKL",
    unet: "UNet2DConditionModel",
    scheduler: "DDIMScheduler",
    images: Float[Tensor, "B 3 h w"],
    masks: Bool[Tensor, "B 1 h w"],
    start: Optional[Float[Tensor, "B 3 h w"]],
    prompt_embeds: Float[Tensor, "b L D"],
    negative_prompt_embeds: Optional[Float[Tensor, "b L D"]],
    strength: float,
    num_inference_steps: int,
    guidance_scale: float,
    generators: Sequence[torch.Generator],
    eta: float = 0.0,
) -> Float[Tensor, "B 3 h w"]:
    """Inpaint ``masks`` of ``images`` by partial DDIM from ``start``; returns float32 images in ``[0, 1]``.

    Args:
        vae, unet, scheduler: the latent diffusion model's components (9-channel inpainting U-Net).
        images: original images in ``[0, 1]``; their unmasked pixels condition the model.
        masks: True where the model must fill; height and width a multiple of the VAE factor.
        start: the starting images in ``[0, 1]`` (renders); unused (may be None) when ``strength == 1``.
        prompt_embeds: text embeddings, one row or one per image.
        negative_prompt_embeds: embeddings of the negative prompt for classifier-free guidance; None (or a
            ``guidance_scale <= 1``) disables guidance.
        strength: fraction of the DDIM trajectory to run, in ``[0, 1]``.
        num_inference_steps: DDIM steps of a full-strength run.
        guidance_scale: classifier-free guidance weight.
        generators: one seeded generator per image.
        eta: DDIM eta (0 = deterministic DDIM).

    Returns:
        The decoded images; pixels outside the mask are the model's reconstruction, not the originals (the
        caller composites them).
    """
    batch = images.shape[0]
    if len(generators) != batch:
        raise ValueError(f"need one generator per image: {len(generators)} for {batch} images")
    num_steps = num_denoising_steps(strength, num_inference_steps)
    if num_steps == 0:
        if start is None:
            raise ValueError("strength 0 keeps the start image, but no start image was given")
        return start.float().clone()
    full_strength = strength >= 1.0
    if start is None and not full_strength:
        raise ValueError("partial DDIM (strength < 1) needs the start images")

    device, dtype = unet.device, unet.dtype
    factor = vae_scale_factor(vae)
    height, width = images.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(f"image size {height}x{width} must be a multiple of the VAE factor {factor}")
    latent_shape = (vae.config.latent_channels, height // factor, width // factor)

    scheduler.set_timesteps(num_inference_steps, device=device)
    first = (num_inference_steps - num_steps) * scheduler.order
    timesteps = scheduler.timesteps[first:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(first)

    noise = initial_noise(generators, latent_shape, device, dtype)
    if full_strength:
        latents = noise * scheduler.init_noise_sigma
    else:
        start_latents = encode_latents(vae, start).to(dtype)
        latents = scheduler.add_noise(start_latents, noise, timesteps[:1].repeat(batch))

    mask_latents = latent_mask(masks.to(device), factor).to(dtype)
    masked_latents = encode_latents(vae, masked_image_condition(images.to(device).float(), masks.to(device))).to(dtype)

    guided = negative_prompt_embeds is not None and guidance_scale > 1.0
    embeds = prompt_embeds.to(device=device, dtype=dtype).expand(batch, -1, -1)
    conditioning = torch.cat([mask_latents, masked_latents], dim=1)
    if guided:
        negative = negative_prompt_embeds.to(device=device, dtype=dtype).expand(batch, -1, -1)
        embeds = torch.cat([negative, embeds])
        conditioning = torch.cat([conditioning, conditioning])

    step_kwargs = {}
    step_parameters = inspect.signature(scheduler.step).parameters
    if "eta" in step_parameters:
        step_kwargs["eta"] = eta

    for t in timesteps:
        model_input = torch.cat([latents, latents]) if guided else latents
        model_input = scheduler.scale_model_input(model_input, t)
        model_input = torch.cat([model_input, conditioning], dim=1)
        noise_pred = unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
        if guided:
            uncond, cond = noise_pred.chunk(2)
            noise_pred = uncond + guidance_scale * (cond - uncond)
        if eta > 0.0 and "variance_noise" in step_parameters:
            step_kwargs["variance_noise"] = initial_noise(generators, latent_shape, device, dtype)
        latents = scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]

    return decode_latents(vae, latents)
