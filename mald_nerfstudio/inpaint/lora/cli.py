"""The ``mald-nerf-customize`` command: LoRA-customise the inpainting model on a scene given as image folders."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from mald_nerfstudio.data.image_io import binarize_mask, list_images, mask_levels, note_ignored_files, read_rgb
from mald_nerfstudio.errors import MaldInputError, install_run_hooks
from mald_nerfstudio.inpaint.ldm import LDMInpainterConfig
from mald_nerfstudio.inpaint.lora.training import customize


def read_scene_folders(images_dir: Path, masks_dir: Path) -> Tuple[Tensor, Tensor, List[str]]:
    """Images ``[B, H, W, 3]`` in ``[0, 1]`` and masks ``[B, H, W]`` (nonzero = object) from two folders.

    Each image needs a mask of the same file name (or the same stem with ``.png``) and the same size.
    """
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise MaldInputError("folder not found", path=folder, fix="pass existing --images and --masks folders")
    image_files = list_images(images_dir)  # hidden files (.DS_Store, ._*) and non-images are skipped with a note
    if not image_files:
        raise MaldInputError("no images (PNG, JPEG, ...) in the images folder", path=images_dir)
    note_ignored_files(images_dir)
    note_ignored_files(masks_dir)
    images, masks = [], []
    for image_file in image_files:
        candidates = [masks_dir / image_file.name, masks_dir / f"{image_file.stem}.png"]
        mask_file = next((p for p in candidates if p.is_file()), None)
        if mask_file is None:
            raise MaldInputError(
                f"image {image_file.name} has no mask",
                path=masks_dir,
                fix=f"add {image_file.stem}.png (nonzero = object)",
            )
        image = read_rgb(image_file).astype(np.float32) / 255.0
        levels, source = mask_levels(mask_file)
        mask = binarize_mask(levels, source, mask_file)
        if mask.shape != image.shape[:2]:
            raise MaldInputError(
                f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image size {image.shape[1]}x{image.shape[0]}",
                path=mask_file,
            )
        images.append(torch.from_numpy(image))
        masks.append(torch.from_numpy(mask))
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise MaldInputError(f"all images must have the same size, found {sorted(shapes)}", path=images_dir)
    return torch.stack(images), torch.stack(masks), [p.name for p in image_files]


@dataclass
class CustomizeCommand:
    """Customise the inpainting diffusion model on one scene and print the adapter folder."""

    images: Path
    """Folder of the scene's training images (PNG/JPEG)."""
    masks: Path
    """Folder of object masks with the images' file names (PNG; nonzero = object to remove)."""
    ldm: LDMInpainterConfig = field(default_factory=LDMInpainterConfig)
    """The base diffusion model, its scene token and its customisation settings (--ldm.customization.*)."""
    device: Optional[str] = None
    """Device to train on; None = CUDA when available, else CPU."""

    def main(self) -> Path:
        """Run the customisation; return (and print) the adapter folder."""
        images, masks, _ = read_scene_folders(self.images, self.masks)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        inpainter = self.ldm.setup(device=device)
        inpainter.check_available()
        adapter = customize(inpainter, images, masks, self.ldm.customization)
        print(adapter)
        return adapter


def entrypoint() -> None:
    """Console entry point of ``mald-nerf-customize``."""
    import tyro

    install_run_hooks()
    tyro.cli(CustomizeCommand).main()
