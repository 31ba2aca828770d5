"""The mald-nerf trainer: nerfstudio's Trainer with MALD-NeRF's NeRF step(s) and discriminator step per iteration.

Each iteration:

1. the NeRF step: by default one forward pass over the observed rays and the mask patches, and one step on the sum
   of nerfacto's losses (pixel, interlevel, distortion: observed rays only) and the adversarial and feature-matching
   losses (patches, the discriminator frozen), for every parameter group except the discriminator's. With the
   pipeline's ``separate_inpainting_step`` on (the spec's form), a reconstruction step on the observed rays, then
   the patches rendered with the updated field for an inpainting step with its own gradient scaler: two optimizer
   steps per iteration, which a comparison at one budget counts (docs/decisions.md);
2. discriminator update: the discriminator's loss on the detached renders and the inpainted patches (plus the
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

Where nerfstudio's trainer is changed for the edges of a run:

* before any work the run folder is created and locked (:mod:`mald_nerfstudio.run_folder`): a read-only or full
  output folder, or a second run writing the same folder, is refused in one paragraph; ``config.yml`` is written
  once the set-up passed its checks, and a refused run leaves no folder (nerfstudio writes ``config.yml`` first);
* a checkpoint of another method, scene or model configuration is refused, naming both runs; ``warm_start`` loads
  the matching tensors of any checkpoint into a new run on purpose and lists what was not loaded;
* Ctrl-C stops once the current step has finished (a second Ctrl-C stops at once), saves a checkpoint when a step
  finished since the last one, and prints one line with that checkpoint and the command that resumes the run
  (nerfstudio's ``launch`` prints the ``KeyboardInterrupt`` traceback and exits 0; we exit 130);
* a checkpoint that cannot be written (a full disk) stops the run with a paragraph: the previous checkpoint is
  intact.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import shlex
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

import torch

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.trainer import TRAIN_INTERATION_OUTPUT, Trainer, TrainerConfig
from nerfstudio.utils import comms, profiler, writer
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE

from mald_nerfstudio.checkpoint_files import (
    atomic_torch_save,
    capture_rng_state,
    checkpoint_origin,
    checkpoint_steps,
    compare_pipeline_state,
    read_resume_checkpoint,
    recorded_method,
    restore_rng_state,
    scene_fingerprint,
)
from mald_nerfstudio.errors import MaldInputError, install_run_hooks
from mald_nerfstudio.model.adversarial_loss import PatchBatch
from mald_nerfstudio.model.mald_model import DISCRIMINATOR_GROUP, LossPhase
from mald_nerfstudio.pipeline.mald_pipeline import MaldPipeline
from mald_nerfstudio.run_folder import RunFolderClaim

RUN_STATE_KEY = "mald_run"
"""Checkpoint entry with what a resumed run needs beyond nerfstudio's: random states, our steps' scalers and counter,
the run's origin (the dataset-update schedule's state is the pipeline's)."""
INTERRUPTED_EXIT_STATUS = 130
"""Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it), so scripts do not go on."""
_RUN_FOLDER_OPTIONS = ("--timestamp", "--load-dir", "--load-step", "--load-checkpoint")
"""ns-train options a resume command sets itself (the others are repeated as the run was started)."""


class _StopRequested(KeyboardInterrupt):
    """Raised at the start of a step after a Ctrl-C: the previous step has finished."""


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
    warm_start: bool = False
    """Start a new run at step 0 from the matching tensors of --load-dir's checkpoint (any run); lists the rest."""

    def save_config(self) -> None:
        """Deferred: ns-train calls this before the trainer checks the run folder, data and checkpoint;
        :meth:`MaldTrainer.setup` writes ``config.yml`` once they passed, so a refused run leaves no folder."""


