"""Data parser for scenes in the SPIn-NeRF / LLFF layout, read as they are distributed.

Layout::

    scene/
      poses_bounds.npy            LLFF poses (3x5 + near/far per image) for the full-resolution images
      images/                     full-resolution images (factor 1)
      images_N/                   images downscaled by N (e.g. images_4/ at SPIn-NeRF's working resolution)
      images_N/label/<name>       inpainting masks, same file names (read as in :mod:`~mald_nerfstudio.data.image_io`)

Images are sorted by file name. The first ``num_test_views`` were captured without the object and serve only as
ground truth for evaluation (when not given: mald_scene.json, the labels, or SPIn-NeRF's 40; see
:mod:`~mald_nerfstudio.data.object_free_views`); the rest are the training views and each must have a mask. A mask
found for a test view is used for the masked metrics (M-LPIPS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional, Tuple, Type

import numpy as np
import torch
from nerfstudio.cameras import camera_utils
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image

from mald_nerfstudio.data.image_io import list_images, note_ignored_files, read_rgb
from mald_nerfstudio.data.inpaint_metadata import InpaintMaskSpec, check_scene_images, inpaint_metadata
from mald_nerfstudio.data.llff_poses import FAR_DEPTH_PERCENTILE, far_depth_scale, load_poses_bounds
from mald_nerfstudio.data.object_free_views import object_free_views
from mald_nerfstudio.errors import MaldInputError, install_run_hooks


@dataclass
class SpinNerfDataParserConfig(DataParserConfig):
    """SPIn-NeRF / LLFF scene folder: poses_bounds.npy, images_N/ and masks in images_N/label/."""

    _target: Type = field(default_factory=lambda: SpinNerfDataParser)
    """Target class to instantiate."""
    data: Path = Path()
    """Scene folder (holds poses_bounds.npy and images/ or images_N/)."""
    downscale_factor: Optional[int] = None
    """Read images_N/ (images/ for 1); None: the smallest N whose folder exists within max_long_edge."""
    max_long_edge: int = 1008
    """Long-edge limit used when downscale_factor is None."""
    num_test_views: Optional[int] = None
    """The first K images (sorted by name) are object-free eval views; None: mald_scene.json, the labels, or 40."""
    mask_dilation_kernel: int = 5
    """Side of the square kernel used to dilate the masks (SPIn-NeRF: 5)."""
    mask_dilation_iterations: int = 5
    """Dilation iterations (SPIn-NeRF: 5, at factor 4); 0 keeps the masks as drawn."""
    max_mask_fraction: float = 0.95
    """Reject any training mask covering at least this fraction of its image (after dilation)."""
    scene_scale: float = 1.0
    """Half-size of the scene box after normalisation; content outside it is handled by scene contraction."""
    orientation_method: Literal["pca", "up", "vertical", "none"] = "up"
    """How to orient the poses: 'up', 'pca', 'vertical' or 'none' (nerfstudio's camera_utils)."""
    center_method: Literal["poses", "focus", "none"] = "poses"
    """How to centre the poses: 'poses', 'focus' or 'none'."""
    depth_for_unit_scale: float = FAR_DEPTH_PERCENTILE
    """Poses are scaled so that this percentile of the LLFF far bounds lands at distance 1 (see decisions.md)."""


@dataclass
class SpinNerfDataParser(DataParser):
    """Reads a SPIn-NeRF / LLFF scene folder without any conversion step."""

    config: SpinNerfDataParserConfig
    """The parser's settings."""

    def __init__(self, config: SpinNerfDataParserConfig):
        install_run_hooks()  # our errors as paragraphs, our checkpoints on torch's safe loader
        super().__init__(config)
        self.config = config
        self._checked = False

    def _image_dir(self) -> Tuple[Path, int]:
        data = Path(self.config.data)
        if not data.is_dir():
            raise MaldInputError("scene folder not found", data, "pass the folder that holds poses_bounds.npy")
        folders = sorted(
            [(1, data / "images")] + [(int(p.name[7:]), p) for p in data.glob("images_*") if p.name[7:].isdigit()]
        )
        candidates = [(f, p) for f, p in folders if p.is_dir() and list_images(p)]
        others = ", ".join(f"{p.name}/" for _, p in candidates) or "none"
        if self.config.downscale_factor is not None:
            factor = int(self.config.downscale_factor)
            folder = data / ("images" if factor == 1 else f"images_{factor}")
            if not folder.is_dir():
                raise MaldInputError(
                    f"no {folder.name}/ folder for --downscale-factor {factor} (folders with images: {others})",
                    data,
                    "choose a factor whose images_N/ folder exists, or create it by downscaling images/",
                )
            if not list_images(folder):
                raise MaldInputError(
                    f"{folder.name}/ holds no images, but --downscale-factor {factor} asks for them (folders with "
                    f"images: {others})",
                    folder,
                    f"put the images at that resolution into {folder.name}/, or choose the factor of a folder that "
                    "has them",
                )
            return folder, factor
        if not candidates:
            raise MaldInputError("no images/ or images_N/ folder with images", data, "check the scene folder")
        empty = [p.name for _, p in folders if p.is_dir() and not list_images(p)]
        if empty:
            CONSOLE.print(f"[bold yellow]Skipping {', '.join(n + '/' for n in empty)}: no images in it.")
        for factor, folder in candidates:
            # read_rgb, not a bare PIL open: a corrupt first image must give the user-facing error.
            if max(read_rgb(list_images(folder)[0]).shape[:2]) <= self.config.max_long_edge:
                return folder, factor
        return candidates[-1][1], candidates[-1][0]

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        image_dir, factor = self._image_dir()
        files = list_images(image_dir)
        names = [f.name for f in files]
        resolved = object_free_views(Path(self.config.data), self.config.num_test_views)
        k = resolved.count
        if not self._checked and self.config.num_test_views is None:
            CONSOLE.print(f"Object-free views: {k} ({resolved.reason}).", soft_wrap=True)
        if not 0 <= k < len(files):
            raise MaldInputError(
                f"--num-test-views {k} leaves no training views ({len(files)} images in {image_dir.name}/)",
                image_dir,
                "use a smaller --num-test-views (SPIn-NeRF scenes: 40 of 100)",
            )
        poses = load_poses_bounds(Path(self.config.data) / "poses_bounds.npy", names)
        label_dir = image_dir / "label"
        if not self._checked:  # .DS_Store, Thumbs.db, notes: said once, then left alone
            note_ignored_files(image_dir)
            note_ignored_files(label_dir)
        is_train = np.arange(len(files)) >= k
        spec = InpaintMaskSpec(
            dilation_kernel=self.config.mask_dilation_kernel,
            dilation_iterations=self.config.mask_dilation_iterations,
            max_fraction=self.config.max_mask_fraction,
        )
        label_files = list_images(label_dir) if label_dir.is_dir() else []
        mask_files: List[Optional[Path]] = []
        for name, train in zip(names, is_train):
            candidate = label_dir / name
            if not candidate.exists():
                same_stem = [p for p in label_files if p.stem == Path(name).stem]
                candidate = same_stem[0] if same_stem else candidate
            if candidate.exists():
                mask_files.append(candidate)
            elif train:
                raise MaldInputError(
                    f"training image {name} has no inpainting mask (looked for {candidate})",
                    image_dir / name,
                    f"add {label_dir.name}/{name} (8-bit, nonzero = region to inpaint; an all-zero mask is fine "
                    f"for a view with nothing to remove), or if it is an object-free test view raise "
                    f"--num-test-views (now {k})",
                )
            else:
                mask_files.append(None)
        if label_dir.is_dir():
            stems = {Path(n).stem for n in names}
            orphans = [p.name for p in label_files if p.stem not in stems]
            if orphans:
                raise MaldInputError(
                    f"{len(orphans)} mask(s) have no image of the same name ({', '.join(orphans[:5])}): the images, "
                    "masks and poses do not correspond",
                    label_dir,
                    "remove the stray masks or restore their images (and their rows in poses_bounds.npy)",
                )
        if not self._checked:
            check_scene_images(files, mask_files, is_train, spec, scene=label_dir)
            with Image.open(files[0]) as first:
                CONSOLE.print(
                    f"Reading {image_dir} (downscale factor {factor}): {len(files)} images of "
                    f"{first.size[0]}x{first.size[1]}, {int(is_train.sum())} for training.",
                    soft_wrap=True,
                )
            self._checked = True

        c2w = torch.eye(4).repeat(len(files), 1, 1)
        c2w[:, :3, :4] = torch.from_numpy(poses.camera_to_worlds).float()
        c2w, transform = camera_utils.auto_orient_and_center_poses(
            c2w, method=self.config.orientation_method, center_method=self.config.center_method
        )
        scale = far_depth_scale(poses.bounds[:, 1], self.config.depth_for_unit_scale)
        c2w[:, :3, 3] *= scale

        with Image.open(files[0]) as first:
            width, height = first.size
        full_h, full_w, focal = poses.hwf[0]
        focal_px = focal * width / full_w
        if abs(full_h / full_w - height / width) > 0.02:
            CONSOLE.print(
                f"[bold yellow]Warning: {image_dir.name}/ images are {width}x{height} but poses_bounds.npy describes "
                f"{int(full_w)}x{int(full_h)}: the aspect ratios differ, so the intrinsics may be wrong."
            )

        indices = np.flatnonzero(is_train if split == "train" else ~is_train)
        idx = torch.from_numpy(indices).long()
        cameras = Cameras(
            camera_to_worlds=c2w[idx, :3, :4],
            fx=focal_px,
            fy=focal_px,
            cx=width / 2.0,
            cy=height / 2.0,
            width=width,
            height=height,
            camera_type=CameraType.PERSPECTIVE,
        )
        s = self.config.scene_scale
        return DataparserOutputs(
            image_filenames=[files[i] for i in indices],
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-s, -s, -s], [s, s, s]], dtype=torch.float32)),
            dataparser_scale=scale,
            dataparser_transform=transform,
            metadata=inpaint_metadata([mask_files[i] for i in indices], spec, object_free=split != "train"),
        )
