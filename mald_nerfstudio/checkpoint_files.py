"""Crash-safe checkpoint files: atomic writes, damaged files named in one paragraph, resume from the newest good one.

nerfstudio writes ``step-*.ckpt`` in place and resumes from the highest step, so a run killed during a save
leaves a partial newest file that blocks every later resume. Our trainer writes each checkpoint to a temporary
file next to the checkpoint folder (never inside it: nerfstudio parses every name in that folder as a step) and
renames it into place, which is atomic on POSIX and Windows; the newest ``step-*.ckpt`` is therefore always
complete. Files damaged some other way (a copy cut short, a full disk before this change) are reported by name.

A checkpoint records where it comes from (:func:`checkpoint_origin`: the method, the data folder and a fingerprint
of the scene's training cameras), so that resuming refuses a checkpoint of another method or scene, and
:func:`compare_pipeline_state` lists the tensors a checkpoint and a pipeline do not share (another model
configuration), for the refusal or for a deliberate warm start.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from nerfstudio.utils.rich_utils import CONSOLE

from mald_nerfstudio.checkpoint_compat import allow_numpy_scalars_in_checkpoints
from mald_nerfstudio.errors import MaldInputError, damaged_checkpoint_error, format_error

PARTIAL_SUFFIX = ".partial"
"""Suffix of a checkpoint being written; such files are left only by a run killed during a save."""


def atomic_torch_save(state: Dict[str, Any], path: Path) -> None:
    """``torch.save`` to ``path`` so that ``path`` is either absent, the old file, or the complete new one."""
    path = Path(path)
    partial = path.parent.parent / f".{path.parent.name}-{path.name}{PARTIAL_SUFFIX}"
    for stale in path.parent.parent.glob(f".{path.parent.name}-*{PARTIAL_SUFFIX}"):
        stale.unlink(missing_ok=True)  # left by a run killed while saving
    try:
        with open(partial, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def checkpoint_steps(folder: Path) -> List[Tuple[int, Path]]:
    """(step, path) of the ``step-NNNNNNNNN.ckpt`` files in a folder, newest first."""
    found = []
    for path in Path(folder).glob("step-*.ckpt"):
        digits = path.stem[len("step-") :]
        if digits.isdigit():
            found.append((int(digits), path))
    return sorted(found, reverse=True)


def read_checkpoint(path: Path) -> Dict[str, Any]:
    """Load a nerfstudio checkpoint on the CPU; an unreadable or incomplete file raises a paragraph naming it."""
    path = Path(path)
    if not path.is_file():
        raise MaldInputError("checkpoint not found", path, "pass an existing checkpoint file or folder")
    allow_numpy_scalars_in_checkpoints()  # nerfstudio's schedulers put numpy scalars into every checkpoint
    try:
        # weights_only: a checkpoint cannot run code when loaded; torch's own default has changed across versions.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to decode the file is reported the same way
        raise damaged_checkpoint_error(path, err) from None
    if not isinstance(state, dict) or not {"step", "pipeline"} <= set(state):
        raise damaged_checkpoint_error(path, ValueError("it holds no 'step' and 'pipeline' entries"))
    return state


def read_resume_checkpoint(
    load_dir: Optional[Path], load_step: Optional[int], load_checkpoint: Optional[Path]
) -> Tuple[Optional[Path], Optional[Dict[str, Any]]]:
    """The checkpoint ``ns-train`` resumes from: as nerfstudio chooses it, except that a damaged newest file in
    ``load_dir`` is reported and skipped for the previous good one. A file named explicitly must load."""
    if load_dir is None:
        if load_checkpoint is None:
            return None, None
        return Path(load_checkpoint), read_checkpoint(Path(load_checkpoint))
    if Path(load_dir).is_file():
        raise MaldInputError(
            "--load-dir names a file, but it takes the folder of a run's checkpoints",
            load_dir,
            f"pass --load-dir {Path(load_dir).parent}, or resume from this file with --load-checkpoint {load_dir}",
        )
    if load_step is not None:
        path = Path(load_dir) / f"step-{load_step:09d}.ckpt"
        return path, read_checkpoint(path)
    candidates = checkpoint_steps(Path(load_dir))
    if not candidates:
        raise MaldInputError(
            "no step-*.ckpt checkpoint in this folder", load_dir, "pass the nerfstudio_models/ folder of a run"
        )
    damaged: List[MaldInputError] = []
    for _, path in candidates:
        try:
            state = read_checkpoint(path)
        except MaldInputError as err:
            damaged.append(err)
            CONSOLE.print(format_error(err).strip(), markup=False, highlight=False, soft_wrap=True)
            continue
        if damaged:
            CONSOLE.print(
                f"[bold yellow]Resuming from the previous good checkpoint {path} instead of the damaged "
                f"{damaged[0].path}.",
                soft_wrap=True,
            )
        return path, state
    raise MaldInputError(
        f"none of the {len(candidates)} checkpoints in this folder can be loaded (newest: {candidates[0][1].name})",
        load_dir,
        "start the run again without --load-dir, or resume from a copy of the run that holds a good checkpoint",
    )


def capture_rng_state() -> Dict[str, Any]:
    """The global random states (torch CPU and CUDA, numpy, Python), as types the safe checkpoint loader accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Set the global random states captured by :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
         numpy_state["has_gauss"], numpy_state["cached"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def scene_fingerprint(image_filenames: List[Path], camera_to_worlds: torch.Tensor, sizes: torch.Tensor) -> str:
    """What identifies a scene's training views: image file names, camera poses and image sizes (a copy of the
    scene in another folder has the same fingerprint, another scene or other data-parser options another one)."""
    digest = hashlib.sha256()
    digest.update("\n".join(Path(name).name for name in image_filenames).encode())
    digest.update(torch.round(camera_to_worlds.detach().double().cpu() * 1e4).long().numpy().tobytes())
    digest.update(sizes.detach().long().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def checkpoint_origin(method: str, data: Optional[Path], scene: str) -> Dict[str, str]:
    """The record a checkpoint keeps of the run that wrote it (in the trainer's run state)."""
    return {"method": method, "data": str(data), "scene": scene}


def recorded_method(checkpoint: Path) -> Optional[str]:
    """The method of the run a checkpoint belongs to, from the run's config.yml next to its folder (for checkpoints
    written without an origin record: by nerfstudio's trainer or before mald-nerfstudio kept one)."""
    config = Path(checkpoint).parent.parent / "config.yml"
    try:
        found = re.search(r"^method_name: *(\S+) *$", config.read_text(errors="replace"), re.MULTILINE)
    except OSError:
        return None
    return found.group(1).strip("'\"") if found else None


def _group(key: str) -> str:
    """A tensor's part of the model for a summary: ``_model.field.mlp_base.params`` -> ``field``."""
    parts = key.split(".")
    return parts[1] if parts[0] == "_model" and len(parts) > 1 else parts[0]


@dataclass
class StateMismatch:
    """The tensors a checkpoint's pipeline state and a pipeline do not share."""

    missing: List[str] = field(default_factory=list)
    """Tensors of the pipeline the checkpoint does not hold."""
    unexpected: List[str] = field(default_factory=list)
    """Tensors of the checkpoint the pipeline does not have."""
    other_shape: List[str] = field(default_factory=list)
    """Tensors both hold, in different shapes."""

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.other_shape)

    def describe(self) -> str:
        """The mismatch in words, counted by part of the model: "18 tensor(s) of this model are not in the
        checkpoint (discriminator: 18)"."""
        parts = []
        for keys, what in ((self.missing, "of this model are not in the checkpoint"),
                           (self.unexpected, "of the checkpoint are not in this model"),
                           (self.other_shape, "have another shape in the checkpoint")):
            if keys:
                groups = Counter(_group(key) for key in keys).most_common()
                listed = ", ".join(f"{name}: {count}" for name, count in groups[:4])
                more = f", {len(groups) - 4} more parts" if len(groups) > 4 else ""
                parts.append(f"{len(keys)} tensor(s) {what} ({listed}{more})")
        return "; ".join(parts)


def compare_pipeline_state(checkpoint_state: Mapping[str, Any], pipeline_state: Mapping[str, Any]) -> StateMismatch:
    """Which tensors of a checkpoint's ``pipeline`` entry a pipeline's ``state_dict()`` would not load as they are.
    Entries that are not tensors (the modules' extra states) are left out: checkpoints of older versions of a
    method lack some, and each module checks its own."""
    loaded = {key[len("module."):] if key.startswith("module.") else key: value
              for key, value in checkpoint_state.items() if isinstance(value, torch.Tensor)}
    current = {key: value for key, value in pipeline_state.items() if isinstance(value, torch.Tensor)}
    mismatch = StateMismatch(
        missing=sorted(set(current) - set(loaded)), unexpected=sorted(set(loaded) - set(current))
    )
    for key in sorted(set(loaded) & set(current)):
        if current[key].shape != loaded[key].shape:
            mismatch.other_shape.append(key)
    return mismatch
