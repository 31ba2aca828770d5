"""The MALD-NeRF pipeline: nerfstudio's VanillaPipeline plus the 2D inpainter and the dataset updates.

Its training callbacks (nerfstudio's hooks, which get the trainer and so the viewer through
``TrainingCallbackAttributes``) drive the inpainting:

1. before the first training step (:meth:`MaldPipeline.prepare_training`): when the latent diffusion inpainter is
   used and customisation is on, LoRA-customise it to the scene (cached per scene, see
   :mod:`mald_nerfstudio.inpaint.lora`), then inpaint every masked training view once at full strength. Both are
   skipped when the run resumes from a checkpoint that already holds the inpainted images;
2. after every step: the scheduled dataset update, if one is due (:mod:`mald_nerfstudio.pipeline.dataset_update`),
   and the refreshed images, the update count and the current strength in the viewer.

Each iteration's losses come as loss phases (:meth:`MaldPipeline.get_train_loss_phases`), one per NeRF optimizer
step; the inpainting phase hands the trainer the patches its discriminator step judges.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Protocol, Type

import torch

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils import writer
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerNumber

from mald_nerfstudio.errors import install_run_hooks
from mald_nerfstudio.data.datamanager import MaldDataManager, MaldDataManagerConfig
from mald_nerfstudio.eval.evaluate import evaluate_views, evaluate_without_ground_truth
from mald_nerfstudio.inpaint.base import Inpainter
from mald_nerfstudio.inpaint.choices import AnnotatedInpainterUnion
from mald_nerfstudio.inpaint.ldm import LDMInpainterConfig
from mald_nerfstudio.model.mald_model import LossPhase, MaldNerfModel, MaldNerfModelConfig
from mald_nerfstudio.pipeline.dataset_update import DatasetUpdateConfig, DatasetUpdater, UpdateState
from mald_nerfstudio.pipeline.viewer_feedback import refresh_camera_thumbnails
from mald_nerfstudio.pipeline.visibility import VisibilityConfig



class TrainingRun(Protocol):
    """What the pipeline reads of the trainer that runs it (``trainer.MaldTrainer``, which imports this module):
    the run folder and the run's total length, handed over once before the first step, and the viewer, whose
    camera thumbnails the updates redraw."""

    base_dir: Path
    run_length: int
    viewer_state: Any


@dataclass
class MaldPipelineConfig(VanillaPipelineConfig):
    """MALD-NeRF: nerfacto + masked adversarial training + LDM inpainting with iterative dataset updates."""

    _target: Type = field(default_factory=lambda: MaldPipeline)
    """Target class to instantiate."""
    datamanager: MaldDataManagerConfig = field(default_factory=MaldDataManagerConfig)
    """Data manager: observed rays and mask patches."""
    model: MaldNerfModelConfig = field(default_factory=MaldNerfModelConfig)
    """The NeRF and its losses."""
    inpainter: AnnotatedInpainterUnion = field(default_factory=LDMInpainterConfig)
    """2D inpainter: ldm (latent diffusion, the paper's), exemplar, telea (offline), none (holes ignored)."""
    dataset_update: DatasetUpdateConfig = field(default_factory=DatasetUpdateConfig)
    """Iterative dataset update: schedule and noise strengths."""
    visibility: VisibilityConfig = field(default_factory=VisibilityConfig)
    """Visibility-aware inpainting: fill only what no training view saw, reconstruct the rest (needs a warm-up)."""
    separate_inpainting_step: bool = False
    """Reconstruction and inpainting as two NeRF steps per iteration (the spec's form); off: one summed step."""

    def nerf_steps_per_iteration(self) -> int:
        """NeRF optimizer steps of one iteration once the views are inpainted: 2 with a separate inpainting step
        (reconstruction, then inpainting), else 1. Comparisons at one budget count these, not iterations."""
        patches = (
            self.datamanager.num_inpaint_patches > 0
            and self.model.has_inpainting_losses
            and self.inpainter.fills_masks
        )
        return 2 if self.separate_inpainting_step and patches else 1


class MaldPipeline(VanillaPipeline):
    """VanillaPipeline with the inpainting dataset and its updates."""

    config: MaldPipelineConfig
    datamanager: MaldDataManager

    def __init__(self, config: MaldPipelineConfig, device: str, test_mode: str = "val", *args, **kwargs):
        install_run_hooks()  # our errors as paragraphs, our checkpoints on torch's safe loader
        if config.datamanager.num_inpaint_patches > 0 and not config.model.has_inpainting_losses:
            CONSOLE.print(
                "No loss inside the masks is switched on (adversarial, in-mask L1 or LPIPS): no patches are rendered "
                "and the masked pixels are ignored, as nerfacto-masked does."
            )
            config = replace(config, datamanager=replace(config.datamanager, num_inpaint_patches=0))
        super().__init__(config, device, test_mode, *args, **kwargs)  # type: ignore[arg-type]
        self._inpainter: Optional[Inpainter] = None
        self.updater = DatasetUpdater(config.dataset_update, self.datamanager, self.model, config.visibility)
        """The dataset updates and the schedule's checkpointed state."""
        self._prepared = False
        self.inpainter_files: Dict[str, torch.Tensor] = {}
        """What the inpainter's preparation returned (the LDM: its scene LoRA adapter's files, bytes as uint8
        tensors), kept in every checkpoint so a resume gets the same adapter without the cache or training again."""
        self.viewer_update_count = ViewerNumber("Dataset updates done", 0, disabled=True)
        self.viewer_strength = ViewerNumber("Current update strength", 1.0, disabled=True)
        if test_mode == "val":
            # Fail at start-up, not after data loading and pre-training work, when weights are missing.
            self.inpainter.check_available()
            if isinstance(self.model, MaldNerfModel) and config.model.use_mask_lpips:
                self.model.mask_lpips_net()

    # -------------------------------------------------------------- inpainter
    @property
    def inpaints(self) -> bool:
        """Whether this run inpaints the masks at all (the 'none' inpainter leaves them unsupervised)."""
        return self.config.inpainter.fills_masks

    @property
    def inpainter(self) -> Inpainter:
        """The 2D inpainter, built on first use (an LDM's weights load only when it first inpaints)."""
        if self._inpainter is None:
            self._inpainter = self.config.inpainter.setup(device=str(self.device))
        return self._inpainter

    # ---------------------------------------------------------- preparation
    def prepare_training(self, trainer: "TrainingRun") -> None:
        """Customise the LDM, then inpaint the training views (skipped when a checkpoint restored them)."""
        self._prepared = True
        if not self.inpaints:
            CONSOLE.print("No inpainter: the masked pixels are ignored and nothing supervises the holes.")
            return
        inpainter = self.inpainter
        assert self.datamanager.originals is not None and self.datamanager.masks is not None

        def log_loss(step: int, loss: float) -> None:
            # Buffered by nerfstudio's writer and written out with the first training step's logs.
            writer.put_scalar("LoRA customisation/loss", loss, step)

        self.inpainter_files = inpainter.prepare(self.datamanager.originals.float() / 255.0, self.datamanager.masks,
                                                 Path(trainer.base_dir), self.inpainter_files, on_loss=log_loss)
        self.updater.start(inpainter, trainer.run_length, Path(trainer.base_dir))
        if self.datamanager.inpainted and len(self.datamanager.views_with_masks()) > 0:
            CONSOLE.print(
                f"Resuming with the checkpoint's inpainted images ({self.updater.state.num_updates} dataset updates)."
            )
        elif self.config.dataset_update.warmup_steps > 0:
            CONSOLE.print(
                f"Warm-up: {self.config.dataset_update.warmup_steps} steps on the observed pixels, then the training "
                "views are inpainted from the NeRF's renders at strength "
                f"{self.config.dataset_update.initial_strength}."
            )
        else:
            if self.config.visibility.enabled:
                CONSOLE.print(
                    "[bold yellow]Visibility-aware inpainting needs geometry, and there is no warm-up "
                    "(--pipeline.dataset-update.warmup-steps 0): the whole masks are inpainted now and reduced to "
                    "what no view saw at the first dataset update."
                )
            self._show_update(trainer, self.updater.initial_inpainting())
        steps = sorted(self.updater.update_steps)
        if steps:
            CONSOLE.print(
                f"Dataset updates: {len(steps)} at steps {steps[0]}..{steps[-1]} every "
                f"{self.config.dataset_update.update_every}, strength {self.updater.strength(0):.2f} -> "
                f"{self.updater.strength(self.updater.last_index):.2f}."
            )

    def get_extra_state(self) -> Dict[str, Any]:
        """The dataset-update schedule's state and the inpainter's files (the LDM's LoRA adapter), when its
        preparation returned any."""
        state: Dict[str, Any] = {"dataset_update": self.updater.state.as_dict()}
        if self.inpainter_files:
            state["lora_adapter_files"] = dict(self.inpainter_files)  # the key checkpoints have always used
        return state

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict):
            return
        if state.get("lora_adapter_files"):
            self.inpainter_files = dict(state["lora_adapter_files"])
        if "dataset_update" in state:
            self.updater.state = UpdateState.from_dict(state["dataset_update"])

    def load_pipeline(self, loaded_state: Dict[str, Any], step: int, legacy_horizon: Optional[int] = None) -> None:
        """nerfstudio's loading, then the viewer's update count and strength from the checkpoint (``ns-viewer`` on
        a finished run shows the run's values, not 0 and 1). A checkpoint written before the schedule's state was
        the updater's holds it in the datamanager's entry, and its horizon in the trainer's (``legacy_horizon``)."""
        super().load_pipeline(loaded_state, step)
        extra = loaded_state.get("_extra_state", loaded_state.get("module._extra_state"))
        if not (isinstance(extra, dict) and "dataset_update" in extra):
            legacy = loaded_state.get("datamanager._extra_state", loaded_state.get("module.datamanager._extra_state"))
            if isinstance(legacy, dict) and "num_updates" in legacy:
                self.updater.state = UpdateState.from_dict(legacy, horizon=legacy_horizon)
        self._show_update_numbers()

    def _show_update_numbers(self) -> None:
        state = self.updater.state
        self.viewer_update_count.value = int(state.num_updates)
        if state.history:
            self.viewer_strength.value = float(state.history[-1][1])

    def _show_update(self, trainer: "TrainingRun", views: List[int]) -> None:
        """The update numbers, and the refreshed views' thumbnails when the run has a viewer."""
        self._show_update_numbers()
        if views and trainer.viewer_state is not None:
            unseen = self.datamanager.fill_masks if self.config.visibility.enabled else None
            refresh_camera_thumbnails(trainer.viewer_state, self.datamanager.train_dataset, views, unseen)

    def _prepare_before_first_step(self, trainer: "TrainingRun", step: int) -> None:
        if not self._prepared:  # the viewer's scene is up by now, so it shows the cameras during the preparation
            self.prepare_training(trainer)

    def _update_after_step(self, trainer: "TrainingRun", step: int) -> None:
        views = self.updater.step(step) if self.updater.inpainter is not None else []  # a pass offloads the LDM
        if views:
            self._show_update(trainer, views)

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        """nerfstudio's callbacks, then the preparation before the first step and the dataset update after each."""
        callbacks = super().get_training_callbacks(training_callback_attributes)
        trainer = training_callback_attributes.trainer
        callbacks += [
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=self._prepare_before_first_step,
                args=[trainer],
            ),
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=self._update_after_step,
                args=[trainer],
            ),
        ]
        return callbacks

    # ------------------------------------------------------------ evaluation
    @torch.no_grad()
    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ) -> Dict[str, Any]:
        """Metrics over the object-free evaluation views: per-image averages plus the set metrics (FID/KID). A
        scene without such views is scored without ground truth (:func:`evaluate_without_ground_truth`).

        With ``get_std`` (as ``ns-eval`` calls it) the result also lists every image's metrics under
        ``per_image`` and the metrics that could not be computed, with the reason, under ``unavailable_metrics``.
        """
        dataset = self.datamanager.eval_dataset
        if dataset is None or len(dataset) == 0:
            CONSOLE.print(
                "No object-free views in this scene: scoring the masked training views without ground truth "
                "(C-SWD, C-FID, C-KID on crops around the inpainting border against crops of observed pixels)."
            )
            return evaluate_without_ground_truth(self, with_details=get_std)
        return evaluate_views(self, output_path=output_path, with_details=get_std, get_std=get_std)

    # --------------------------------------------------------------- losses
    def get_train_loss_phases(self, step: int) -> Iterator[LossPhase]:
        """The NeRF's losses of one iteration, one :class:`LossPhase` per NeRF optimizer step.

        One ``"nerf"`` phase renders observed and patch rays together (their losses are summed); with
        ``separate_inpainting_step`` a ``"reconstruction"`` phase renders the observed rays, and once the trainer
        has stepped on it, an ``"inpainting"`` phase renders the patch rays with the updated field. The forward
        pass of a phase runs when the trainer asks for it, so the trainer's autocast covers it. The phase with the
        patch rays carries the patches of the iteration's discriminator step.
        """
        ray_bundle, batch = self.datamanager.next_train(step)
        model: MaldNerfModel = self.model  # type: ignore[assignment]
        observed = batch.num_observed
        if not self.config.separate_inpainting_step or batch.patches is None:
            outputs = self._model(ray_bundle)
            metrics = model.get_metrics_dict(outputs, batch)
            losses = model.get_reconstruction_loss_dict(outputs, batch, metrics)
            inpainting = model.get_inpainting_losses(outputs["rgb"][observed:], batch)
            yield LossPhase("nerf", {**losses, **inpainting.losses}, {**metrics, **inpainting.metrics},
                            inpainting.patches)
            return
        outputs = self._model(ray_bundle[:observed])
        metrics = model.get_metrics_dict(outputs, batch)
        yield LossPhase("reconstruction", model.get_reconstruction_loss_dict(outputs, batch, metrics), metrics)
        outputs = self._model(ray_bundle[observed:])
        inpainting = model.get_inpainting_losses(outputs["rgb"], batch)
        yield LossPhase("inpainting", inpainting.losses, inpainting.metrics, inpainting.patches)
