"""LLFF ``poses_bounds.npy``: per-image 3x5 pose matrices plus near/far bounds.

Each row holds a 3x5 matrix flattened row-major: the camera-to-world rotation with columns in LLFF's
(down, right, backwards) order, the camera centre, and (height, width, focal) of the full-resolution images;
then the near and far depth bounds. We convert the rotation to OpenGL's (right, up, backwards), which nerfstudio
uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mald_nerfstudio.errors import MaldInputError

FAR_DEPTH_PERCENTILE = 90.0
"""Poses are scaled so that this percentile of the views' far depths lands at distance 1 (docs/decisions.md)."""


@dataclass
class LLFFPoses:
    """Poses in OpenGL convention plus the stored intrinsics and bounds."""

    camera_to_worlds: np.ndarray
    """[N, 3, 4] camera-to-world matrices, OpenGL axes."""
    hwf: np.ndarray
    """[N, 3] height, width and focal length of the full-resolution images."""
    bounds: np.ndarray
    """[N, 2] near and far depth bounds."""


def load_poses_bounds(path: Path, image_names: Sequence[str]) -> LLFFPoses:
    """Read and check ``poses_bounds.npy`` for the given (sorted) images."""
    path = Path(path)
    if not path.is_file():
        raise MaldInputError("poses file not found", path, "an LLFF / SPIn-NeRF scene needs poses_bounds.npy")
    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MaldInputError(f"cannot read the poses ({err})", path, "regenerate it with LLFF's imgs2poses") from None
    if raw.ndim != 2 or raw.shape[1] != 17:
        raise MaldInputError(
            f"expected an array of shape [N, 17] (3x5 pose + near/far per image), got {list(raw.shape)}",
            path,
            "regenerate it with LLFF's imgs2poses.py",
        )
    if raw.shape[0] != len(image_names):
        raise MaldInputError(
            f"it holds {raw.shape[0]} poses but the image folder holds {len(image_names)} images",
            path,
            "the poses and the images must correspond one to one in sorted file-name order; remove extra images "
            "or regenerate the poses",
        )
    bad = ~np.isfinite(raw).all(axis=1)
    if bad.any():
        names = ", ".join(image_names[i] for i in np.flatnonzero(bad)[:5])
        raise MaldInputError(
            f"poses contain NaN or infinite values for {int(bad.sum())} image(s) ({names})",
            path,
            "re-run pose estimation, or remove those images together with their rows",
        )
    mats = raw[:, :15].reshape(-1, 3, 5).astype(np.float64)
    rot_llff, centre, hwf = mats[:, :, :3], mats[:, :, 3:4], mats[:, :, 4]
    # LLFF columns are (down, right, back); OpenGL wants (right, up, back) = (col1, -col0, col2).
    rot_gl = np.stack([rot_llff[:, :, 1], -rot_llff[:, :, 0], rot_llff[:, :, 2]], axis=-1)
    return LLFFPoses(
        camera_to_worlds=np.concatenate([rot_gl, centre], axis=-1),
        hwf=hwf,
        bounds=raw[:, 15:17].astype(np.float64),
    )


def far_depth_scale(far_depths: np.ndarray, percentile: float) -> float:
    """The scale that puts the ``percentile``-th percentile of the views' far depths at distance 1: forward-facing
    content then sits in nerfacto's un-contracted unit box (docs/decisions.md, "Pose normalisation for LLFF")."""
    return 1.0 / max(float(np.percentile(far_depths, percentile)), 1e-8)
