"""Scoring a trained pipeline on its object-free evaluation views (what ``ns-eval`` runs).

Every evaluation view is rendered once; per-image metrics (PSNR, SSIM, their in-mask variants, LPIPS, M-LPIPS)
are averaged with a NaN-aware mean (a view with an empty mask has no in-mask value), and the set metrics (FID,
KID and their border-crop variants C-FID, C-KID) compare all renders with all ground-truth views.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torchvision.utils as vutils
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nerfstudio.utils.rich_utils import CONSOLE

from mald_nerfstudio.eval.border_crops import border_crop_boxes, observed_crops


def nan_mean_std(values: Sequence[Optional[float]]) -> Tuple[float, float]:
    """Mean and standard deviation of the values that are neither None nor NaN (NaN, NaN when none are)."""
    finite = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    tensor = torch.tensor(finite, dtype=torch.float64)
    std = float(tensor.std()) if len(finite) > 1 else 0.0
    return float(tensor.mean()), std


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
            masks.append(None if mask is None else mask[..., 0].cpu())
            progress.advance(task)
    pipeline.train()

    result: Dict[str, Any] = {}
    keys = [k for k in per_image[0] if k != "image"] if per_image else []
    for key in keys:
        mean, std = nan_mean_std([float(entry.get(key, math.nan)) for entry in per_image])
        result[key] = mean
        if get_std:
            result[f"{key}_std"] = std
    have_masks = all(m is not None for m in masks)
    result.update(
        model.metrics.per_set(preds, gts, masks if have_masks else None, masks if have_masks else None)
    )
    unavailable = dict(model.metrics.unavailable)
    for name, reason in unavailable.items():
        CONSOLE.print(f"[bold yellow]Skipped metric {name}: {reason}")
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
    from mald_nerfstudio.pipeline.dataset_update import render_mask_regions  # the pipeline imports this module

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
