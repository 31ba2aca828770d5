"""Shows the iterative dataset update in nerfstudio's viewer.

The viewer draws each training camera as a frustum with a thumbnail of its image. After an update we redraw
the frustums of the refreshed views with their new inpainted images, so the user sees what the NeRF is being
trained towards; with visibility-aware inpainting the part of each mask that no other view saw, the part that is
inpainted, is tinted magenta. The panel numbers (update count, current strength) live on the pipeline as
ViewerNumbers.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mald_nerfstudio.upstream_internals import camera_click_callbacks


def _thumbnail(image_uint8: torch.Tensor, height: int = 100) -> np.ndarray:
    """Resize uint8 [H, W, 3] to the viewer's thumbnail height."""
    chw = image_uint8.permute(2, 0, 1)[None].float()
    width = max(1, round(chw.shape[-1] * height / chw.shape[-2]))
    small = F.interpolate(chw, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return small[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


UNSEEN_TINT = (255, 0, 255)
"""Colour mixed into the thumbnails' unseen (inpainted) regions."""


def tint_unseen(image_uint8: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
    """uint8 [H, W, 3] with the ``unseen`` pixels (bool [H, W]) mixed 40 % with :data:`UNSEEN_TINT`."""
    tint = torch.tensor(UNSEEN_TINT, dtype=torch.float32, device=image_uint8.device)
    mixed = (0.6 * image_uint8.float() + 0.4 * tint).round().to(torch.uint8)
    return torch.where(unseen.to(image_uint8.device)[..., None], mixed, image_uint8)


def refresh_camera_thumbnails(
    viewer_state: Any, dataset: Any, views: Sequence[int], unseen: Optional[torch.Tensor] = None
) -> int:
    """Redraw the frustums of ``views`` with the dataset's current images, the ``unseen`` pixels (bool [N, H, W] over
    all training views, or None) tinted; returns how many were redrawn."""
    handles = getattr(viewer_state, "camera_handles", None)
    server = getattr(viewer_state, "viser_server", None)
    if not handles or server is None:
        return 0
    redrawn = 0
    for view in views:
        handle = handles.get(int(view))
        if handle is None:
            continue
        image = torch.from_numpy(np.ascontiguousarray(dataset.get_numpy_image(int(view))))
        if unseen is not None:
            image = tint_unseen(image, unseen[int(view)])
        camera = dataset.cameras[int(view)]
        new_handle = server.scene.add_camera_frustum(
            name=f"/cameras/camera_{int(view):05d}",
            fov=float(2 * np.arctan(float(camera.cx[0]) / float(camera.fx[0]))),
            scale=viewer_state.config.camera_frustum_scale,
            aspect=float(camera.cx[0] / camera.cy[0]),
            image=_thumbnail(image),
            wxyz=handle.wxyz,
            position=handle.position,
            visible=handle.visible,
        )
        for callback in camera_click_callbacks(handle):
            new_handle.on_click(callback)
        handles[int(view)] = new_handle
        redrawn += 1
    return redrawn
