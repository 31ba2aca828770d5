"""The inpainter interface shared by every 2D inpainter (classical, exemplar, latent diffusion).

An inpainter fills the masked pixels of a batch of images. Two modes:

* full (``strength == 1``): the fill ignores any starting image; used before training.
* partial (``0 <= strength < 1``): the fill starts from ``init`` (the NeRF's current render of the view) and
  changes it by an amount that grows with ``strength``; used by the iterative dataset update. How strength
  is interpreted is each inpainter's to document (the LDM noises ``init`` to that diffusion time).

Whatever the subclass does, :meth:`Inpainter.inpaint` returns the original pixels, bit for bit, outside the
mask: the composite is done here, once, for all inpainters.
"""

from __future__ import annotations

import contextlib

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Dict, Iterator, Optional, Sequence, Type

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from nerfstudio.configs.base_config import InstantiateConfig


@dataclass
class InpainterConfig(InstantiateConfig):
    """Base configuration of a 2D inpainter."""

    _target: Type = field(default_factory=lambda: Inpainter)
    """Target class to instantiate."""
    seed: int = 0
    """Base random seed; per-view seeds are derived from it, so runs are reproducible."""
    fills_masks: ClassVar[bool] = True
    """Whether runs with this inpainter fill the masks at all (not a command-line option)."""


class Inpainter:
    """Fills masked regions of images. Subclasses implement :meth:`_fill`."""

    config: InpainterConfig

    def __init__(self, config: InpainterConfig, device: str | torch.device = "cpu", **kwargs) -> None:
        self.config = config
        self.device = torch.device(device)

    views_per_call: int = 1
    """Views the dataset update hands to one :meth:`inpaint` call."""

    def check_available(self) -> None:
        """Raise :class:`~mald_nerfstudio.errors.MaldSetupError` at start-up when the inpainter cannot run here
        (missing weights or libraries); nothing to check for most inpainters."""

    def prepare(self, images: Tensor, object_masks: Tensor, run_dir: Path, saved: Dict[str, Tensor],
                on_loss: Optional[Callable[[int, float], None]] = None) -> Dict[str, Tensor]:
        """Get ready for this scene before its first fill (the LDM's per-scene LoRA customisation; nothing for most
        inpainters). ``images`` are the training views (float [N, H, W, 3] in [0, 1]), ``object_masks`` their masks
        (bool [N, H, W]), ``run_dir`` the run's folder, ``saved`` what an earlier :meth:`prepare` of this run
        returned, restored from a checkpoint (prepare then only reloads it); ``on_loss(step, loss)`` logs any
        training. Returns the files to keep in the run's checkpoints (name -> bytes as a uint8 tensor)."""
        return {}

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Keep the inpainter ready on its device for several :meth:`inpaint` calls (one pass over the views); an
        inpainter with nothing to place does nothing."""
        yield

    def _fill(
        self,
        images: Float[Tensor, "B H W 3"],
        masks: Bool[Tensor, "B H W"],
        init: Optional[Float[Tensor, "B H W 3"]],
        strength: float,
        seeds: Sequence[int],
    ) -> Float[Tensor, "B H W 3"]:
        """Return images whose masked pixels are filled. Pixels outside the mask may be anything."""
        raise NotImplementedError

    @torch.no_grad()
    def inpaint(
        self,
        images: Float[Tensor, "B H W 3"],
        masks: Bool[Tensor, "B H W"],
        init: Optional[Float[Tensor, "B H W 3"]] = None,
        strength: float = 1.0,
        seeds: Optional[Sequence[int]] = None,
    ) -> Float[Tensor, "B H W 3"]:
        """Inpaint a batch of views.

        Args:
            images: original images, float in [0, 1], on any device.
            masks: True where the image must be filled.
            init: starting images for partial mode (the NeRF's renders); required when ``strength < 1``.
            strength: 1 fills from scratch; smaller values keep more of ``init``.
            seeds: one seed per image; defaults to ``config.seed + i``.

        Returns:
            Float images in [0, 1] on the device of ``images``, equal to ``images`` outside ``masks``.
        """
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [B, H, W, 3], got {tuple(images.shape)}")
        if masks.shape != images.shape[:3]:
            raise ValueError(f"masks must be [B, H, W] matching images, got {tuple(masks.shape)}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1], got {strength}")
        if strength < 1.0 and init is None:
            raise ValueError("partial inpainting (strength < 1) needs the starting images `init`")
        masks = masks.bool()
        if seeds is None:
            seeds = [self.config.seed + i for i in range(images.shape[0])]
        if len(seeds) != images.shape[0]:
            raise ValueError(f"need one seed per image: {len(seeds)} seeds for {images.shape[0]} images")
        filled = self._fill(images, masks, init, strength, list(seeds))
        filled = filled.to(device=images.device, dtype=images.dtype).clamp(0.0, 1.0)
        return torch.where(masks[..., None], filled, images)


@dataclass
class NoInpainterConfig(InpainterConfig):
    """No inpainting: the masked pixels are ignored and nothing supervises the holes (the nerfacto-masked baseline)."""

    _target: Type = field(default_factory=lambda: NoInpainter)
    """Target class to instantiate."""
    fills_masks: ClassVar[bool] = False
    """The masks stay unfilled and unsupervised."""


class NoInpainter(Inpainter):
    """Leaves the masked pixels as they are; the pipeline never inpaints with it."""

    def _fill(self, images, masks, init, strength, seeds):
        return images
