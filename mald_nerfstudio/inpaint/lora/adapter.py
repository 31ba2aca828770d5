"""Adapter folders on disk: file names, the atomic save of a trained adapter, its ``customization.json`` (scene
token and prompt) and its files as tensors (to keep an adapter inside a checkpoint).

An adapter folder holds diffusers' LoRA weights (:data:`ADAPTER_WEIGHTS`, written by ``save_lora_weights``) and,
for one trained here, :data:`ADAPTER_INFO`. This module does not import :mod:`mald_nerfstudio.inpaint.ldm` (which
imports it to load adapters).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Union

import torch
from torch import Tensor

from mald_nerfstudio.errors import MaldInputError, MaldSetupError

if TYPE_CHECKING:  # heavy imports only for type checkers
    from diffusers import StableDiffusionInpaintPipeline

#: Name of the weights file diffusers' ``save_lora_weights`` writes and ``load_lora_weights`` reads.
ADAPTER_WEIGHTS = "pytorch_lora_weights.safetensors"
#: Written last into a finished adapter folder: what was trained, on what.
ADAPTER_INFO = "customization.json"


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter trained here was prompted with (from its ``customization.json``)."""

    scene_token: str
    """Scene-specific token the adapter learnt (e.g. "sks")."""
    scene_prompt: str
    """Prompt with a ``{token}`` placeholder for ``scene_token``."""


def check_adapter_dir(adapter_dir: Union[str, Path]) -> Path:
    """``adapter_dir`` as a path, after checking it is a LoRA adapter folder (raises MaldSetupError if not)."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        raise MaldSetupError(
            f"{adapter_dir} is not a LoRA adapter folder (no {ADAPTER_WEIGHTS}). Run the customisation "
            "(`mald-nerf-customize --images DIR --masks DIR`) and pass the folder it prints, or leave "
            "--pipeline.inpainter.lora-adapter unset"
        )
    return adapter_dir


def is_finished_adapter(adapter_dir: Union[str, Path]) -> bool:
    """Whether ``adapter_dir`` holds a finished adapter trained here (weights and ``customization.json``)."""
    adapter_dir = Path(adapter_dir)
    return (adapter_dir / ADAPTER_INFO).is_file() and (adapter_dir / ADAPTER_WEIGHTS).is_file()


def read_adapter_info(adapter_dir: Union[str, Path]) -> Optional[AdapterInfo]:
    """The scene token and prompt of an adapter trained here; None for a folder without ``customization.json``."""
    info_file = Path(adapter_dir) / ADAPTER_INFO
    if not info_file.is_file():
        return None
    info = json.loads(info_file.read_text())
    return AdapterInfo(scene_token=info["scene_token"], scene_prompt=info["scene_prompt"])


def saves_adapter_metadata(save_lora_weights: Callable) -> bool:
    """Whether diffusers' ``save_lora_weights`` stores the LoRA configs (diffusers 0.34+)."""
    return "unet_lora_adapter_metadata" in inspect.signature(save_lora_weights).parameters


def adapter_metadata_kwargs(save_lora_weights: Callable, unet_lora: Any, text_lora: Any) -> Dict[str, Any]:
    """The LoRA configs as ``save_lora_weights`` keyword arguments where it accepts them; older releases infer the
    rank from the weights on loading and take alpha = rank (training refuses other alphas there)."""
    if not saves_adapter_metadata(save_lora_weights):
        return {}
    return {
        "unet_lora_adapter_metadata": unet_lora.to_dict(),
        "text_encoder_lora_adapter_metadata": text_lora.to_dict() if text_lora is not None else None,
    }


def save_adapter(
    pipe: "StableDiffusionInpaintPipeline",
    target: Path,
    unet_layers: Dict[str, Tensor],
    unet_lora: Any,
    text_layers: Optional[Dict[str, Tensor]],
    text_lora: Any,
    info: Dict[str, Any],
) -> None:
    """Write the adapter (weights, then ``info`` as ``customization.json``) into a temporary folder, then move it
    into place (never a half-written cache entry). When another run finished ``target`` meanwhile, keep that one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    pipe.save_lora_weights(
        str(scratch),
        unet_lora_layers=unet_layers,
        text_encoder_lora_layers=text_layers,
        safe_serialization=True,
        **adapter_metadata_kwargs(pipe.save_lora_weights, unet_lora, text_lora),
    )
    (scratch / ADAPTER_INFO).write_text(json.dumps(info, indent=2, default=str))
    if target.exists():  # another run finished the same adapter meanwhile
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        scratch.rename(target)


def read_adapter_files(adapter_dir: Union[str, Path]) -> Dict[str, Tensor]:
    """An adapter folder's files as uint8 tensors by name (to keep the adapter inside a checkpoint)."""
    return {
        path.name: torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8).clone()
        for path in sorted(Path(adapter_dir).iterdir())
        if path.is_file()
    }


def write_adapter_files(adapter_dir: Union[str, Path], files: Dict[str, Tensor]) -> None:
    """Write files read by :func:`read_adapter_files` into ``adapter_dir`` (each written to a temporary name and
    renamed into place)."""
    adapter_dir = Path(adapter_dir)
    adapter_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        scratch = adapter_dir / f".{name}.tmp-{os.getpid()}"
        scratch.write_bytes(data.cpu().numpy().tobytes())
        scratch.replace(adapter_dir / name)


def build_prompt(prompt: str, scene_prompt: str, scene_token: Optional[str]) -> str:
    """The text prompt: ``prompt``, or ``scene_prompt`` with ``{token}`` replaced when a scene token is set."""
    if not scene_token:
        return prompt
    if "{token}" not in scene_prompt:
        raise MaldInputError(
            f"the scene prompt {scene_prompt!r} has no {{token}} placeholder for the scene token {scene_token!r}",
            fix='write it like "a photo of {token} scene"',
        )
    return scene_prompt.replace("{token}", scene_token)
