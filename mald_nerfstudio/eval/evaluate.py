"""Scoring a trained pipeline on its object-free evaluation views (what ``ns-eval`` runs).

Every evaluation view is rendered once; per-image metrics (PSNR, SSIM, their in-mask variants, LPIPS, M-LPIPS)
are averaged with a NaN-aware mean (a view with an empty mask has no in-mask value), and the set metrics (the
patch SWDs, FID, KID and the border-crop variants C-FID, C-KID) compare all renders with all ground-truth views.
``m_rgb_swd`` is listed per image (each view alone) but reported for the scene as a set metric, pooled over the
views like ``m_swd``, not as the mean of the per-image values.

The masked metrics need the masks of the object-free views (where the object stands in them). When no view has
one, they are left out of the results and listed under ``unavailable_metrics`` with the reason and where the
scene's layout expects the mask files, never reported as NaN.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torchvision.utils as vutils
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.utils.rich_utils import CONSOLE

from mald_nerfstudio.data.auto_dataparser import MaldDataParser
from mald_nerfstudio.data.spinnerf_dataparser import SpinNerfDataParserConfig
from mald_nerfstudio.metrics.border_crops import border_crop_boxes, observed_crops
from mald_nerfstudio.metrics.inpainting import MASKED_METRICS, PER_SET_METRICS


def nan_mean_std(values: Sequence[Optional[float]]) -> Tuple[float, float]:
    """Mean and standard deviation of the values that are neither None nor NaN (NaN, NaN when none are)."""
    finite = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    tensor = torch.tensor(finite, dtype=torch.float64)
    std = float(tensor.std()) if len(finite) > 1 else 0.0
    return float(tensor.mean()), std


def _listed(names: Sequence[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def where_test_masks_go(dataparser: Any, images: Sequence[Path]) -> str:
    """Where the scene layout that ``dataparser`` reads expects the masks of the test views ``images`` (a clause)."""
    if isinstance(dataparser, MaldDataParser):
        config = dataparser.resolved_config()
    else:
        config = getattr(dataparser, "config", None)
    what = "8-bit, nonzero where the removed object stands in that view, as for the training views"
    example = Path(images[0]).name if images else "image000.png"
    if isinstance(config, SpinNerfDataParserConfig) and images:
        label_dir = Path(images[0]).parent / "label"
        return (
            f"put each test view's mask in {label_dir}/ under the test image's file name (e.g. {label_dir / example}; "
            f"the test views are the first {len(images)} images by file name), {what}"
        )
    if isinstance(config, NerfstudioDataParserConfig):
        data = Path(config.data)
        json_path = data if data.suffix == ".json" else data / "transforms.json"
        return (
            f'in {json_path}, give each test frame (those marked "object_free": true, or listed in test_filenames) '
            f'an "inpaint_mask_path" to its mask, relative to {json_path.parent} (e.g. "inpaint_masks/{example}"), '
            f"{what}"
        )
    return (
        "put each test view's mask where the scene layout expects it (SPIn-NeRF layout: "
        "images_N/label/<the test image's file name>; nerfstudio layout: an \"inpaint_mask_path\" on each test frame "
        f"of transforms.json), {what}"
    )


def missing_masks_reason(names: Sequence[str], mask_files: Sequence[Optional[Path]], location: str) -> str:
    """Why the masked metrics of a scene are unavailable: which object-free views lack a mask file or have an empty
    one, and ``location`` (:func:`where_test_masks_go`)."""
    without = [name for name, path in zip(names, mask_files) if path is None]
    if len(without) == len(names):
        found = f"none of the {len(names)} object-free test views has an inpainting mask ({_listed(without)})"
    else:
        empty = [name for name, path in zip(names, mask_files) if path is not None]
        found = f"the masks of the object-free test views are empty ({_listed(empty)})" + (
            f" or missing ({_listed(without)})" if without else ""
        )
    return f"{found}, so there is no region to score these metrics in; {location}"


@torch.no_grad()
def evaluate_views(
    pipeline: Any, output_path: Optional[Path] = None, with_details: bool = False, get_std: bool = False
) -> Dict[str, Any]:
    """Render and score every evaluation view of ``pipeline``; see the module docstring."""
    model = pipeline.model
    loader = pipeline.datamanager.fixed_indices_eval_dataloader
    names = [Path(p).name for p in pipeline.datamanager.eval_dataset.image_filenames]
    pipeline.eval()
    per_image: List[Dict[str, Any]] = []
    preds, gts, masks = [], [], []
    if output_path is not None:
        output_path.mkdir(parents=True, exist_ok=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    ) as progress:
        task = progress.add_task("[green]Evaluating object-free views", total=len(names))
        for index, (camera, batch) in enumerate(loader):
            outputs = model.get_outputs_for_camera(camera=camera)
            metrics, images = model.get_image_metrics_and_images(outputs, batch)
            if output_path is not None:
                for key, image in images.items():
                    vutils.save_image(image.permute(2, 0, 1).cpu(), output_path / f"eval_{key}_{index:04d}.png")
            per_image.append({"image": names[index], **metrics})
            preds.append(outputs["rgb"].cpu())
            gts.append(batch["image"][..., :3].cpu())
            mask = batch.get("inpaint_mask")
            masks.append(torch.zeros(gts[-1].shape[:2], dtype=torch.bool) if mask is None else mask[..., 0].cpu())
            progress.advance(task)
    pipeline.train()

    result: Dict[str, Any] = {}
    # Keys in first-seen order over all views (a view with an empty mask has no masked values); the set metrics
    # given per image too (m_rgb_swd) are reported for the scene by per_set, pooled over the views.
    keys = list(dict.fromkeys(k for entry in per_image for k in entry if k != "image" and k not in PER_SET_METRICS))
    for key in keys:
        mean, std = nan_mean_std([float(entry.get(key, math.nan)) for entry in per_image])
        result[key] = mean
        if get_std:
            result[f"{key}_std"] = std
    weights_unavailable = dict(model.metrics.unavailable)
    for name, reason in weights_unavailable.items():
        CONSOLE.print(f"[bold yellow]Skipped metric {name}: {reason}")
    unavailable = dict(weights_unavailable)
    dataset, dataparser = pipeline.datamanager.eval_dataset, getattr(pipeline.datamanager, "dataparser", None)
    mask_files = list(getattr(dataset, "mask_files", None) or [None] * len(names))
    if any(bool(m.any()) for m in masks):
        result.update(model.metrics.per_set(preds, gts, masks))
        without = [path for path, mask_file in zip(dataset.image_filenames, mask_files) if mask_file is None]
        if without:
            CONSOLE.print(
                f"[bold yellow]{len(without)} of {len(names)} object-free views have no inpainting mask "
                f"({_listed([Path(p).name for p in without])}): the masked metrics cover the others; "
                f"{where_test_masks_go(dataparser, without)}",
                soft_wrap=True,
            )
    else:
        result.update(model.metrics.per_set(preds, gts, None))
        location = where_test_masks_go(dataparser, dataset.image_filenames)
        reason = missing_masks_reason(names, mask_files, location)
        skipped = [name for name in MASKED_METRICS if name in model.metrics.enabled]
        for name in skipped:
            unavailable[name] = f"{unavailable[name]} Also, {reason}" if name in unavailable else reason
        CONSOLE.print(f"[bold yellow]Skipped the masked metrics {', '.join(skipped)}: {reason}", soft_wrap=True)
    if with_details:
        result["num_views"] = len(per_image)
        result["per_image"] = per_image
        result["unavailable_metrics"] = unavailable
    return result


@torch.no_grad()
def evaluate_without_ground_truth(pipeline: Any, with_details: bool = False) -> Dict[str, Any]:
    """Scenes without object-free views (LLFF-style, the paper's second benchmark): every masked training view is
    rendered, crops around its inpainting border are compared with crops of observed pixels of the training images:
    ``c_swd`` always, C-FID / C-KID where the Inception weights exist."""
    from mald_nerfstudio.model.view_render import render_mask_regions

    manager, model = pipeline.datamanager, pipeline.model
    views = manager.views_with_masks().tolist()
    metrics = model.metrics
    height, width = manager.masks.shape[1:]
    size = min(metrics.config.crop_size, min(height, width) // 2)
    count = metrics.config.crops_per_image
    masks = [manager.masks[view].cpu() for view in views]
    originals = [manager.originals[view].float().cpu() / 255.0 for view in views]
    real = observed_crops(originals, masks, size, count, seed=metrics.config.seed)
    while len(real) == 0 and size >= 32:  # large masks in small images: smaller crops still fit between them
        size //= 2
        real = observed_crops(originals, masks, size, count, seed=metrics.config.seed)
    crops = []
    device = manager.originals.device
    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    ) as progress:
        task = progress.add_task("[green]Rendering crops of the masked training views", total=len(views))
        for view, mask, original in zip(views, masks, originals):
            # Only the crops are scored, so only they are rendered (with the view's own appearance embedding).
            for top, left in border_crop_boxes(mask, size, count):
                box = torch.zeros_like(mask)
                box[top : top + size, left : left + size] = True
                rendered = render_mask_regions(
                    model, manager.train_ray_generator, [view], original[None].to(device), box[None].to(device)
                )[0]
                crops.append(rendered[top : top + size, left : left + size].permute(2, 0, 1).cpu())
            progress.advance(task)
    fake = torch.stack(crops) if crops else torch.zeros((0, 3, size, size))
    result: Dict[str, Any] = metrics.crop_distances(fake, real)
    unavailable = {name: reason for name, reason in metrics.unavailable.items() if name in ("c_fid", "c_kid")}
    for name, reason in unavailable.items():
        CONSOLE.print(f"[bold yellow]Skipped metric {name}: {reason}")
    if with_details:
        result["num_views"] = len(views)
        result["ground_truth"] = (
            "none: crops around the inpainting border of the rendered training views against crops of observed pixels"
        )
        result["crop_size"] = size
        result["num_crops"] = [len(fake), len(real)]
        result["unavailable_metrics"] = unavailable
    return result
