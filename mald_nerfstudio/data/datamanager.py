"""The mald-nerf datamanager: original images, inpainting masks and the buffer of current inpainted images.

Training views are loaded into memory once. Each step returns a ray bundle and a
:class:`~mald_nerfstudio.data.training_batch.TrainingBatch`:

* reconstruction rays drawn from observed pixels only (outside every mask), with their original colours, and
* ``num_inpaint_patches`` P x P patches that overlap the fill masks, every ray of each patch rendered, with the
  same patch cut from the *current inpainted* image and its fill mask (the masked adversarial loss compares the
  two). The fill masks are the masks at first; with visibility-aware inpainting
  (:mod:`mald_nerfstudio.pipeline.visibility`) they shrink to what no other training view saw.

The datamanager keeps the image buffer only: the inpainted images, which views hold one, the fill masks and the
seen pixels' observed colours are training state, saved in every checkpoint (``get_extra_state``) and restored on
resume (the schedule that refreshes them is the updater's, :mod:`mald_nerfstudio.pipeline.dataset_update`). The
originals are never written anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.model_components.ray_generators import RayGenerator
from nerfstudio.utils.rich_utils import CONSOLE

from mald_nerfstudio.data.auto_dataparser import MaldDataParserConfig
from mald_nerfstudio.data.dataset import InpaintDataset
from mald_nerfstudio.data.patch_sampling import PixelPools, sample_observed, sample_patches
from mald_nerfstudio.data.training_batch import (
    MaskPatches,
    ObservedRays,
    TrainingBatch,
    mark_patch_rays,
    set_patch_size,
)
from mald_nerfstudio.errors import MaldInputError


@dataclass
class MaldDataManagerConfig(VanillaDataManagerConfig):
    """Samples observed rays outside the masks and inpainting patches on them."""

    _target: Type = field(default_factory=lambda: MaldDataManager)
    """Target class to instantiate."""
    dataparser: AnnotatedDataParserUnion = field(default_factory=MaldDataParserConfig)
    """Data parser; the default detects the nerfstudio or SPIn-NeRF layout."""
    train_num_rays_per_batch: int = 4096
    """Reconstruction rays per step, drawn from observed pixels (outside the masks)."""
    num_inpaint_patches: int = 4
    """P x P patches per step placed over the masks (0 disables patch rendering: no supervision in the mask)."""
    inpaint_patch_size: int = 64
    """Patch side P in pixels."""
    seed: int = 0
    """Seed of the ray and patch sampler."""


class MaldDataManager(VanillaDataManager[InpaintDataset]):
    """In-memory training views, masks and inpainted-image buffer; nerfstudio's loaders for evaluation."""

    config: MaldDataManagerConfig
    train_dataset: InpaintDataset

    def __init__(self, config: MaldDataManagerConfig, *args, **kwargs):
        self.originals: Optional[Tensor] = None
        self.current: Optional[Tensor] = None
        self.masks: Optional[Tensor] = None
        self.fill_masks: Optional[Tensor] = None
        self.seen_trained: Optional[Tensor] = None
        self.inpainted_views: Optional[Tensor] = None
        self._masked_views: Optional[Tensor] = None
        self._pending_state: Optional[Dict] = None
        super().__init__(config, *args, **kwargs)

    # ------------------------------------------------------------------ setup
    def create_train_dataset(self) -> InpaintDataset:
        dataset = InpaintDataset(self.train_dataparser_outputs)
        set_patch_size(dataset.metadata, self.config.inpaint_patch_size)  # the model builds its discriminator for it
        return dataset

    def create_eval_dataset(self) -> InpaintDataset:
        return InpaintDataset(self.dataparser.get_dataparser_outputs(split=self.test_split))

    def setup_train(self) -> None:
        dataset = self.train_dataset
        heights, widths = dataset.cameras.height.unique(), dataset.cameras.width.unique()
        if len(heights) != 1 or len(widths) != 1:
            raise MaldInputError(
                "training views have different image sizes", self.config.dataparser.data, "resize them to one size"
            )
        originals, masks = [], []
        transparent_pixels = transparent_views = 0
        with Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), transient=True
        ) as progress:
            task = progress.add_task("[green]Loading training views", total=len(dataset))
            for i in range(len(dataset)):
                originals.append(dataset.original_image(i))
                masks.append(dataset.inpaint_mask(i))  # holds the view's transparent pixels
                transparent = dataset.transparent_pixels(i)
                if transparent is not None and transparent.any():
                    transparent_pixels += int(transparent.sum())
                    transparent_views += 1
                progress.advance(task)
        self.originals = torch.stack(originals).to(self.device)
        self.masks = torch.stack(masks).to(self.device)
        self._masked_views = torch.nonzero(self.masks.flatten(1).any(dim=1)).squeeze(-1)  # the masks never change
        self.current = self.originals.clone()
        self.fill_masks = self.masks.clone()
        self.seen_trained = torch.zeros_like(self.masks)
        self.inpainted_views = torch.zeros(len(self.masks), dtype=torch.bool, device=self.masks.device)
        dataset.serve_images_from(self.current_image)
        self.pools = PixelPools.from_masks(self.masks)
        patch = self.config.inpaint_patch_size
        if self.config.num_inpaint_patches > 0 and (patch > self.masks.shape[1] or patch > self.masks.shape[2]):
            raise MaldInputError(
                f"inpaint patch size {patch} exceeds the {self.masks.shape[2]}x{self.masks.shape[1]} training images",
                self.config.dataparser.data,
                "pass a smaller --pipeline.datamanager.inpaint-patch-size",
            )
        if len(self.pools.observed) == 0:
            raise MaldInputError("no observed pixel in any training view", self.config.dataparser.data, "check masks")
        self.generator = torch.Generator(device=self.masks.device).manual_seed(self.config.seed)
        self.train_ray_generator = RayGenerator(dataset.cameras.to(self.device))
        CONSOLE.print(
            f"Training views: {len(dataset)} ({int(self.views_with_masks().numel())} with a mask), "
            f"{self.masks.float().mean().item():.1%} of training pixels to inpaint."
        )
        if transparent_pixels:
            CONSOLE.print(
                f"Note: {transparent_pixels} pixels ({transparent_pixels / self.masks.numel():.1%} of training pixels) "
                f"in {transparent_views} training view(s) are transparent (alpha below half): they count as not "
                "observed and are inpainted with the masked region; their stored colour is never trained on.",
                soft_wrap=True,
            )
        if self._pending_state is not None:
            self._apply_state(self._pending_state)

    # ------------------------------------------------------------- sampling
    @property
    def has_patches(self) -> bool:
        """Whether steps include inpainting patches: patch count > 0, some view has a mask, and the views have
        been inpainted (before that, a warm-up trains on the observed pixels only)."""
        return self.config.num_inpaint_patches > 0 and len(self.pools.masked) > 0 and self.inpainted

    @property
    def inpainted(self) -> bool:
        """Whether every view with a mask holds an inpainted image (true from the end of the initial inpainting)."""
        assert self.inpainted_views is not None
        return bool(self.inpainted_views[self.views_with_masks()].all())

    def next_train(self, step: int) -> Tuple[RayBundle, TrainingBatch]:  # type: ignore[override]
        """The step's rays: observed rays, then the patch rays (marked as such in the bundle), and their batch."""
        self.train_count += 1
        assert self.originals is not None and self.current is not None and self.masks is not None
        recon = sample_observed(self.pools, self.config.train_num_rays_per_batch, self.generator)
        v, y, x = recon.unbind(-1)
        # current = originals outside the masks, observed colours on their trained seen part
        batch = TrainingBatch(ObservedRays(indices=recon, colours=self.current[v, y, x].float() / 255.0))
        if self.has_patches:
            patches = sample_patches(
                self.pools, self.config.num_inpaint_patches, self.config.inpaint_patch_size, self.generator
            )
            pv, py, px = patches.unbind(-1)
            batch.patches = MaskPatches(indices=patches, real=self.current[pv, py, px].float() / 255.0,
                                        mask=self.fill_masks[pv, py, px][..., None])
        ray_bundle = self.train_ray_generator(batch.ray_indices())
        mark_patch_rays(ray_bundle, batch.num_observed)  # patch rays do not refine the camera poses
        return ray_bundle, batch

    def get_train_rays_per_batch(self) -> int:
        patch_rays = self.config.num_inpaint_patches * self.config.inpaint_patch_size**2
        return self.config.train_num_rays_per_batch + (patch_rays if self.has_patches else 0)

    # ------------------------------------------------ inpainted-image buffer
    def views_with_masks(self) -> Tensor:
        """Indices of training views whose mask is not empty (found once, when the views are loaded: every step's
        sampler asks)."""
        assert self._masked_views is not None
        return self._masked_views

    def views_to_fill(self) -> Tensor:
        """Indices of training views whose fill mask (the part of the mask to inpaint) is not empty."""
        assert self.fill_masks is not None
        return torch.nonzero(self.fill_masks.flatten(1).any(dim=1)).squeeze(-1)

    def view_fill_masks(self, views: Sequence[int]) -> Tensor:
        """The fill masks of some views, bool [V, H, W]: the whole mask, or with visibility its unseen part."""
        assert self.fill_masks is not None
        return self.fill_masks[torch.as_tensor(list(views), dtype=torch.long, device=self.fill_masks.device)]

    def view_seen_trained(self, views: Sequence[int]) -> Tensor:
        """bool [V, H, W]: the pixels of some views' masks that hold the colour other views observed."""
        assert self.seen_trained is not None
        return self.seen_trained[torch.as_tensor(list(views), dtype=torch.long, device=self.seen_trained.device)]

    def set_fill_masks(self, views: Sequence[int], fill_masks: Tensor,
                       seen_colours: Optional[Tensor] = None, seen_valid: Optional[Tensor] = None) -> None:
        """Inpaint only ``fill_masks`` (bool [V, H, W], kept inside the masks) of ``views`` from now on; patches
        are drawn over the fill masks. With
        ``seen_colours`` (float [V, H, W, 3] in [0, 1]) the pixels ``seen_valid`` (bool [V, H, W], outside the fill
        masks) hold those colours and are drawn with the observed rays from now on."""
        assert self.masks is not None and self.fill_masks is not None and self.current is not None
        idx = torch.as_tensor(list(views), dtype=torch.long, device=self.fill_masks.device)
        self.fill_masks[idx] = fill_masks.to(self.fill_masks.device).bool() & self.masks[idx]
        self.seen_trained[idx] = False
        if seen_colours is not None and seen_valid is not None:
            valid = seen_valid.to(self.masks.device).bool() & self.masks[idx] & ~self.fill_masks[idx]
            colours = (seen_colours.to(self.current.device).clamp(0, 1) * 255.0).round().to(torch.uint8)
            self.current[idx] = torch.where(valid[..., None], colours, self.current[idx])
            self.seen_trained[idx] = valid
        self.pools = PixelPools.from_masks(self.masks, self.fill_masks, self.seen_trained)

    def current_image(self, view: int) -> Tensor:
        """A copy of one view's current image (uint8 [H, W, 3] on the CPU): the original outside its mask, the
        inpainting (or observed colours) inside."""
        assert self.current is not None
        return self.current[int(view)].cpu().clone()

    def view_images(self, views: Sequence[int]) -> Tuple[Tensor, Tensor, Tensor]:
        """(originals, current inpainted images, masks) of some views as float [V, H, W, 3] / bool [V, H, W]."""
        assert self.originals is not None and self.current is not None and self.masks is not None
        idx = torch.as_tensor(list(views), dtype=torch.long, device=self.originals.device)
        return self.originals[idx].float() / 255.0, self.current[idx].float() / 255.0, self.masks[idx]

    def set_inpainted(self, views: Sequence[int], images: Tensor) -> None:
        """Store new inpainted images (float [V, H, W, 3] in [0, 1]); pixels outside the masks stay original."""
        assert self.originals is not None and self.current is not None and self.masks is not None
        idx = torch.as_tensor(list(views), dtype=torch.long, device=self.current.device)
        new = (images.to(self.current.device).clamp(0, 1) * 255.0).round().to(torch.uint8)
        keep = ~self.masks[idx][..., None]
        self.current[idx] = torch.where(keep, self.originals[idx], new)
        self.inpainted_views[idx] = True

    # ------------------------------------------------------------ checkpoint
    def get_extra_state(self) -> Dict[str, Any]:
        """The buffer of the masked views (inpainted images, which hold one, fill masks, trained seen pixels) and
        the sampler's random state (so a resumed run draws the same batches)."""
        if self.current is None:
            return dict(self._pending_state or {})
        views = self.views_with_masks()
        return {
            "views": views.cpu(),
            "inpainted": self.current[views].cpu(),
            "inpainted_views": self.inpainted_views[views].cpu(),
            "sampler_rng": self.generator.get_state(),
            "fill_masks": self.fill_masks[views].cpu(),
            "seen_trained": self.seen_trained[views].cpu(),
        }

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or not state:
            return
        if self.current is None:
            self._pending_state = state
        else:
            self._apply_state(state)

    def _apply_state(self, state: Dict[str, Any]) -> None:
        assert self.current is not None
        views = state["views"].to(self.current.device).long()
        images = state["inpainted"].to(self.current.device)
        if images.shape[1:] != self.current.shape[1:] or (len(views) and int(views.max()) >= len(self.current)):
            raise MaldInputError(
                "the checkpoint's inpainted images do not match this scene's training views",
                self.config.dataparser.data,
                "resume with the same --data and data-parser options the run was started with",
            )
        self.current[views] = images
        if "inpainted_views" in state:
            self.inpainted_views[views] = state["inpainted_views"].to(self.inpainted_views.device).bool()
        else:  # checkpoints written before the schedule's state moved to the updater: one flag for all views
            self.inpainted_views[views] = bool(state.get("initialized", False))
        if "sampler_rng" in state:  # absent in checkpoints written before resumes drew the same batches
            self.generator.set_state(state["sampler_rng"])
        if "fill_masks" in state:  # absent in checkpoints written before visibility-aware inpainting
            assert self.masks is not None and self.fill_masks is not None
            self.fill_masks[views] = state["fill_masks"].to(self.fill_masks.device).bool() & self.masks[views]
            if "seen_trained" in state:  # absent before the seen parts were trained on their observed colours
                self.seen_trained[views] = state["seen_trained"].to(self.masks.device).bool() & self.masks[views]
            self.pools = PixelPools.from_masks(self.masks, self.fill_masks, self.seen_trained)
        self._pending_state = None
