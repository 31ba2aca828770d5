"""Camera-pose refinement from the observed pixels only.

nerfacto refines the training poses (``SO3xR3``) with the gradients of every ray it renders. In MALD-NeRF the
patch rays inside the masks are trained against inpainted images that differ from view to view; their adversarial
and feature-matching gradients would move the cameras to fit those fills. This optimiser applies the same pose
corrections to every ray, but the rays the datamanager marks as inpainting-patch rays (read with
:func:`~mald_nerfstudio.data.training_batch.patch_rays`) use them detached, so only the observed pixels refine the
poses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

import torch

from nerfstudio.cameras.camera_optimizers import CameraOptimizer, CameraOptimizerConfig
from nerfstudio.cameras.rays import RayBundle

from mald_nerfstudio.data.training_batch import patch_rays


@dataclass
class ObservedPixelsCameraOptimizerConfig(CameraOptimizerConfig):
    """nerfstudio's camera-pose refinement, driven by the observed pixels only (never by the inpainting losses)."""

    _target: Type = field(default_factory=lambda: ObservedPixelsCameraOptimizer)
    """Target class to instantiate."""


class ObservedPixelsCameraOptimizer(CameraOptimizer):
    """``CameraOptimizer`` whose corrections reach inpainting-patch rays without a gradient path back."""

    config: ObservedPixelsCameraOptimizerConfig

    def apply_to_raybundle(self, raybundle: RayBundle) -> None:
        flags = patch_rays(raybundle)
        if self.config.mode == "off" or flags is None:
            super().apply_to_raybundle(raybundle)
            return
        corrections = self(raybundle.camera_indices.squeeze(-1))
        patch = flags.reshape(-1, 1, 1)
        corrections = torch.where(patch, corrections.detach(), corrections)
        raybundle.origins = raybundle.origins + corrections[:, :3, 3]
        raybundle.directions = torch.bmm(corrections[:, :3, :3], raybundle.directions[..., None]).squeeze(-1)
