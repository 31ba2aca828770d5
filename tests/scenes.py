"""Test scenes built at test time from ../shared/data (never copied into the repository)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FERN = SHARED / "data" / "llff-fern"


def require_fern() -> Path:
    """The real LLFF capture, or skip the calling test with the reason."""
    if not (FERN / "poses_bounds.npy").is_file():
        pytest.skip(f"real LLFF capture not found at {FERN} (../shared is absent)")
    return FERN


def project_box_masks(poses_bounds: np.ndarray, width: int, height: int, box_scale: float = 0.12) -> np.ndarray:
    """Masks [N, H, W] of one 3D box projected through every pose, so they agree across views.

    The box sits on the mean viewing ray at the middle of the near/far bounds, with a half-size of
    ``box_scale`` times that depth.
    """
    mats = poses_bounds[:, :15].reshape(-1, 3, 5)
    full_h, full_w, focal = mats[0, :, 4]
    rot = np.stack([mats[:, :, 1], -mats[:, :, 0], mats[:, :, 2]], axis=-1)  # LLFF -> OpenGL axes
    centres = mats[:, :, 3]
    forward = -rot[:, :, 2].mean(axis=0)
    forward /= np.linalg.norm(forward)
    depth = float(np.median(poses_bounds[:, 15:17].mean(axis=1))) * 0.6
    centre = centres.mean(axis=0) + forward * depth
    half = box_scale * depth
    corners = centre + half * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    f = focal * width / full_w
    masks = np.zeros((len(mats), height, width), dtype=np.uint8)
    for i in range(len(mats)):
        cam = (corners - centres[i]) @ rot[i]  # world -> camera (OpenGL: x right, y up, z back)
        u = width / 2 + f * cam[:, 0] / -cam[:, 2]
        v = height / 2 - f * cam[:, 1] / -cam[:, 2]
        hull = cv2.convexHull(np.stack([u, v], axis=-1).astype(np.float32)).astype(np.int32)
        cv2.fillConvexPoly(masks[i], hull, 1)
    return masks


def build_fern_spinnerf_scene(out: Path, factor: int = 2, box_scale: float = 0.12,
                              num_views: Optional[int] = None) -> Path:
    """A SPIn-NeRF-layout scene from the real fern capture: images_<factor>/ + label/ + poses_bounds.npy."""
    fern = require_fern()
    images = sorted((fern / "images_8").glob("*.png"))
    poses = np.load(fern / "poses_bounds.npy")
    if num_views is not None:
        images, poses = images[:num_views], poses[:num_views]
    folder = out / f"images_{factor}"
    (folder / "label").mkdir(parents=True)
    for path in images:
        shutil.copyfile(path, folder / path.name)
    height, width = cv2.imread(str(images[0])).shape[:2]
    for path, mask in zip(images, project_box_masks(poses, width, height, box_scale)):
        cv2.imwrite(str(folder / "label" / path.name), mask * 255)
    np.save(out / "poses_bounds.npy", poses)
    return out
