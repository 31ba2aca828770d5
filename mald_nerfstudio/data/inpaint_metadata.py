"""What the data parsers hand to the datamanager about inpainting masks, and the scene checks they share.

Parsers put the per-view mask files and the mask-processing settings into ``DataparserOutputs.metadata``; the
dataset loads the masks with :func:`load_view_mask`. All checks that need to decode files (corrupt images, mask
sizes, mask coverage) run here, once per scene, before training starts, so bad input fails early with a
message that names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from mald_nerfstudio.data.image_io import read_mask, read_rgb, read_transparent
from mald_nerfstudio.data.masks import check_coverage, dilate
from mald_nerfstudio.errors import MaldInputError

MASK_FILES_KEY = "inpaint_mask_filenames"
MASK_SPEC_KEY = "inpaint_mask_spec"
OBJECT_FREE_KEY = "object_free_views"


@dataclass(frozen=True)
class InpaintMaskSpec:
    """How masks are processed after reading."""

    dilation_kernel: int = 5
    """Square dilation kernel side."""
    dilation_iterations: int = 0
    """Dilation iterations (0 = none)."""
    max_fraction: float = 0.95
    """Training masks covering at least this fraction of the image are rejected."""


def inpaint_metadata(mask_files: Sequence[Optional[Path]], spec: InpaintMaskSpec, object_free: bool) -> Dict:
    """The metadata entries a parser returns for one split."""
    return {MASK_FILES_KEY: list(mask_files), MASK_SPEC_KEY: spec, OBJECT_FREE_KEY: object_free}


def load_view_mask(path: Optional[Path], image_hw: Tuple[int, int], spec: InpaintMaskSpec) -> np.ndarray:
    """Bool [H, W] inpainting mask of a view (all False when the view has no mask file)."""
    if path is None:
        return np.zeros(image_hw, dtype=bool)
    return dilate(read_mask(path, image_hw), spec.dilation_kernel, spec.dilation_iterations)


def check_scene_images(
    images: Sequence[Path],
    masks: Sequence[Optional[Path]],
    is_train: Sequence[bool],
    spec: InpaintMaskSpec,
    scene: Path,
) -> None:
    """Decode every image and mask once: readable, one image size per scene, masks fit and leave enough observed,
    and at least one training view has something to inpaint (``scene`` is named when none has). A training image's
    transparent pixels count as masked (not observed), as :class:`~mald_nerfstudio.data.dataset.InpaintDataset`
    treats them."""
    first_hw: Optional[Tuple[int, int]] = None
    first_name = ""
    train_masks = nonempty_train_masks = 0
    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), transient=True
    ) as progress:
        task = progress.add_task("[green]Checking scene images and masks", total=len(images))
        for image_path, mask_path, train in zip(images, masks, is_train):
            hw = read_rgb(image_path).shape[:2]
            if first_hw is None:
                first_hw, first_name = hw, Path(image_path).name
            elif hw != first_hw:
                raise MaldInputError(
                    f"image is {hw[1]}x{hw[0]} but {first_name} is {first_hw[1]}x{first_hw[0]}; all views of a scene "
                    "must have the same size",
                    image_path,
                    "resize or remove the odd view",
                )
            mask = load_view_mask(mask_path, hw, spec)
            if train:
                if mask_path is not None:
                    check_coverage(mask, Path(mask_path), spec.max_fraction)
                transparent = read_transparent(image_path)
                if transparent is not None and transparent.any():
                    mask = mask | transparent  # not observed: inpainted like the mask (see InpaintDataset)
                    check_transparent_coverage(mask, transparent, Path(image_path), spec.max_fraction)
                train_masks += int(mask_path is not None)
                nonempty_train_masks += int(mask.any())
            progress.advance(task)
    if nonempty_train_masks == 0:
        found = (
            f"all {train_masks} training masks are empty (no pixel at any level above 0 in any colour channel or alpha)"
            if train_masks
            else "no training view has an inpainting mask"
        )
        raise MaldInputError(
            f"{found}, so there is nothing to remove: training would give a plain NeRF with the object still there",
            scene,
            "give each training view a mask that marks the object to remove (any nonzero value, colour or alpha; see "
            "README.md, 'Data layouts'), or train plain nerfacto if there is nothing to remove",
        )


def check_transparent_coverage(unobserved: np.ndarray, transparent: np.ndarray, image: Path, limit: float) -> None:
    """Reject a training view whose transparent pixels and mask together (``unobserved``) leave almost nothing
    observed; ``limit`` is the largest unobserved fraction allowed (the mask limit)."""
    fraction = float(unobserved.mean())
    if fraction >= limit:
        raise MaldInputError(
            f"{transparent.mean():.0%} of this image is transparent (alpha below half, so not observed) and with its "
            f"inpainting mask {fraction:.0%} of it is unobserved (limit {limit:.0%}); too little of the view "
            "is observed to reconstruct the scene around the hole",
            image,
            "save the image without transparency (flattened onto its background), or remove the view from the scene",
        )


def masks_of(metadata: Dict) -> Tuple[List[Optional[Path]], InpaintMaskSpec]:
    """Mask files and spec from a dataparser's metadata (empty when the parser gave none)."""
    return list(metadata.get(MASK_FILES_KEY) or []), metadata.get(MASK_SPEC_KEY) or InpaintMaskSpec()