class MaldTrainer(Trainer):
    """Trainer with a separate discriminator step, a pre-training preparation hook and runs that resume exactly."""

    def __init__(self, config: TrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        install_run_hooks()  # our errors as paragraphs, our checkpoints on torch's safe loader
        super().__init__(config, local_rank, world_size)
        self.discriminator_scaler = type(self.grad_scaler)(enabled=self.grad_scaler.is_enabled())
        """Gradient scaler of the discriminator step (the NeRF step keeps nerfstudio's ``grad_scaler``)."""
        self.inpainting_scaler = type(self.grad_scaler)(enabled=self.grad_scaler.is_enabled())
        """Gradient scaler of the separate inpainting step, when the pipeline has one."""
        self.run_length: int = config.max_num_iterations
        """The run's total number of steps, counted from step 0 (also while resuming)."""
        self._resumed_rng: Optional[Dict[str, Any]] = None
        self.nerf_optimizer_steps = 0
        """NeRF optimizer steps so far (one per loss phase stepped; checkpointed): what budget comparisons count."""
        self.run_folder: Optional[RunFolderClaim] = None
        """This run's claim on its run folder (the main process's; None in the other processes of a multi-GPU run)."""
        self._origin: Optional[Dict[str, str]] = None
        self._saved_step: Optional[int] = None
        self._loop_step: Optional[int] = None
        self._stop_requested = False

    def train(self) -> None:
        """nerfstudio's training loop, ending at the run's total length, stopped cleanly by Ctrl-C; the run folder's
        lock is released at the end."""
        total = self.run_length = self.config.max_num_iterations
        remaining = total - self._start_step
        try:
            if remaining <= 0:
                CONSOLE.print(
                    f"[bold yellow]Nothing to train: the checkpoint is at step {self._start_step - 1} and this run "
                    f"is {total} steps long (mald-nerf counts --max-num-iterations from step 0, also when resuming). "
                    "Pass a larger --max-num-iterations to train longer."
                )
                return
            # nerfstudio's loop runs max_num_iterations steps from the loaded step; ours ends at step total - 1.
            self.config.max_num_iterations = remaining
            try:
                with self._ctrl_c_stops_after_the_step():
                    super().train()
            except KeyboardInterrupt as interrupt:
                self._stop_after_ctrl_c(interrupt)
        finally:
            self.config.max_num_iterations = total
            self._loop_step = None
            if self.run_folder is not None:
                self.run_folder.release()

    def setup(self, test_mode: str = "val") -> None:
        """Claim the run folder (created, writable, locked) before any work; then nerfstudio's set-up, with our
        callbacks around the pipeline's: one first in each step (where a Ctrl-C stops the run) and, after the
        pipeline's, the restore of a resumed run's random states (after the pipeline's preparation, which draws
        random numbers only in a fresh run). ``config.yml`` is written last; a refused run leaves no folder."""
        main = comms.is_main_process()
        try:
            if main:
                self.run_folder = RunFolderClaim.claim(self.base_dir)
            super().setup(test_mode)
            self.callbacks.insert(
                0,
                TrainingCallback(
                    where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                    update_every_num_iters=1,
                    func=self._begin_step,
                ),
            )
            self.callbacks.append(
                TrainingCallback(
                    where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                    update_every_num_iters=1,
                    func=self._restore_resumed_rng,
                )
            )
            if main:
                TrainerConfig.save_config(self.config)
        except BaseException as err:
            if self.run_folder is not None:
                self.run_folder.abandon()
            if isinstance(err, KeyboardInterrupt):
                CONSOLE.print("Stopped by Ctrl-C before training started; nothing was written.")
                raise SystemExit(INTERRUPTED_EXIT_STATUS) from None
            raise

    # ------------------------------------------------------------ Ctrl-C
    def _begin_step(self, step: int) -> None:
        if self._stop_requested:  # the previous step has finished: stop here
            raise _StopRequested
        self._loop_step = step

    def _after_train(self) -> None:
        self._loop_step = None  # a Ctrl-C while the final checkpoint is saved or the viewer stays up stops at once
        super()._after_train()

    @contextlib.contextmanager
    def _ctrl_c_stops_after_the_step(self) -> Iterator[None]:
        """While training, the first Ctrl-C asks the loop to stop once the current step has finished (the
        interrupted state would be half a step: neither saveable nor resumable exactly)."""
        if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # e.g. ignored in a background job
        ):
            yield
            return

        def on_ctrl_c(signum, frame) -> None:
            if self._loop_step is None or self._stop_requested:
                raise KeyboardInterrupt
            if self.training_state == "paused":  # (in the viewer) between two steps: stop now
                raise _StopRequested
            self._stop_requested = True
            CONSOLE.print(f"Ctrl-C: stopping once step {self._loop_step} has finished (Ctrl-C again stops at once, "
                          "without saving it).", soft_wrap=True, markup=False, highlight=False)

        signal.signal(signal.SIGINT, on_ctrl_c)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _stop_after_ctrl_c(self, interrupt: KeyboardInterrupt) -> None:
        """Save the last finished step if it is not saved yet, print where the last checkpoint is and how to
        resume, and exit with status 130; after a finished run (the viewer kept up) just say where it is."""
        interrupted_step, self._loop_step = self._loop_step, None  # from here a Ctrl-C stops at once
        finished = self.step - 1 if isinstance(interrupt, _StopRequested) else None
        if finished is not None and (self._saved_step is None or finished > self._saved_step):
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: the atomic save keeps the last one
                self.save_checkpoint(finished)
        writer.write_out_storage()
        newest = checkpoint_steps(self.checkpoint_dir)
        if self.training_state == "completed" and newest and newest[0][0] == self.step:
            CONSOLE.print(f"The run has finished; its last checkpoint is {newest[0][1]}.", soft_wrap=True,
                          markup=False, highlight=False)
            return
        if finished is not None:
            what = f"Stopped by Ctrl-C after step {finished}"
        elif interrupted_step is not None:
            what = f"Stopped by Ctrl-C during step {interrupted_step} (not saved: it had not finished)"
        else:
            what = "Stopped by Ctrl-C"
        if newest:
            where = f"the last checkpoint is {newest[0][1]}. Resume with: {self.resume_command()}"
        else:
            where = "no checkpoint was written yet, so there is nothing to resume: start the run again"
        CONSOLE.print(f"{what}; {where}", soft_wrap=True, markup=False, highlight=False)
        raise SystemExit(INTERRUPTED_EXIT_STATUS)

    def resume_command(self, argv: Optional[List[str]] = None) -> str:
        """The command that resumes this run: the ns-train command it was started with (``argv``, default
        ``sys.argv``) with ``--timestamp`` and ``--load-dir`` set to this run's (placed after the method name, where
        tyro reads the trainer's options); from outside ns-train, the method, data and output folder only."""
        argv = list(sys.argv if argv is None else argv)
        own = ["--timestamp", str(self.config.timestamp), "--load-dir", str(self.checkpoint_dir)]
        if argv and Path(argv[0]).name == "ns-train" and len(argv) > 1 and not argv[1].startswith("-"):
            rest, skip_value = [], False
            for arg in argv[2:]:
                if skip_value:
                    skip_value = False
                    continue
                name = arg.split("=", 1)[0].replace("_", "-")
                if name in _RUN_FOLDER_OPTIONS:
                    skip_value = "=" not in arg
                    continue
                rest.append(arg)
            return shlex.join(["ns-train", argv[1], *own, *rest])
        data = self.config.pipeline.datamanager.data or getattr(self.config.pipeline.datamanager.dataparser, "data",
                                                                None)
        return shlex.join(["ns-train", str(self.config.method_name), "--data", str(data), "--output-dir",
                           str(self.config.output_dir), *own]) + " (and the options the run was started with)"

    def _restore_resumed_rng(self, step: int) -> None:
        if self._resumed_rng is not None:
            restore_rng_state(self._resumed_rng)
            self._resumed_rng = None

    # ------------------------------------------------------------ checkpoints
    def origin(self) -> Dict[str, str]:
        """This run's method, data folder and scene fingerprint, as its checkpoints record them."""
        if self._origin is None:
            datamanager = self.pipeline.datamanager
            data = getattr(datamanager.config.dataparser, "data", None) or self.config.pipeline.datamanager.data
            outputs = getattr(datamanager, "train_dataparser_outputs", None)
            scene = ""
            if outputs is not None:
                cameras = outputs.cameras
                sizes = torch.stack([cameras.height.flatten(), cameras.width.flatten()], dim=-1)
                scene = scene_fingerprint(outputs.image_filenames, cameras.camera_to_worlds, sizes)
            self._origin = checkpoint_origin(str(self.config.method_name), data, scene)
        return self._origin

    def _checkpoint_bytes(self) -> int:
        """At least what one checkpoint of this run takes: the pipeline's tensors and Adam's two moments."""
        tensors = [v for v in self.pipeline.state_dict().values() if isinstance(v, torch.Tensor)]
        parameters = [p for group in self.optimizers.parameters.values() for p in group]
        return sum(t.numel() * t.element_size() for t in tensors) + 2 * sum(
            p.numel() * p.element_size() for p in parameters
        )

    def _check_checkpoint_fits(self, path: Path, loaded_state: Dict[str, Any]) -> None:
        """Refuse to resume from a checkpoint of another method, scene or model configuration, naming both."""
        origin = (loaded_state.get(RUN_STATE_KEY) or {}).get("origin") or {}
        mine = self.origin()
        theirs = origin.get("method") or recorded_method(path)
        mismatch = compare_pipeline_state(loaded_state["pipeline"], self.pipeline.state_dict())
        warm = (f"or pass --warm-start True to start a new {mine['method']} run from the tensors of it that match "
                "(the rest is listed)")
        if theirs is not None and theirs != mine["method"]:
            detail = mismatch.describe() or "its tensors have the same names and shapes, but it trains another way"
            raise MaldInputError(
                f"this checkpoint is of a {theirs} run and this run is {mine['method']} ({detail}); resuming "
                "continues the run a checkpoint belongs to",
                path,
                f"resume it with ns-train {theirs} and the options it was started with, pass a {mine['method']} "
                f"run's checkpoint folder, {warm}",
            )
        if origin.get("scene") and mine["scene"] and origin["scene"] != mine["scene"]:
            raise MaldInputError(
                f"this checkpoint was trained on the scene {origin.get('data')} and this run's scene is "
                f"{mine['data']}: their training views differ (image names, camera poses or sizes: another scene, "
                "or other data-parser options)",
                path,
                f"resume with --data {origin.get('data')} and the data-parser options the run was started with, "
                f"{warm}",
            )
        if mismatch:
            raise MaldInputError(
                f"this checkpoint ({theirs or 'of a run whose method it does not record'}) does not fit this "
                f"{mine['method']} run's model: {mismatch.describe()}; the model was configured another way",
                path,
                f"resume with the options the run was started with (its config.yml), {warm}",
            )

    def _warm_start(self, path: Path, loaded_state: Dict[str, Any]) -> None:
        """Load the checkpoint's model tensors that match this model by name and shape; everything else (the
        other tensors, optimizers, schedules, inpainted images, random states, step) starts fresh."""
        origin = (loaded_state.get(RUN_STATE_KEY) or {}).get("origin") or {}
        theirs = origin.get("method") or recorded_method(path) or "a run of unrecorded method"
        prefix = "_model."
        checkpoint = {key[len("module."):] if key.startswith("module.") else key: value
                      for key, value in loaded_state["pipeline"].items()}
        model_state = {prefix + key: value for key, value in self.pipeline.model.state_dict().items()}
        candidates = {key: value for key, value in checkpoint.items() if key.startswith(prefix)}
        mismatch = compare_pipeline_state(candidates, model_state)
        skipped = set(mismatch.other_shape)
        matching = {key[len(prefix):]: value for key, value in candidates.items()
                    if key in model_state and key not in skipped and isinstance(value, torch.Tensor)}
        self.pipeline.model.load_state_dict(matching, strict=False)
        tensors = sum(isinstance(value, torch.Tensor) for value in model_state.values())
        CONSOLE.print(
            f"Warm start (--warm-start) from {path} ({theirs}, step {loaded_state['step']}): loaded {len(matching)} "
            f"of this model's {tensors} tensors. Not loaded: {mismatch.describe() or 'none'}. Optimizers, "
            "schedules, inpainted images and random states start fresh, at step 0.",
            soft_wrap=True, markup=False, highlight=False,
        )

    def _load_checkpoint(self) -> None:
        """nerfstudio's ``Trainer._load_checkpoint`` (copied), changed to check first that the run folder's disk
        can hold a checkpoint, to skip a damaged newest checkpoint for the previous good one, to give a paragraph
        instead of a traceback for a damaged file or a checkpoint of another run (or to warm-start from it when
        asked), and to restore the random states and the scalers and counters of our steps."""
        if self.run_folder is not None:
            self.run_folder.check_free_space(self._checkpoint_bytes())
        path, loaded_state = read_resume_checkpoint(
            self.config.load_dir, self.config.load_step, self.config.load_checkpoint
        )
        if loaded_state is None:
            CONSOLE.print("No Nerfstudio checkpoint to load, so training from scratch.")
            return
        assert path is not None
        if getattr(self.config, "warm_start", False):
            self._warm_start(path, loaded_state)
            return
        self._check_checkpoint_fits(path, loaded_state)
        self._saved_step = int(loaded_state["step"])
        self._start_step = loaded_state["step"] + 1
        run_state = loaded_state.get(RUN_STATE_KEY) or {}
        if isinstance(self.pipeline, MaldPipeline):  # older checkpoints kept the schedule's horizon in the run state
            self.pipeline.load_pipeline(loaded_state["pipeline"], loaded_state["step"],
                                        legacy_horizon=run_state.get("schedule_horizon"))
        else:
            self.pipeline.load_pipeline(loaded_state["pipeline"], loaded_state["step"])
        self.optimizers.load_optimizers(loaded_state["optimizers"])
        if "schedulers" in loaded_state and self.config.load_scheduler:
            self.optimizers.load_schedulers(loaded_state["schedulers"])
        self.grad_scaler.load_state_dict(loaded_state["scalers"])
        if "discriminator_scaler" in run_state:
            self.discriminator_scaler.load_state_dict(run_state["discriminator_scaler"])
        self.nerf_optimizer_steps = int(run_state.get("nerf_optimizer_steps", 0))
        if "inpainting_scaler" in run_state:
            self.inpainting_scaler.load_state_dict(run_state["inpainting_scaler"])
        self._resumed_rng = run_state.get("rng")
        CONSOLE.print(f"Done loading Nerfstudio checkpoint from {path} (resuming at step {self._start_step}).")

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's ``Trainer.save_checkpoint`` (copied), changed to write the file atomically (a run killed
        while saving leaves the previous checkpoint intact), to add the run state a resume needs and the run's
        origin, and to stop with a paragraph when the file cannot be written (a full disk)."""
        ckpt_path: Path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline  # type: ignore
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            self._write_checkpoint(step, ckpt_path, pipeline)
        except OSError as err:
            previous = checkpoint_steps(self.checkpoint_dir)
            reason = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else (err.strerror or str(err))
            if previous:
                kept, fix = (f"the previous checkpoint {previous[0][1].name} is intact",
                             f"free space on that disk, then resume with: {self.resume_command()}")
            else:
                kept, fix = "no earlier checkpoint exists", "free space on that disk and start the run again"
            raise MaldInputError(
                f"the checkpoint of step {step} could not be written ({reason}), so the run stopped; {kept}",
                self.checkpoint_dir, fix,
            ) from None
        self._saved_step = step
        if self.config.save_only_latest_checkpoint:
            for f in self.checkpoint_dir.glob("*.ckpt"):
                if f != ckpt_path:
                    f.unlink()

    def _write_checkpoint(self, step: int, ckpt_path: Path, pipeline: Any) -> None:
        atomic_torch_save(
            {
                "step": step,
                "pipeline": pipeline.state_dict(),
                "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
                "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
                "scalers": self.grad_scaler.state_dict(),
                RUN_STATE_KEY: {
                    "rng": capture_rng_state(),
                    "discriminator_scaler": self.discriminator_scaler.state_dict(),
                    "inpainting_scaler": self.inpainting_scaler.state_dict(),
                    "nerf_optimizer_steps": self.nerf_optimizer_steps,
                    "origin": self.origin(),
                },
            },
            ckpt_path,
        )

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
