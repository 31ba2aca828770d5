"""Iterative dataset update (MALD-NeRF component 3).

Before training every masked training view is inpainted once at full strength (or, with ``warmup_steps``, at
that step from the NeRF's render of the view, after training on the observed pixels only: what other views observe
is then reconstructed before anything is invented). Then, every ``update_every``
steps from ``first_update_step`` on, ``views_per_update`` views (cycling through all masked views, so each is
refreshed in turn) are re-inpainted from the NeRF's current render of the view with partial denoising at
strength ``t(k) = t_max - (t_max - t_min) * sqrt(k / K)``, ``k`` the update index and ``K`` the index of the
last update. Pixels outside the masks always stay the original pixels.

With visibility-aware inpainting (:mod:`mald_nerfstudio.pipeline.visibility`; off by default, on in
``mald-nerf-visibility``) the inpainter fills only each mask's *unseen* part (its fill mask), computed from the
NeRF's depths at the end of the warm-up (and again at updates ``recompute_every`` steps later): the image it gets
holds, in the seen part, the colours the other views observed there (the NeRF's render where none was found), so
the fill continues what other views saw, and the seen part is stored as such.

The schedule's progress (the run length it was planned for, the updates so far, when the fill masks were computed)
is one :class:`UpdateState`, owned by the updater and saved in the pipeline's checkpoint state, so a resumed run
continues the schedule; the run's length is handed over once (:meth:`DatasetUpdater.start`). The datamanager keeps
only the image buffer (which views hold an inpainting, the fill masks, the images). The updater returns the views
it changed; the pipeline's training callback shows them in the viewer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nerfstudio.configs import base_config  # noqa: F401  (imported before writer: nerfstudio's import cycle)
from nerfstudio.utils import writer
from nerfstudio.utils.rich_utils import CONSOLE

from mald_nerfstudio.data.image_io import write_mask_png
from mald_nerfstudio.inpaint.base import Inpainter
from mald_nerfstudio.inpaint.schedule import noise_strength
from mald_nerfstudio.model.view_render import render_mask_regions
from mald_nerfstudio.pipeline.visibility import VisibilityConfig, render_depths, unseen_masks

if TYPE_CHECKING:
    from mald_nerfstudio.data.datamanager import MaldDataManager
    from nerfstudio.models.base_model import Model


@dataclass
class DatasetUpdateConfig:
    """When and how strongly the inpainted training images are refreshed from the NeRF's renders."""

    enabled: bool = True
    """Refresh the inpainted images during training (off: keep the initial inpainting, as SPIn-NeRF does)."""
    update_every: int = 200
    """U: steps between two dataset updates."""
    views_per_update: int = 4
    """V: views re-inpainted at each update (cycling so that every masked view is refreshed in turn)."""
    first_update_step: int = 2000
    """Step of the first update; before it the NeRF learns from the initial inpainting only."""
    warmup_steps: int = 0
    """Steps on observed pixels only before the initial inpainting from the render (0: inpaint first, as the paper)."""
    initial_strength: float = 1.0
    """Strength of the initial inpainting from the render after a warm-up (1: the render is ignored)."""
    t_max: float = 0.85
    """Partial-denoising strength of the first update (1 would ignore the render)."""
    t_min: float = 0.2
    """Strength of the last update."""
    num_updates: Optional[int] = None
    """K, the index of the update that reaches t_min. None: the last update that fits in max-num-iterations."""
    seed: int = 0
    """Base seed of the updates; update k of view i uses a seed derived from (seed, k, i)."""


@dataclass
class UpdateState:
    """Where the dataset-update schedule stands; checkpointed with the pipeline (its ``dataset_update`` entry)."""

    horizon: Optional[int] = None
    """Run length the schedule's K was planned for: set at the run's first start, kept when a resume lengthens it."""
    num_updates: int = 0
    """Dataset updates run so far (k of the next one)."""
    history: List[Tuple[int, float]] = field(default_factory=list)
    """(step, strength) of every update so far."""
    visibility_step: Optional[int] = None
    """Step the fill masks were last computed at (None: never; the fill masks are the whole masks)."""

    def as_dict(self) -> Dict[str, Any]:
        """Plain values for a checkpoint."""
        return {"horizon": self.horizon, "num_updates": self.num_updates, "history": list(self.history),
                "visibility_step": self.visibility_step}

    @classmethod
    def from_dict(cls, state: Dict[str, Any], horizon: Optional[int] = None) -> "UpdateState":
        """From :meth:`as_dict`, or from the datamanager entries and the trainer's horizon that checkpoints written
        before this state existed hold (``update_history``; ``horizon`` given)."""
        history = state.get("history", state.get("update_history", []))
        step = state.get("visibility_step")
        return cls(
            horizon=state.get("horizon", horizon),
            num_updates=int(state.get("num_updates", 0)),
            history=[(int(s), float(t)) for s, t in history],
            visibility_step=None if step is None else int(step),
        )


