"""The self-supervised inpainting task of the LoRA customisation: training crops, their masks and the loss."""

from __future__ import annotations

from typing import Protocol, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from mald_nerfstudio.inpaint.partial_ddim import latent_mask



class CropSettings(Protocol):
    """What a training batch needs of a LoRA customisation config (``training.LoRACustomizationConfig``, which
    imports this module)."""

    resolution: int
    batch_size: int
    num_rectangles: Tuple[int, int]
    rectangle_size: Tuple[float, float]


def object_latent_mask(object_masks: Bool[Tensor, "B 1 H W"], factor: int) -> Float[Tensor, "B 1 h w"]:
    """Latent pixels touching the object (max-pooled object mask): 1 = object, 0 = known content."""
    return latent_mask(object_masks, factor)


def masked_diffusion_loss(
    prediction: Float[Tensor, "B C h w"], target: Float[Tensor, "B C h w"], object_latents: Float[Tensor, "B 1 h w"]
) -> Tensor:
    """Mean squared error per latent pixel, averaged over the latent pixels outside the object only.

    Latent pixels inside the object get weight 0, so their error has exactly zero gradient.
    """
    per_pixel = (prediction.float() - target.float()).pow(2).mean(dim=1, keepdim=True)
    keep = 1.0 - object_latents.float()
    return (per_pixel * keep).sum() / keep.sum().clamp_min(1.0)


def random_rectangles(
    batch: int,
    size: int,
    count: Tuple[int, int],
    side: Tuple[float, float],
    generator: torch.Generator,
) -> Bool[Tensor, "B 1 S S"]:
    """Masks with ``count`` (inclusive range) random axis-aligned rectangles of relative ``side`` each."""
    masks = torch.zeros(batch, 1, size, size, dtype=torch.bool)
    for b in range(batch):
        n = int(torch.randint(count[0], count[1] + 1, (1,), generator=generator))
        for _ in range(n):
            h, w = (
                max(1, int(round(size * (side[0] + (side[1] - side[0]) * float(torch.rand(1, generator=generator))))))
                for _ in range(2)
            )
            top = int(torch.randint(0, size - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, size - w + 1, (1,), generator=generator))
            masks[b, 0, top : top + h, left : left + w] = True
    return masks


def prepare_scene(
    images: Float[Tensor, "B H W 3"], object_masks: Bool[Tensor, "B H W"], resolution: int
) -> Tuple[Tensor, Tensor]:
    """Images ``[B, 3, h, w]`` and masks ``[B, 1, h, w]`` resized so the short side is ``resolution``."""
    height, width = images.shape[1:3]
    scale = resolution / min(height, width)
    size = (max(resolution, int(round(height * scale))), max(resolution, int(round(width * scale))))
    chw = images.detach().float().cpu().permute(0, 3, 1, 2).clamp(0.0, 1.0)
    masks = object_masks.detach().cpu()[:, None].float()
    if size != (height, width):
        chw = F.interpolate(chw, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)
        masks = F.interpolate(masks, size=size, mode="bilinear", antialias=True, align_corners=False)
    return chw, masks > 1e-3


def training_batch(
    images: Float[Tensor, "N 3 h w"],
    object_masks: Bool[Tensor, "N 1 h w"],
    config: CropSettings,
    generator: torch.Generator,
) -> Tuple[Tensor, Tensor, Tensor]:
    """One batch of the self-supervised task: crops, their inpainting masks, their object masks.

    The inpainting mask is the random rectangles plus the object, so the object is always hidden from the
    model's masked-image conditioning, as at inference time.
    """
    size = config.resolution
    indices = torch.randint(0, images.shape[0], (config.batch_size,), generator=generator)
    crops, objects = [], []
    for index in indices.tolist():
        top = int(torch.randint(0, images.shape[2] - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, images.shape[3] - size + 1, (1,), generator=generator))
        crops.append(images[index, :, top : top + size, left : left + size])
        objects.append(object_masks[index, :, top : top + size, left : left + size])
    crops_t, objects_t = torch.stack(crops), torch.stack(objects)
    rectangles = random_rectangles(config.batch_size, size, config.num_rectangles, config.rectangle_size, generator)
    return crops_t, rectangles | objects_t, objects_t
