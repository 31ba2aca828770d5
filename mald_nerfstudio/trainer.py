"""The mald-nerf trainer: nerfstudio's Trainer with MALD-NeRF's three-step iteration.

Each iteration:

1. reconstruction: the observed rays are rendered and nerfacto's losses (pixel, interlevel, distortion) update
   every parameter group except the discriminator's;
2. inpainting: the mask patches are rendered with the updated field and the adversarial and feature-matching
   losses (the discriminator frozen) update the same groups, with their own gradient scaler. With the pipeline's
   ``separate_inpainting_step`` off, 1 and 2 are one forward pass and one step on the summed losses;
3. discriminator update: the discriminator's loss on the detached renders and the inpainted patches (plus the
   R1 penalty) updates the discriminator's parameter group only.

Each step has its own gradient scaler (nerfstudio's for the NeRF, one more for the discriminator), so an overflow
in the discriminator's fp16 backward neither lowers the NeRF's scale nor skips the NeRF's scheduler step. The
discriminator step judges the patches the NeRF's pass over them returned (a :class:`LossPhase`'s ``patches``). The
pipeline's training callbacks customise the diffusion model and inpaint the training views before the first
iteration (skipped when a checkpoint already holds them) and run the dataset updates.

A run resumed with ``--load-dir`` finishes the same run: ``--max-num-iterations`` is the run's total length
(nerfstudio counts it from the loaded step), the dataset-update schedule keeps the horizon it started with, and
the random states are those of the step the checkpoint was written at. Checkpoints are written atomically and a
damaged newest checkpoint is skipped for the previous good one (:mod:`mald_nerfstudio.checkpoint_files`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple, Type

import torch

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.trainer import TRAIN_INTERATION_OUTPUT, Trainer, TrainerConfig
from nerfstudio.utils import profiler
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE

from mald_nerfstudio.checkpoint_files import (
    atomic_torch_save,
    capture_rng_state,
    read_resume_checkpoint,
    restore_rng_state,
)
from mald_nerfstudio.model.adversarial_loss import PatchBatch
from mald_nerfstudio.model.mald_model import DISCRIMINATOR_GROUP, LossPhase
from mald_nerfstudio.pipeline.mald_pipeline import MaldPipeline

RUN_STATE_KEY = "mald_run"
"""Checkpoint entry with what a resumed run needs beyond nerfstudio's: the schedule horizon and random states."""


@dataclass
class AdamBetasOptimizerConfig(AdamOptimizerConfig):
    """Adam with configurable betas (GAN discriminators are usually trained with beta1 = 0)."""

    betas: Tuple[float, float] = (0.0, 0.99)
    """Adam's (beta1, beta2)."""


@dataclass
class MaldTrainerConfig(TrainerConfig):
    """nerfstudio TrainerConfig whose trainer runs MALD-NeRF's generator / discriminator iteration."""

    _target: Type = field(default_factory=lambda: MaldTrainer)
    """Target class to instantiate."""


