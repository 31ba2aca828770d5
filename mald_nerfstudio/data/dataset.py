"""The dataset of an inpainting scene: images, their inpainting masks, and the current inpainted images.

Each item carries ``inpaint_mask`` (bool [H, W, 1], True = region to inpaint) next to ``image``. For training
views the datamanager, which owns the buffer of current inpainted images, hands the dataset a function that reads
one of them (:meth:`InpaintDataset.serve_images_from`); from then on ``dataset[i]["image"]`` is a copy of the
current inpainted view, so everything that reads the dataset (the viewer's camera thumbnails, for instance) shows
what the NeRF is being trained towards, and nothing that reads it can change the buffer. Evaluation views keep their
files: they are the object-free ground truth.

A training image with an alpha channel was not observed where it is transparent (alpha below half): those pixels
join its inpainting mask, so they are inpainted and their stored colour is never trained on (see
docs/decisions.md, "Data"). Otherwise alpha is dropped, as it is in the evaluation views.
"""

from __future__ import annotations

from typing import Callable, Dict, Literal, Optional

import torch
from torch import Tensor

from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset

from mald_nerfstudio.data.image_io import read_rgb, read_transparent
from mald_nerfstudio.data.inpaint_metadata import OBJECT_FREE_KEY, load_view_mask, masks_of


class InpaintDataset(InputDataset):
    """InputDataset plus inpainting masks and an optional in-memory image buffer."""

    exclude_batch_keys_from_device = ["image", "mask", "inpaint_mask"]

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        super().__init__(dataparser_outputs, scale_factor)
        if scale_factor != 1.0:
            raise ValueError("mald-nerf reads resolution from the data parser (--downscale-factor), not camera scaling")
        self.mask_files, self.mask_spec = masks_of(dataparser_outputs.metadata)
        self.object_free = bool(dataparser_outputs.metadata.get(OBJECT_FREE_KEY, False))
        self._image_source: Optional[Callable[[int], Tensor]] = None

    def serve_images_from(self, source: Callable[[int], Tensor]) -> None:
        """Serve ``source(i)`` (a uint8 [H, W, 3] copy of view i's current image) instead of the files."""
        self._image_source = source

    def get_numpy_image(self, image_idx: int):
        if self._image_source is not None:
            return self._image_source(image_idx).numpy()
        return read_rgb(self._dataparser_outputs.image_filenames[image_idx])

    def original_image(self, image_idx: int) -> Tensor:
        """The view as stored on disk, uint8 [H, W, 3]."""
        return torch.from_numpy(read_rgb(self._dataparser_outputs.image_filenames[image_idx]))

    def transparent_pixels(self, image_idx: int) -> Optional[Tensor]:
        """Bool [H, W]: the pixels of a training view's image that are less than half opaque; None for an image
        without alpha and for evaluation views."""
        if self.object_free:
            return None
        transparent = read_transparent(self._dataparser_outputs.image_filenames[image_idx])
        return None if transparent is None else torch.from_numpy(transparent)

    def inpaint_mask(self, image_idx: int) -> Tensor:
        """Bool [H, W] inpainting mask of a view (all False when it has none); a training view's transparent pixels
        are part of it."""
        height = int(self.cameras.height[image_idx])
        width = int(self.cameras.width[image_idx])
        path = self.mask_files[image_idx] if self.mask_files else None
        mask = torch.from_numpy(load_view_mask(path, (height, width), self.mask_spec))
        transparent = self.transparent_pixels(image_idx)
        return mask if transparent is None else mask | transparent

    def get_data(self, image_idx: int, image_type: Literal["uint8", "float32"] = "float32") -> Dict:
        data = super().get_data(image_idx, image_type)
        data["inpaint_mask"] = self.inpaint_mask(image_idx)[..., None]
        return data
