"""Reading the user's images and masks, with clear errors instead of stack traces.

Images are decoded once with PIL (any format PIL reads: PNG, JPEG, ...).

Inpainting masks are read as the user drew them, whatever the file's encoding (see docs/decisions.md, "Reading
masks"): a pixel's *level* is its largest colour channel (so a red or a white object on black both count) or, when
the file has an alpha channel that is not constant, its alpha. The object is every pixel whose level is at least
half the mask's brightest level, which reads 0/1, 0/100, 0/255 and 16-bit 0/65535 masks alike and ignores JPEG
noise around 0. A file that is not a two-level mask (a photo, a depth map, a soft matte) is refused with the
levels found.

Folders of images and masks are listed with :func:`list_images`: files whose name starts with ``.`` (macOS's
``.DS_Store`` and ``._*`` resource forks) and files without an image suffix (``Thumbs.db``, ``desktop.ini``,
notes) are not views; :func:`note_ignored_files` says which ones were skipped, in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Tuple, TypeVar

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from nerfstudio.utils.rich_utils import CONSOLE

from mald_nerfstudio.errors import MaldInputError

T = TypeVar("T")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
"""File suffixes (any case) read as images and masks."""


def is_image_file(path: Path) -> bool:
    """A file read as an image or mask: an image suffix and not hidden (a name starting with '.')."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> List[Path]:
    """The images of a folder (by suffix, any case; hidden files left out), sorted by file name."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p))


def ignored_files(folder: Path) -> List[Path]:
    """The files of a folder that :func:`list_images` leaves out (hidden or not images), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not is_image_file(p))


def _printable(name: str) -> str:
    """A file name fit for one line of output (macOS's "Icon\\r" holds a carriage return)."""
    return "".join(c if c.isprintable() else "?" for c in name)


def note_ignored_files(folder: Path) -> None:
    """Print one line naming the hidden and non-image files of ``folder`` that are skipped (nothing if none)."""
    folder = Path(folder)
    skipped = ignored_files(folder) if folder.is_dir() else []
    if skipped:
        names = ", ".join(_printable(p.name) for p in skipped[:5])
        names += f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        CONSOLE.print(
            f"Note: ignoring {len(skipped)} hidden or non-image file(s) in {folder}: {names}.",
            markup=False, highlight=False, soft_wrap=True,
        )


def _decode(path: Path, convert: Callable[[Image.Image], T], what: str, fix: str) -> T:
    """Open an image file with PIL and ``convert`` it; missing or unreadable files become input errors."""
    if not path.is_file():
        raise MaldInputError(f"{what} not found", path, fix)
    try:
        with Image.open(path) as pil:
            pil.load()
            return convert(pil)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise MaldInputError(
            f"this {what} cannot be decoded ({type(err).__name__}: {err}); the file is corrupt or not an image",
            path,
            fix,
        ) from None


IMAGE_FIX = "replace it with a valid image (PNG or JPEG), or remove the view from the scene"

TRANSPARENT_BELOW = 128
"""Alpha (of 255) below which a pixel of a training image is not observed (see docs/decisions.md, "Data")."""


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to uint8 [H, W, 3] (grey is repeated, alpha is dropped: see :func:`read_transparent`)."""
    return _decode(Path(path), lambda pil: np.asarray(pil.convert("RGB"), dtype=np.uint8), "image", IMAGE_FIX)


def _has_alpha(pil: Image.Image) -> bool:
    return "A" in pil.getbands() or "a" in pil.getbands() or "transparency" in pil.info


def read_transparent(path: Path) -> Optional[np.ndarray]:
    """Bool [H, W]: the pixels of an image that are less than half opaque (alpha < :data:`TRANSPARENT_BELOW`);
    None when the file has no alpha channel or transparent colour (then nothing is decoded)."""
    path = Path(path)
    try:
        with Image.open(path) as pil:  # reads the header only
            if not _has_alpha(pil):
                return None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        pass  # reported with the file's name by _decode
    alpha = _decode(path, lambda pil: np.asarray(pil.convert("RGBA"), dtype=np.uint8)[..., 3], "image", IMAGE_FIX)
    return alpha < TRANSPARENT_BELOW


MASK_FIX = "write the mask as a PNG of the same size as its image, 0 (or black) outside the object and 1 or 255 on it"

AMBIGUOUS_LIMIT = 0.35
"""Largest share of a mask's non-background pixels whose level lies between 25 % and 75 % of its brightest level."""


def _levels_of(pil: Image.Image) -> Tuple[np.ndarray, str]:
    if pil.mode in ("I", "F") or pil.mode.startswith("I;16"):
        return np.asarray(pil).astype(np.float64).clip(min=0), "colour"
    has_alpha = "A" in pil.getbands() or "transparency" in pil.info
    pixels = np.asarray(pil.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)
    if has_alpha and pixels[..., 3].min() != pixels[..., 3].max():
        return pixels[..., 3], "alpha"
    return pixels[..., :3].max(axis=-1), "colour"


def mask_levels(path: Path) -> Tuple[np.ndarray, str]:
    """A mask file's per-pixel levels (int or float [H, W]) and where they come from ("colour" or "alpha")."""
    return _decode(Path(path), _levels_of, "inpainting mask", MASK_FIX)


def binarize_mask(levels: np.ndarray, source: str, path: Path) -> np.ndarray:
    """Object pixels of a mask: level >= half the brightest level; a mask that is not two-level is an error."""
    top = float(levels.max(initial=0))
    if top <= 0:
        return np.zeros(levels.shape, dtype=bool)
    not_background = levels > 0.25 * top
    if top >= 4:  # below that the levels are 0/1 plus JPEG rounding and cannot be told apart
        ambiguous = float(np.count_nonzero(not_background & (levels < 0.75 * top))) / np.count_nonzero(not_background)
        if ambiguous > AMBIGUOUS_LIMIT:
            distinct = np.unique(levels)
            raise MaldInputError(
                f"this inpainting mask is not a two-level mask: its {source} holds {len(distinct)} distinct values "
                f"from {distinct[0]:g} to {top:g}, and {ambiguous:.0%} of its non-background pixels lie between 25% "
                "and 75% of the brightest value (it looks like a photo, a depth map or a soft matte, not 0/1 or "
                "0/255)",
                path,
                MASK_FIX,
            )
    return levels >= 0.5 * top


def read_mask(path: Path, image_hw: Tuple[int, int]) -> np.ndarray:
    """Read an inpainting mask for an image of size ``image_hw`` (H, W) as bool [H, W] (True = inpaint).

    A mask at an exact integer multiple or fraction of the image's size (the same factor on both axes, as
    between ``images/`` and ``images_N/``) is resized with nearest-neighbour sampling; any other size is an error.
    """
    path = Path(path)
    levels, source = mask_levels(path)
    mask = binarize_mask(levels, source, path)
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


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    """Write a bool [H, W] mask as an 8-bit PNG (0 / 255), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
