"""The settings of the per-scene LoRA customisation, part of the LDM inpainter's config
(``--pipeline.inpainter.customization.*`` after ``pipeline.inpainter:ldm``). The scene token and the prompt it is
trained with are the inpainter's own (``scene_token``, ``scene_prompt``): one token for training and inference."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

DEFAULT_SCENE_TOKEN = "sks"
"""The scene token the LDM inpainter and a bare customisation use unless told otherwise."""
DEFAULT_SCENE_PROMPT = "a photo of {token} scene"
"""The prompt the scene token is trained with (and inpainted with once its adapter is loaded)."""


@dataclass
class LoRACustomizationConfig:
    """Per-scene LoRA customisation of the inpainting diffusion model (self-supervised on the scene's images)."""

    enabled: bool = True
    """Customise the diffusion model on the scene before inpainting (off: use the base model, an ablation)."""
    rank: int = 8
    """LoRA rank of every adapted projection."""
    alpha: float = 8.0
    """LoRA alpha; the adapter's output is scaled by alpha / rank."""
    learning_rate: float = 1e-4
    """AdamW learning rate of the LoRA weights."""
    steps: int = 500
    """Optimisation steps."""
    batch_size: int = 2
    """Training crops per step."""
    resolution: int = 512
    """Side of the square training crops (images are first resized so their short side is this); multiple of 8."""
    num_rectangles: Tuple[int, int] = (1, 3)
    """Inclusive range of the number of random rectangles masked per training crop."""
    rectangle_size: Tuple[float, float] = (0.1, 0.5)
    """Range of each rectangle side as a fraction of the crop side."""
    train_text_encoder: bool = True
    """Also adapt the CLIP text encoder (as the paper does); off trains the U-Net only."""
    gradient_checkpointing: bool = True
    """Recompute the U-Net's activations in the backward pass: much less GPU memory for about 30% more time."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping of the LoRA weights."""
    seed: int = 0
    """Seed of crops, rectangles, timesteps and noise (and of the LoRA initialisation)."""
    cache_dir: Optional[Path] = None
    """Folder of cached adapters; None = the per-user cache (``~/.cache/mald-nerfstudio/lora`` on Linux)."""

    def training_settings(self) -> Dict[str, Any]:
        """The fields that change the trained adapter (everything but the switch and the cache location)."""
        ignored = {"enabled", "cache_dir"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ignored}
