"""What one training step gets from the datamanager: observed rays and, once the views are inpainted, mask patches.

:class:`TrainingBatch` is the contract between the datamanager (which draws it), the pipeline (which renders its
rays in one pass or two) and the model (whose losses read it): observed rays with their target colours, then the
rays of P x P patches over the fill masks with the same patches cut from the current inpainted images. The ray
bundle lists the observed rays first, then the patch rays in patch order, so ``bundle[:batch.num_observed]`` and
``bundle[batch.num_observed:]`` are the two kinds.

Two facts still ride on nerfstudio's own channels, because nerfstudio's interfaces pass nothing else to where they
are needed (docs/decisions.md, "The training batch"): which rays are patch rays travels in the ray bundle's
metadata (nerfacto's ``get_outputs`` applies the camera optimiser and the appearance codes to the bundle alone),
and the patch size in the training dataset's metadata (``VanillaPipeline`` builds the model from it). Both are
written and read only through the functions here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle

_PATCH_RAY_KEY = "inpaint_patch_ray"
"""Ray-bundle metadata: 1.0 for rays of inpainting patches, 0.0 for observed rays ([N, 1])."""
_PATCH_SIZE_KEY = "inpaint_patch_size"
"""Train-dataset metadata: the patch side, which the model's discriminator is built for."""


@dataclass
class ObservedRays:
    """Rays of pixels trained on their colour: outside the masks (and, with visibility, seen parts given the
    colour other views observed)."""

    indices: Tensor
    """long [R, 3]: (view, y, x) of each ray."""
    colours: Tensor
    """float [R, 3] in [0, 1]: the target colour of each ray."""

    def nerfstudio_batch(self) -> Dict[str, Tensor]:
        """nerfstudio's batch dict for nerfacto's own losses and metrics on these rays."""
        return {"image": self.colours, "indices": self.indices}


@dataclass
class MaskPatches:
    """P x P patches over the fill masks: where they are, the current inpainted image there, the fill mask there."""

    indices: Tensor
    """long [P, S, S, 3]: (view, y, x) of every pixel of every patch."""
    real: Tensor
    """float [P, S, S, 3] in [0, 1]: the patches cut from the current inpainted images."""
    mask: Tensor
    """bool [P, S, S, 1]: the fill mask in the patches (the adversarial loss compares renders and ``real`` there)."""

    @property
    def size(self) -> int:
        """The patch side S."""
        return int(self.real.shape[1])

    @property
    def num_rays(self) -> int:
        """P * S * S."""
        return int(self.indices[..., 0].numel())


@dataclass
class TrainingBatch:
    """One training step's rays: observed rays, then (once the views are inpainted) mask patches."""

    observed: ObservedRays
    """Rays trained on their colour with nerfacto's losses."""
    patches: Optional[MaskPatches] = None
    """Patches trained adversarially inside the fill masks (None before the initial inpainting, or no mask loss)."""

    @property
    def num_observed(self) -> int:
        """How many rays of the bundle are observed rays (they come first)."""
        return int(self.observed.indices.shape[0])

    def ray_indices(self) -> Tensor:
        """long [R + P * S * S, 3]: every ray of the step, the observed rays first, then the patch rays."""
        if self.patches is None:
            return self.observed.indices
        return torch.cat([self.observed.indices, self.patches.indices.reshape(-1, 3)], dim=0)


def mark_patch_rays(bundle: RayBundle, num_observed: int) -> None:
    """Mark the rays of ``bundle`` after the first ``num_observed`` as patch rays (they do not refine the camera
    poses and use the patch appearance codes)."""
    flags = torch.zeros((len(bundle), 1), device=bundle.origins.device)
    flags[num_observed:] = 1.0
    if bundle.metadata is None:
        bundle.metadata = {}
    bundle.metadata[_PATCH_RAY_KEY] = flags


def patch_rays(bundle: RayBundle) -> Optional[Tensor]:
    """bool [N]: which rays of ``bundle`` are patch rays; None for a bundle that was not marked (rendering)."""
    flags = (bundle.metadata or {}).get(_PATCH_RAY_KEY)
    return None if flags is None else flags.reshape(-1) > 0.5


def set_patch_size(metadata: Dict[str, Any], size: int) -> None:
    """Record the patch side in the training dataset's metadata, which nerfstudio hands to the model."""
    metadata[_PATCH_SIZE_KEY] = int(size)


def patch_size(metadata: Optional[Dict[str, Any]]) -> Optional[int]:
    """The patch side recorded in a dataset's metadata (None: not a mald-nerf training dataset)."""
    size = (metadata or {}).get(_PATCH_SIZE_KEY)
    return None if size is None else int(size)
