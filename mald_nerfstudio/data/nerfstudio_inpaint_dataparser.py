"""Data parser for nerfstudio-format captures (transforms.json) with inpainting masks.

Everything nerfstudio's own parser reads still works (camera models, distortion, ``images_N/`` downscales,
``mask_path``). Two optional per-frame keys are added::

    {"file_path": "images/frame_00001.png", "transform_matrix": [...],
     "inpaint_mask_path": "inpaint_masks/frame_00001.png"}      # nonzero = region to inpaint
    {"file_path": "images/clean_00001.png", "transform_matrix": [...],
     "object_free": true}                                       # ground truth without the object: eval only

Frames without ``inpaint_mask_path`` are fully observed. Frames marked ``object_free`` are never trained on;
they are the evaluation views (their ``inpaint_mask_path``, if given, marks where the object would be, for the
masked metrics). If the file instead lists ``train_filenames`` / ``test_filenames``, nerfstudio's split is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Type

import numpy as np
import torch

from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.dataparsers.nerfstudio_dataparser import Nerfstudio, NerfstudioDataParserConfig
from nerfstudio.utils.io import load_from_json
from nerfstudio.utils.rich_utils import CONSOLE

from mald_nerfstudio.data.inpaint_metadata import InpaintMaskSpec, check_scene_images, inpaint_metadata
from mald_nerfstudio.errors import MaldInputError, install_run_hooks


@dataclass
class InpaintNerfstudioDataParserConfig(NerfstudioDataParserConfig):
    """nerfstudio transforms.json with per-frame inpaint_mask_path and object_free keys."""

    _target: Type = field(default_factory=lambda: InpaintNerfstudioDataParser)
    """Target class to instantiate."""
    mask_dilation_kernel: int = 5
    """Side of the square kernel used to dilate the inpainting masks."""
    mask_dilation_iterations: int = 0
    """Dilation iterations; 0 keeps the masks as drawn."""
    max_mask_fraction: float = 0.95
    """Reject any training mask covering at least this fraction of its image (after dilation)."""


@dataclass
class InpaintNerfstudioDataParser(Nerfstudio):
    """nerfstudio's parser plus inpainting masks and object-free evaluation views."""

    config: InpaintNerfstudioDataParserConfig
    """The parser's settings."""

    def __init__(self, config: InpaintNerfstudioDataParserConfig):
        install_run_hooks()  # our errors as paragraphs, our checkpoints on torch's safe loader
        super().__init__(config)
        self.config = config
        self._checked = False

    def _transforms_path(self) -> Path:
        data = Path(self.config.data)
        path = data if data.suffix == ".json" else data / "transforms.json"
        if not path.is_file():
            raise MaldInputError("transforms.json not found", path, "pass a nerfstudio-format scene folder")
        return path

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        json_path = self._transforms_path()
        try:
            meta = load_from_json(json_path)
        except ValueError as err:
            raise MaldInputError(f"not valid JSON ({err})", json_path, "fix the file's syntax") from None
        frames: List[Dict] = meta.get("frames") or []
        if not frames:
            raise MaldInputError("no frames listed", json_path, "list the views under \"frames\"")
        data_dir = json_path.parent
        check_no_repeated_frames(frames, data_dir, json_path)
        for frame in frames:
            matrix = np.asarray(frame.get("transform_matrix", []), dtype=np.float64)
            if matrix.shape not in ((4, 4), (3, 4)) or not np.isfinite(matrix).all():
                raise MaldInputError(
                    f"frame {frame.get('file_path')} has a transform_matrix that is not a finite 3x4/4x4 matrix",
                    json_path,
                    "re-run pose estimation for that view or remove the frame",
                )

        native_split = any(f"{s}_filenames" in meta for s in ("train", "val", "test"))
        if native_split:
            outputs = super()._generate_dataparser_outputs(split)
        else:
            saved = self.config.eval_mode
            self.config.eval_mode = "all"
            try:
                outputs = super()._generate_dataparser_outputs("train")
            finally:
                self.config.eval_mode = saved

        by_name = {self._get_fname(Path(f["file_path"]), data_dir): f for f in frames}
        ordered = [by_name[name] for name in outputs.image_filenames]
        object_free = np.array([bool(f.get("object_free", False)) for f in ordered])
        mask_files: List[Optional[Path]] = [
            (data_dir / f["inpaint_mask_path"]) if f.get("inpaint_mask_path") else None for f in ordered
        ]
        spec = InpaintMaskSpec(
            dilation_kernel=self.config.mask_dilation_kernel,
            dilation_iterations=self.config.mask_dilation_iterations,
            max_fraction=self.config.max_mask_fraction,
        )
        if not self._checked:
            check_scene_images(outputs.image_filenames, mask_files, ~object_free, spec, scene=json_path)
            folders = sorted({str(Path(f).parent) for f in outputs.image_filenames})
            CONSOLE.print(
                f"Reading {', '.join(folders)} (downscale factor {self.downscale_factor}): "
                f"{len(outputs.image_filenames)} images of {int(outputs.cameras.width[0])}x"
                f"{int(outputs.cameras.height[0])}, {int((~object_free).sum())} for training.",
                soft_wrap=True,
            )
            self._checked = True

        is_eval_split = split != "train"
        if native_split:
            selected = np.arange(len(ordered))
        else:
            selected = np.flatnonzero(object_free if is_eval_split else ~object_free)
            if not is_eval_split and selected.size == 0:
                raise MaldInputError(
                    "every frame is marked object_free, so there is nothing to train on",
                    json_path,
                    "mark only the object-free ground-truth views with \"object_free\": true",
                )
        idx = torch.from_numpy(selected).long()
        metadata = dict(outputs.metadata)
        if metadata.get("depth_filenames"):
            metadata["depth_filenames"] = [metadata["depth_filenames"][i] for i in selected]
        metadata.update(inpaint_metadata([mask_files[i] for i in selected], spec, object_free=is_eval_split))
        return replace(
            outputs,
            image_filenames=[outputs.image_filenames[i] for i in selected],
            cameras=outputs.cameras[idx],
            mask_filenames=[outputs.mask_filenames[i] for i in selected] if outputs.mask_filenames else None,
            metadata=metadata,
        )


def check_no_repeated_frames(frames: List[Dict], data_dir: Path, json_path: Path) -> None:
    """Refuse a transforms.json that lists one image under several frames (see docs/decisions.md, "Data")."""
    entries: Dict[str, List[int]] = {}
    for index, frame in enumerate(frames):
        if "file_path" in frame:
            entries.setdefault(os.path.normpath(data_dir / str(frame["file_path"])), []).append(index)
    repeated = [(frames[idx[0]]["file_path"], idx) for idx in entries.values() if len(idx) > 1]
    if not repeated:
        return
    described = []
    for file_path, idx in repeated[:3]:
        same = all(frames[i] == frames[idx[0]] for i in idx)
        kind = "identical copies" if same else "entries that differ"
        described.append(f"{file_path} in frames {', '.join(f'[{i}]' for i in idx)} ({kind})")
    more = f" and {len(repeated) - 3} more" if len(repeated) > 3 else ""
    raise MaldInputError(
        f"{len(repeated)} image(s) are listed more than once under \"frames\": {'; '.join(described)}{more}. Each "
        "entry would be trained on and inpainted as a view of its own, and entries that differ give one image two "
        "poses",
        json_path,
        "keep one entry per image (the one with the right transform_matrix) and delete the others; the file may have "
        "been merged from two captures",
    )
