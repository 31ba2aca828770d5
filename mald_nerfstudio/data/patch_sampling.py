"""Sampling of training pixels: observed rays outside the masks, and square patches on the masks.

Reconstruction rays are drawn uniformly from the observed pixels (outside every inpainting mask) of all
training views. Inpainting patches are P x P windows placed so that they overlap the mask: the centre is a
uniformly drawn masked pixel, and the window is shifted to lie inside the image. Sampling works on flat pixel
indices precomputed once, so a step costs O(rays), not O(pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

@dataclass
class PixelPools:
    """Flat indices (view * H * W + y * W + x) of observed and of masked training pixels."""

    observed: Tensor
    """Flat indices of the pixels trained on their colour: outside the masks, and seen parts given an observed one."""
    masked: Tensor
    """Flat indices of the pixels to inpaint (the fill masks': only what no view saw, with visibility)."""
    height: int
    """Image height of the training views."""
    width: int
    """Image width of the training views."""

    @classmethod
    def from_masks(cls, masks: Tensor, fill_masks: Optional[Tensor] = None, trained_seen: Optional[Tensor] = None
                   ) -> "PixelPools":
        """Build the pools from bool masks [N, H, W] (True = not observed), the part of them to inpaint
        (``fill_masks``, inside ``masks``; default: all of them) and the part trained on colours other views
        observed (``trained_seen``; default: none)."""
        flat = masks.reshape(-1)
        fill = flat if fill_masks is None else fill_masks.reshape(-1)
        observed = ~flat if trained_seen is None else ~flat | trained_seen.reshape(-1)
        index_dtype = torch.int32 if flat.numel() < 2**31 else torch.int64
        return cls(
            observed=torch.nonzero(observed).squeeze(-1).to(index_dtype),
            masked=torch.nonzero(fill).squeeze(-1).to(index_dtype),
            height=masks.shape[1],
            width=masks.shape[2],
        )

    def unravel(self, flat: Tensor) -> Tensor:
        """Flat indices -> long [K, 3] (view, y, x)."""
        flat = flat.long()
        pixels = self.height * self.width
        view, rest = flat // pixels, flat % pixels
        return torch.stack([view, rest // self.width, rest % self.width], dim=-1)


def sample_observed(pools: PixelPools, num_rays: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """[num_rays, 3] (view, y, x) drawn uniformly from the observed pixels."""
    pick = torch.randint(len(pools.observed), (num_rays,), generator=generator, device=pools.observed.device)
    return pools.unravel(pools.observed[pick])


def sample_patches(
    pools: PixelPools, num_patches: int, patch_size: int, generator: Optional[torch.Generator] = None
) -> Tensor:
    """[num_patches, P, P, 3] (view, y, x) of P x P windows that each contain at least one masked pixel."""
    centre = pools.unravel(pools.masked[torch.randint(len(pools.masked), (num_patches,), generator=generator,
                                                        device=pools.masked.device)])
    half = patch_size // 2
    y0 = (centre[:, 1] - half).clamp(0, pools.height - patch_size)
    x0 = (centre[:, 2] - half).clamp(0, pools.width - patch_size)
    offsets = torch.arange(patch_size, device=centre.device)
    ys = (y0[:, None, None] + offsets[None, :, None]).expand(-1, patch_size, patch_size)
    xs = (x0[:, None, None] + offsets[None, None, :]).expand(-1, patch_size, patch_size)
    views = centre[:, 0, None, None].expand(-1, patch_size, patch_size)
    return torch.stack([views, ys, xs], dim=-1)