def scheduled_update_steps(config: DatasetUpdateConfig, max_num_iterations: int) -> List[int]:
    """Training steps at which updates run in a run of ``max_num_iterations`` steps (steps 0..max-1)."""
    if not config.enabled or config.update_every <= 0:
        return []
    return list(range(max(config.first_update_step, 1), max_num_iterations, config.update_every))


def last_update_index(config: DatasetUpdateConfig, max_num_iterations: int) -> int:
    """K of the schedule: the configured value, else the index of the last update that fits."""
    if config.num_updates is not None:
        return config.num_updates
    return max(len(scheduled_update_steps(config, max_num_iterations)) - 1, 0)


def view_seeds(base: int, update_index: int, views: Sequence[int]) -> List[int]:
    """Distinct, reproducible seeds per (update, view)."""
    return [base + 100_003 * (update_index + 1) + int(v) for v in views]


class DatasetUpdater:
    """Runs the initial inpainting and the scheduled updates against a datamanager's image buffer; owns the
    schedule's :class:`UpdateState`."""

    def __init__(
        self,
        config: DatasetUpdateConfig,
        datamanager: "MaldDataManager",
        model: "Model",
        visibility: Optional[VisibilityConfig] = None,
    ) -> None:
        noise_strength(0, 1, config.t_max, config.t_min)  # a wrong range stops here, before any update
        self.config = config
        self.visibility = visibility if visibility is not None else VisibilityConfig(enabled=False)
        self.datamanager = datamanager
        self.model = model
        self.state = UpdateState()
        """The schedule's progress (restored from a checkpoint before :meth:`start`)."""
        self.inpainter: Optional[Inpainter] = None
        self.output_dir: Optional[Path] = None
        self.batch_size = 1
        self.update_steps: set = set()
        self.last_index = 0

    def start(self, inpainter: Inpainter, run_length: int, output_dir: Optional[Path] = None) -> None:
        """What the run hands over once, before its first step: the inpainter, the run's total length (from step 0)
        and its folder. The first start fixes the schedule's horizon; a resumed run that was lengthened keeps
        updating every U steps, at t_min past the original horizon's K."""
        if self.state.horizon is None:
            self.state.horizon = int(run_length)
        elif self.state.horizon != run_length:
            CONSOLE.print(
                f"[bold yellow]This run was started for {self.state.horizon} steps and now ends at step "
                f"{run_length}; its dataset-update schedule keeps the original horizon."
            )
        self.inpainter = inpainter
        self.output_dir = output_dir
        self.batch_size = max(1, inpainter.views_per_call)
        self.update_steps = set(scheduled_update_steps(self.config, run_length))
        self.last_index = last_update_index(self.config, self.state.horizon)

    def _inpainter(self) -> Inpainter:
        if self.inpainter is None:
            raise RuntimeError("DatasetUpdater.start must hand over the inpainter before any inpainting")
        return self.inpainter

    def initial_inpainting(self, from_render: bool = False) -> List[int]:
        """Inpaint every masked training view (progress bar): at full strength from its original image, or with
        ``from_render`` at ``initial_strength`` from the NeRF's render of the view. Returns the views."""
        views = self.datamanager.views_with_masks().tolist()
        strength = self.config.initial_strength if from_render else 1.0
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ) as progress:
            task = progress.add_task("[green]Inpainting training views", total=len(views))
            with self._inpainter().session():  # the LDM moves to the GPU once for the whole pass
                self._initial_pass(views, strength, from_render, progress, task)
        return views

    def _initial_pass(self, views: List[int], strength: float, from_render: bool, progress: Progress, task) -> None:
        for start in range(0, len(views), self.batch_size):
            chunk = views[start : start + self.batch_size]
            self._fill(chunk, strength, from_render and strength < 1.0, view_seeds(self.config.seed, -1, chunk))
            progress.advance(task, len(chunk))

    def _fill(self, views: List[int], strength: float, partial: bool, seeds: List[int]) -> None:
        """Inpaint the fill masks of ``views`` (partially from the render when ``partial``); the rest of each mask,
        which other views saw, is given to the inpainter as the colours those views observed (where found, else
        the NeRF's render) and stored as such."""
        originals, current, masks = self.datamanager.view_images(views)
        fill = self.datamanager.view_fill_masks(views)
        observed = self.datamanager.view_seen_trained(views)
        seen = masks & ~fill & ~observed
        renders = None
        if partial or bool(seen.any()):
            renders = render_mask_regions(self.model, self.datamanager.train_ray_generator, views, current, masks)
        images = originals if renders is None else torch.where(seen[..., None], renders, originals)
        images = torch.where(observed[..., None], current, images)
        filled = self._inpainter().inpaint(images, fill, init=renders if partial else None, strength=strength,
                                        seeds=seeds)
        self.datamanager.set_inpainted(views, filled)

    def visibility_due(self, step: int) -> bool:
        """Whether the fill masks are (re)computed at ``step``: visibility on, and never computed or computed at least
        ``recompute_every`` steps ago."""
        if not self.visibility.enabled:
            return False
        last = self.state.visibility_step
        return last is None or (self.visibility.recompute_every > 0 and step - last >= self.visibility.recompute_every)

    def compute_fill_masks(self, step: int) -> List[int]:
        """Render every training view's depth, keep in each masked view's fill mask only what no other training
        view saw, save the masks as PNGs (``unseen_masks/step_NNNNNN/`` in the run folder), print and log the
        unseen fraction of every view. Returns the masked views."""
        manager = self.datamanager
        assert manager.masks is not None
        num_views, height, width = manager.masks.shape
        views = manager.views_with_masks().tolist()
        with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn()) as progress:
            task = progress.add_task("[green]Visibility: rendering depths", total=num_views)
            depths = render_depths(self.model, manager.train_ray_generator, range(num_views), height, width,
                                   on_view=lambda: progress.advance(task))
        all_masks = manager.masks.cpu()
        if self.visibility.train_seen:
            fill, seen = unseen_masks(manager.train_dataset.cameras, depths, all_masks, views,
                                      self.visibility, images=manager.originals.cpu())
            manager.set_fill_masks(views, fill, seen_colours=seen.colours, seen_valid=seen.valid)
        else:
            fill = unseen_masks(manager.train_dataset.cameras, depths, all_masks, views, self.visibility)
            manager.set_fill_masks(views, fill)
        self.state.visibility_step = int(step)
        masks = all_masks[torch.as_tensor(views, dtype=torch.long)]
        fractions = fill.flatten(1).sum(1).float() / masks.flatten(1).sum(1).clamp(min=1).float()
        names = [Path(manager.train_dataset.image_filenames[v]).stem for v in views]
        if self.output_dir is not None:
            folder = self.output_dir / "unseen_masks" / f"step_{step:06d}"
            for name, mask in zip(names, fill):
                write_mask_png(folder / f"{name}.png", mask.numpy())
        total = float(fill.sum()) / max(float(masks.sum()), 1.0)
        CONSOLE.print(
            f"Visibility at step {step}: {total:.1%} of the masked pixels were seen by no other training view and "
            "are inpainted; the rest is reconstructed from the views that saw it. Unseen part per view: "
            + ", ".join(f"{name} {fraction:.0%}" for name, fraction in zip(names, fractions.tolist()))
            + (f" (masks in {self.output_dir / 'unseen_masks'})" if self.output_dir is not None else "")
        )
        writer.put_scalar("Visibility/unseen fraction of the masks", total, step)
        return views

    def strength(self, update_index: int) -> float:
        """Partial-denoising strength of update ``update_index``."""
        return noise_strength(update_index, self.last_index, self.config.t_max, self.config.t_min)

    def views_of_update(self, update_index: int) -> List[int]:
        """The views refreshed by an update: the next V views with something to fill, in a fixed cycle."""
        views = self.datamanager.views_to_fill().tolist()
        if not views:
            return []
        count = min(self.config.views_per_update, len(views))
        start = update_index * self.config.views_per_update
        return [views[(start + i) % len(views)] for i in range(count)]

    def step(self, step: int) -> List[int]:
        """Run the initial inpainting once the warm-up is over, or the update scheduled at ``step``, if any.
        Returns the views whose inpainted images changed (none: nothing ran)."""
        if not self.datamanager.inpainted:
            if step + 1 < self.config.warmup_steps:
                return []
            if self.visibility.enabled:
                self.compute_fill_masks(step)
            views = self.initial_inpainting(from_render=True)
            writer.put_scalar("Dataset update/strength", self.config.initial_strength, step)
            return views
        if step not in self.update_steps:
            return []
        refreshed = self.compute_fill_masks(step) if self.visibility_due(step) else []
        k = self.state.num_updates
        views = self.views_of_update(k)
        if not views:
            return refreshed
        strength = self.strength(k)
        with self._inpainter().session():
            for start in range(0, len(views), self.batch_size):
                chunk = views[start : start + self.batch_size]
                self._fill(chunk, strength, True, view_seeds(self.config.seed, k, chunk))
        self.state.num_updates += 1
        self.state.history.append((int(step), float(strength)))
        writer.put_scalar("Dataset update/strength", strength, step)
        writer.put_scalar("Dataset update/count", k + 1, step)
        return views
