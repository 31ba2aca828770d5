"""The adapter cache: its folder, the recipe version, the base model's name and the scene's cache key.

An adapter is stored under ``<cache root>/<key>``, the key a hash of the recipe version, the transformers major
version, the base model, the training settings and the scene's image and mask bytes, so a second run on the same
scene with the same settings finds it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

import numpy as np
from jaxtyping import Bool, Float
from torch import Tensor

from mald_nerfstudio.errors import MaldInputError
from mald_nerfstudio.inpaint.base import Inpainter

if TYPE_CHECKING:  # type checkers only: heavy, and ldm.py imports this package
    from diffusers import StableDiffusionInpaintPipeline


#: Bump when the training recipe changes so old cached adapters are not reused.
RECIPE_VERSION = "mald-lora-1"


def default_cache_dir() -> Path:
    """Per-user cache folder of the adapters (e.g. ``~/.cache/mald-nerfstudio/lora`` on Linux)."""
    try:
        from platformdirs import user_cache_dir

        root = Path(user_cache_dir("mald-nerfstudio"))
    except ImportError:  # platformdirs is optional; fall back to the XDG convention
        root = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "mald-nerfstudio"
    return root / "lora"


def cache_root(cache_dir: Optional[Path]) -> Path:
    """Folder holding the cached adapters: ``cache_dir``, or the per-user cache when it is None."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def scene_cache_key(
    images: Float[Tensor, "B H W 3"],
    object_masks: Bool[Tensor, "B H W"],
    base_model: str,
    settings: Dict[str, Any],
) -> str:
    """Hash of the image bytes, mask bytes, base model and training settings (the adapter's cache name)."""
    import transformers

    digest = hashlib.sha256()
    digest.update(RECIPE_VERSION.encode())
    # transformers 5 renamed the CLIP text encoder's parameters, so adapters do not carry across major versions.
    digest.update(f"transformers-{transformers.__version__.split('.')[0]}".encode())
    digest.update(base_model.encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    image_array = np.ascontiguousarray(images.detach().cpu().float().numpy())
    mask_array = np.packbits(object_masks.detach().cpu().bool().numpy())
    digest.update(repr(tuple(image_array.shape)).encode())
    digest.update(image_array.tobytes())
    digest.update(repr(tuple(object_masks.shape)).encode())
    digest.update(mask_array.tobytes())
    return digest.hexdigest()[:32]


def scene_adapter_dir(
    images: Float[Tensor, "B H W 3"],
    object_masks: Bool[Tensor, "B H W"],
    base_model: str,
    settings: Dict[str, Any],
    cache_dir: Optional[Path] = None,
) -> Path:
    """Where the adapter for this scene, base model and settings is (or will be) stored."""
    return cache_root(cache_dir) / scene_cache_key(images, object_masks, base_model, settings)


def base_model_name(
    model: Union[Inpainter, "StableDiffusionInpaintPipeline"], base_model: Optional[str] = None
) -> str:
    """The base model's name for the cache key: ``base_model`` when given, else taken from the inpainter's config
    (folder resolved, with revision and variant) or from the diffusers pipeline's ``name_or_path``."""
    if base_model is not None:
        return base_model
    if isinstance(model, Inpainter):  # an LDMInpainter (ldm.py is not imported here)
        c = model.config
        path = Path(c.model).expanduser()
        name = str(path.resolve()) if path.is_dir() else c.model
        return f"{name}@{c.revision or 'main'}:{c.variant or 'default'}"
    name = getattr(model, "name_or_path", None) or model.config.get("_name_or_path")
    if not name:
        raise MaldInputError("cannot tell which base model this pipeline is", fix="pass base_model=...")
    return str(name)
