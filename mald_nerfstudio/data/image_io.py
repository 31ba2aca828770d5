"""Reading the user's images and masks, with clear errors instead of stack traces.

Images are decoded once with PIL (any format PIL reads: PNG, JPEG, ...). Inpainting masks are 8-bit images
where nonzero marks the region to inpaint: masks stored as 0/1 and as 0/255 both work (values are thresholded
at 1 when the file's maximum is 1, otherwise at 128, so JPEG noise around 0 is ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from mald_nerfstudio.errors import MaldInputError


def _decode(path: Path, mode: str, what: str, fix: str) -> np.ndarray:
    """Decode an image file with PIL into ``mode`` ("RGB" or "L"); unreadable files become input errors."""
    if not path.is_file():
        raise MaldInputError(f"{what} not found", path, fix)
    try:
        with Image.open(path) as pil:
            pil.load()
            return np.asarray(pil.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise MaldInputError(
            f"this {what} cannot be decoded ({type(err).__name__}: {err}); the file is corrupt or not an image",
            path,
            fix,
        ) from None


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to uint8 [H, W, 3] (grey is repeated, alpha is dropped)."""
    return _decode(
        Path(path), "RGB", "image", "replace it with a valid image (PNG or JPEG), or remove the view from the scene"
    )


def read_mask(path: Path, image_hw: Tuple[int, int]) -> np.ndarray:
    """Read an inpainting mask for an image of size ``image_hw`` (H, W) as bool [H, W].

    A mask at an exact integer multiple or fraction of the image's size (the same factor on both axes, as
    between ``images/`` and ``images_N/``) is resized with nearest-neighbour sampling; any other size is an error.
    """
    path = Path(path)
    values = _decode(
        path,
        "L",
        "inpainting mask",
        "write the mask as an 8-bit PNG, same size as its image, nonzero where the object to remove is",
    )
    mask = values >= (1 if values.max(initial=0) <= 1 else 128)
    height, width = image_hw
    if mask.shape != (height, width):
        if not _is_exact_rescale(mask.shape, (height, width)):
            raise MaldInputError(
                f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {width}x{height} (width x height), "
                "and that is not an exact downscale",
                path,
                f"resize the mask to {width}x{height} with nearest-neighbour interpolation",
            )
        mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    return mask


def _is_exact_rescale(shape_a: Tuple[int, int], shape_b: Tuple[int, int]) -> bool:
    """True when one size is the other divided by the same integer on both axes (LLFF's rounding allowed)."""
    (ha, wa), (hb, wb) = shape_a, shape_b
    big, small = ((ha, wa), (hb, wb)) if ha * wa >= hb * wb else ((hb, wb), (ha, wa))
    if small[0] == 0 or small[1] == 0:
        return False
    factor = round(big[1] / small[1])
    if factor < 1 or round(big[0] / factor) != small[0] or round(big[1] / factor) != small[1]:
        return False
    return abs(big[0] / small[0] - factor) < 0.05 * factor and abs(big[1] / small[1] - factor) < 0.05 * factor
