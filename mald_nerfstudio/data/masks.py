"""Inpainting-mask processing shared by the data parsers: dilation and sanity checks.

SPIn-NeRF dilates its object masks with a 5x5 kernel for 5 iterations so that the object's soft edge and
shadow fall inside the mask; the parsers expose the same two numbers (see docs/decisions.md for the defaults).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mald_nerfstudio.errors import MaldInputError


def dilate(mask: np.ndarray, kernel_size: int, iterations: int) -> np.ndarray:
    """Binary dilation with a square kernel; a no-op when ``iterations`` or ``kernel_size`` is 0."""
    if iterations <= 0 or kernel_size <= 1 or not mask.any():
        return mask
    kernel = np.ones((kernel_size, kernel_size), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel, iterations=iterations).astype(bool)


def check_coverage(mask: np.ndarray, path: Path, max_fraction: float) -> None:
    """Reject masks that leave almost nothing observed: nothing would anchor the fill to the scene."""
    fraction = float(mask.mean()) if mask.size else 0.0
    if fraction >= max_fraction:
        raise MaldInputError(
            f"the mask covers {fraction:.0%} of its image (limit {max_fraction:.0%}, after dilation); too little "
            "of the view is observed to reconstruct the scene around the hole",
            path,
            "check that the mask is not inverted (nonzero must mark the object to remove), or drop this view",
        )