class MaldTrainer(Trainer):
    """Trainer with a separate discriminator step, a pre-training preparation hook and runs that resume exactly."""

    def __init__(self, config: TrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        super().__init__(config, local_rank, world_size)
        self.schedule_horizon: int = config.max_num_iterations
        """Length of the run the dataset-update schedule is planned for (kept from the first start on resume)."""
        self.discriminator_scaler = type(self.grad_scaler)(enabled=self.grad_scaler.is_enabled())
        """Gradient scaler of the discriminator step (the NeRF step keeps nerfstudio's ``grad_scaler``)."""
        self.inpainting_scaler = type(self.grad_scaler)(enabled=self.grad_scaler.is_enabled())
        """Gradient scaler of the separate inpainting step, when the pipeline has one."""
        self.run_length: int = config.max_num_iterations
        """The run's total number of steps, counted from step 0 (also while resuming)."""
        self._resumed_rng: Optional[Dict[str, Any]] = None
        self.nerf_optimizer_steps = 0
        """NeRF optimizer steps so far (one per loss phase stepped; checkpointed): what budget comparisons count."""

    def train(self) -> None:
        total = self.run_length = self.config.max_num_iterations
        remaining = total - self._start_step
        if remaining <= 0:
            CONSOLE.print(
                f"[bold yellow]Nothing to train: the checkpoint is at step {self._start_step - 1} and this run is "
                f"{total} steps long (mald-nerf counts --max-num-iterations from step 0, also when resuming). Pass "
                "a larger --max-num-iterations to train longer."
            )
            return
        # nerfstudio's loop runs max_num_iterations steps from the loaded step; ours ends at step total - 1.
        self.config.max_num_iterations = remaining
        try:
            super().train()
        finally:
            self.config.max_num_iterations = total

    def setup(self, test_mode: str = "val") -> None:
        """nerfstudio's set-up, then one more callback after the pipeline's: a resumed run's random states are
        restored before its first step, after the pipeline's preparation (which draws random numbers only in a
        fresh run)."""
        super().setup(test_mode)
        self.callbacks.append(
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=self._restore_resumed_rng,
            )
        )

    def _restore_resumed_rng(self, step: int) -> None:
        if self._resumed_rng is not None:
            restore_rng_state(self._resumed_rng)
            self._resumed_rng = None

    def _load_checkpoint(self) -> None:
        """nerfstudio's ``Trainer._load_checkpoint`` (copied), changed to skip a damaged newest checkpoint for the
        previous good one, to give a paragraph instead of a traceback for a damaged file, and to restore the
        schedule horizon and the random states."""
        path, loaded_state = read_resume_checkpoint(
            self.config.load_dir, self.config.load_step, self.config.load_checkpoint
        )
        if loaded_state is None:
            CONSOLE.print("No Nerfstudio checkpoint to load, so training from scratch.")
            return
        self._start_step = loaded_state["step"] + 1
        self.pipeline.load_pipeline(loaded_state["pipeline"], loaded_state["step"])
        self.optimizers.load_optimizers(loaded_state["optimizers"])
        if "schedulers" in loaded_state and self.config.load_scheduler:
            self.optimizers.load_schedulers(loaded_state["schedulers"])
        self.grad_scaler.load_state_dict(loaded_state["scalers"])
        run_state = loaded_state.get(RUN_STATE_KEY) or {}
        if "discriminator_scaler" in run_state:
            self.discriminator_scaler.load_state_dict(run_state["discriminator_scaler"])
        self.nerf_optimizer_steps = int(run_state.get("nerf_optimizer_steps", 0))
        if "inpainting_scaler" in run_state:
            self.inpainting_scaler.load_state_dict(run_state["inpainting_scaler"])
        self.schedule_horizon = int(run_state.get("schedule_horizon", self.config.max_num_iterations))
        self._resumed_rng = run_state.get("rng")
        if self.schedule_horizon != self.config.max_num_iterations:
            CONSOLE.print(
                f"[bold yellow]This run was started for {self.schedule_horizon} steps and now ends at step "
                f"{self.config.max_num_iterations}; its dataset-update schedule keeps the original horizon."
            )
        CONSOLE.print(f"Done loading Nerfstudio checkpoint from {path} (resuming at step {self._start_step}).")

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's ``Trainer.save_checkpoint`` (copied), changed to write the file atomically (a run killed
        while saving leaves the previous checkpoint intact) and to add the run state a resume needs."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        ckpt_path: Path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline  # type: ignore
        atomic_torch_save(
            {
                "step": step,
                "pipeline": pipeline.state_dict(),
                "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
                "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
                "scalers": self.grad_scaler.state_dict(),
                RUN_STATE_KEY: {
                    "schedule_horizon": self.schedule_horizon,
                    "rng": capture_rng_state(),
                    "discriminator_scaler": self.discriminator_scaler.state_dict(),
                    "inpainting_scaler": self.inpainting_scaler.state_dict(),
                    "nerf_optimizer_steps": self.nerf_optimizer_steps,
                },
            },
            ckpt_path,
        )
        if self.config.save_only_latest_checkpoint:
            for f in self.checkpoint_dir.glob("*.ckpt"):
                if f != ckpt_path:
                    f.unlink()

    def _autocast_device(self) -> str:
        device = self.device.split(":")[0]
        return "cpu" if device == "mps" else device

    @profiler.time_function
    def train_iteration(self, step: int) -> TRAIN_INTERATION_OUTPUT:
        """nerfstudio's ``Trainer.train_iteration`` (copied), changed to run one NeRF step per loss phase of the
        pipeline (one summed step, or reconstruction then inpainting, each with its own scaler), to leave the
        discriminator's group out of the NeRF steps and to run the discriminator step on the patches a phase
        returned, with its own scaler, before the schedulers advance."""
        groups = list(self.optimizers.parameters.keys())
        nerf_groups = [g for g in groups if g != DISCRIMINATOR_GROUP]
        accumulate = self.gradient_accumulation_steps
        phases = self._loss_phases(step)
        total_loss: Optional[torch.Tensor] = None
        loss_dict: Dict[str, torch.Tensor] = {}
        metrics_dict: Dict[str, Any] = {}
        patches: Optional[PatchBatch] = None
        index = 0
        while True:
            # A phase's forward pass runs inside next(), so under autocast, after the previous phase's step.
            with torch.autocast(device_type=self._autocast_device(), enabled=self.mixed_precision):
                phase = next(phases, None)
                if phase is None:
                    break
                if not phase.losses:  # nothing to learn in this phase (e.g. no loss in the mask is switched on)
                    metrics_dict.update(phase.metrics)
                    continue
                loss = functools.reduce(torch.add, phase.losses.values())
            scaler = self.grad_scaler if index == 0 else self.inpainting_scaler
            # Gradient accumulation applies to the first (or only) phase; a later phase steps every iteration.
            self.optimizers.zero_grad_some([g for g in nerf_groups if index > 0 or step % accumulate[g] == 0])
            scaler.scale(loss).backward()  # type: ignore[union-attr]
            self.optimizers.optimizer_scaler_step_some(
                scaler, [g for g in nerf_groups if index > 0 or step % accumulate[g] == accumulate[g] - 1]
            )
            if index > 0:
                scaler.update()
            self.nerf_optimizer_steps += 1
            loss_dict.update(phase.losses)
            metrics_dict.update(phase.metrics)
            patches = phase.patches if phase.patches is not None else patches
            total_loss = loss.detach() if total_loss is None else total_loss + loss.detach()
            index += 1

        if self.config.log_gradients:
            total = torch.zeros(())
            for tag, value in self.pipeline.model.named_parameters():
                if value.grad is not None:
                    metrics_dict[f"Gradients/{tag}"] = value.grad.norm()
                    total = total + metrics_dict[f"Gradients/{tag}"].cpu()
            metrics_dict["Gradients/Total"] = total

        metrics_dict["nerf_optimizer_steps"] = self.nerf_optimizer_steps
        if DISCRIMINATOR_GROUP in self.optimizers.optimizers and patches is not None:
            metrics_dict.update(self._discriminator_step(step, patches))

        scale = self.grad_scaler.get_scale()
        self.grad_scaler.update()
        # A decreased scale means the step was skipped (inf/nan gradients): do not advance the schedulers.
        if scale <= self.grad_scaler.get_scale():
            self.optimizers.scheduler_step_all(step)
        return total_loss, loss_dict, metrics_dict  # type: ignore[return-value]

    def _loss_phases(self, step: int) -> Iterator[LossPhase]:
        """The pipeline's loss phases, or nerfstudio's one summed loss for a pipeline without phases."""
        if isinstance(self.pipeline, MaldPipeline):
            yield from self.pipeline.get_train_loss_phases(step)
            return
        _, loss_dict, metrics_dict = self.pipeline.get_train_loss_dict(step=step)
        yield LossPhase("nerf", loss_dict, metrics_dict)

    def _discriminator_step(self, step: int, patches: PatchBatch) -> Dict[str, torch.Tensor]:
        """Update the discriminator on this iteration's patches; returns its logs."""
        self.optimizers.zero_grad_some([DISCRIMINATOR_GROUP])
        with torch.autocast(device_type=self._autocast_device(), enabled=self.mixed_precision):
            out = self.pipeline.model.get_discriminator_losses(patches, step)
        if out is None:
            return {}
        self.discriminator_scaler.scale(out.loss).backward()  # type: ignore[union-attr]
        self.optimizers.optimizer_scaler_step_some(self.discriminator_scaler, [DISCRIMINATOR_GROUP])
        self.discriminator_scaler.update()
        return out.metrics()
