"""The offline classical inpainter: OpenCV's Telea (or Navier-Stokes) diffusion-based inpainting.

Needs no weights and runs in milliseconds, so it serves tests and CPU smoke runs. Its fills are smooth and
nearly view-consistent, which is *not* what a diffusion model produces; for quality comparisons on CPU use
the exemplar inpainter (see docs/decisions.md).

Partial mode (``strength < 1``) blends the render and the fill inside the mask:
``(1 - strength) * init + strength * fill``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence, Type

import cv2
import numpy as np
import torch
from torch import Tensor

from mald_nerfstudio.inpaint.base import Inpainter, InpainterConfig


@dataclass
class TeleaInpainterConfig(InpainterConfig):
    """OpenCV diffusion-based inpainting (no weights needed)."""

    _target: Type = field(default_factory=lambda: TeleaInpainter)
    """Target class to instantiate."""
    method: Literal["telea", "ns"] = "telea"
    """OpenCV algorithm: Telea's fast marching method or Navier-Stokes."""
    radius: int = 5
    """Neighbourhood radius in pixels that OpenCV considers around each filled pixel."""


class TeleaInpainter(Inpainter):
    """Fills each view independently with ``cv2.inpaint``; deterministic (seeds are unused)."""

    config: TeleaInpainterConfig

    def _fill(
        self, images: Tensor, masks: Tensor, init: Optional[Tensor], strength: float, seeds: Sequence[int]
    ) -> Tensor:
        flag = cv2.INPAINT_TELEA if self.config.method == "telea" else cv2.INPAINT_NS
        out = []
        for image, mask in zip(images, masks):
            rgb = (image.detach().cpu().numpy() * 255.0).round().astype(np.uint8)
            hole = mask.detach().cpu().numpy().astype(np.uint8)
            filled = cv2.inpaint(rgb, hole, self.config.radius, flag) if hole.any() else rgb
            out.append(torch.from_numpy(filled.astype(np.float32) / 255.0))
        fill = torch.stack(out).to(images.device)
        if init is not None and strength < 1.0:
            fill = (1.0 - strength) * init.to(fill) + strength * fill
        return fill
