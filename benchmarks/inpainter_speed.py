"""Seconds per view of the offline inpainters (exemplar shift-map and OpenCV Telea) on 320x240 views.

Masks are object-sized ellipses covering about 5%, 11% (the headline number) and 20% of the view; each view of a
batch gets its own seed, as in training. Prints wall-clock and process CPU seconds per view (on a shared machine
the CPU figure is the one that does not depend on other jobs). Not a test.

    python benchmarks/inpainter_speed.py [--views 8] [--image path/to/photo.png]

Without ``--image`` the first LLFF fern photo from the shared data folder beside the repo is used when present,
else a seeded random texture.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from mald_nerfstudio.inpaint.exemplar import ExemplarInpainterConfig
from mald_nerfstudio.inpaint.telea import TeleaInpainterConfig

HEIGHT, WIDTH = 240, 320
DEFAULT_IMAGE = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llff-fern" / "images_8" / "image000.png"
)


def load_view(path: Optional[Path]) -> tuple[np.ndarray, str]:
    """A 320x240 float RGB view and a description of where it came from."""
    path = path or (DEFAULT_IMAGE if DEFAULT_IMAGE.is_file() else None)
    if path is None:
        rng = np.random.default_rng(0)
        noise = rng.random((HEIGHT // 4, WIDTH // 4, 3)).astype(np.float32)
        view = cv2.resize(noise, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST)
        return np.clip(view + rng.normal(0, 0.05, view.shape).astype(np.float32), 0, 1), "random blocky texture"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read image {path}")
    rgb = cv2.cvtColor(cv2.resize(bgr, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return rgb.astype(np.float32) / 255.0, str(path)


def ellipse_mask(area_fraction: float) -> np.ndarray:
    """Centred ellipse (taller than wide, like an object) covering ``area_fraction`` of the view."""
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    semi_w = np.sqrt(area_fraction * HEIGHT * WIDTH / (np.pi * 1.375))
    semi_h = 1.375 * semi_w
    return ((rows - HEIGHT / 2) / semi_h) ** 2 + ((cols - WIDTH / 2) / semi_w) ** 2 < 1.0


def time_per_view(inpainter, images: torch.Tensor, masks: torch.Tensor) -> tuple[float, float]:
    """(wall, CPU) seconds per view for one batched call, after one warm-up view."""
    inpainter.inpaint(images[:1], masks[:1])
    wall, cpu = time.perf_counter(), time.process_time()
    inpainter.inpaint(images, masks, seeds=list(range(len(images))))
    n = len(images)
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


def main() -> None:
    """Parse arguments, time both inpainters for each mask size, print one line per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=8, help="views per timed batch")
    parser.add_argument("--image", type=Path, default=None, help="photo to use (resized to 320x240)")
    args = parser.parse_args()
    view, source = load_view(args.image)
    print(f"320x240 views from {source}; {args.views} views per batch; OpenCV threads: {cv2.getNumThreads()}")
    inpainters = {"exemplar": ExemplarInpainterConfig().setup(), "telea": TeleaInpainterConfig().setup()}
    for fraction in (0.05, 0.11, 0.20):
        mask = ellipse_mask(fraction)
        images = torch.from_numpy(view)[None].repeat(args.views, 1, 1, 1)
        masks = torch.from_numpy(mask)[None].repeat(args.views, 1, 1)
        for name, inpainter in inpainters.items():
            wall, cpu = time_per_view(inpainter, images, masks)
            print(f"mask {mask.mean():5.1%}  {name:8s}  {wall:6.3f} s/view wall  {cpu:6.3f} s/view CPU")


if __name__ == "__main__":
    main()
