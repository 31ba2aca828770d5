"""Renders of the parts of training views that the inpainters change: what the dataset update inpaints from and
what evaluation compares in the masks (used by :mod:`mald_nerfstudio.pipeline.dataset_update` and
:mod:`mald_nerfstudio.eval.evaluate`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import Tensor

if TYPE_CHECKING:
    from nerfstudio.models.base_model import Model


@torch.no_grad()
def render_mask_regions(
    model: "Model", ray_generator: Callable[[Tensor], Any], views: Sequence[int], current: Tensor, masks: Tensor
) -> Tensor:
    """Render each view inside its mask's bounding box; outside it the current inpainted image is kept.

    ``current`` (float [V, H, W, 3]) and ``masks`` (bool [V, H, W]) are the views' images and masks, on the
    device of ``ray_generator`` (the datamanager's, indexed by training-view number). Returns float [V, H, W, 3].
    Only the box is rendered, which is what the inpainters change.
    """
    out = current.clone()
    camera_optimizer = getattr(model, "camera_optimizer", None)
    was_training = model.training
    model.eval()
    field = getattr(model, "field", None)
    if field is not None and hasattr(field, "embedding_appearance"):
        # nerfacto's field looks up each view's appearance embedding only in training mode (eval renders use the
        # mean); the patches the NeRF is trained on use the view's own, so the render to inpaint from must too.
        field.train()
    try:
        for row, (view, mask) in enumerate(zip(views, masks)):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(ys) == 0:
                continue
            top, bottom, left, right = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
            grid_y, grid_x = torch.meshgrid(
                torch.arange(top, bottom, device=mask.device), torch.arange(left, right, device=mask.device),
                indexing="ij",
            )
            indices = torch.stack([torch.full_like(grid_y, int(view)), grid_y, grid_x], dim=-1).reshape(-1, 3)
            bundle = ray_generator(indices)
            if camera_optimizer is not None:
                camera_optimizer.apply_to_raybundle(bundle)
            bundle = bundle.reshape((bottom - top, right - left))
            rgb = model.get_outputs_for_camera_ray_bundle(bundle)["rgb"]
            out[row, top:bottom, left:right] = rgb.to(out).clamp(0, 1)
    finally:
        model.train(was_training)
    return out
