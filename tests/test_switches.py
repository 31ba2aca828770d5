"""Every switch README.md documents under "Useful switches", run through the real trainer for a few steps.

Each case parses the README's flags with tyro onto the test harness's mald-nerf-tiny config, as ``ns-train`` parses
its command line onto a method's config (the same parser, nerfstudio's ``FlagConversionOff``: booleans take
``True``/``False``), trains :data:`STEPS` iterations in-process with ``MaldTrainer.train()`` (so the preparation
and the dataset updates run in their training callbacks) on the conftest's small demo scene, and checks what the
switch is documented to do. The base config inpaints before the first step (no warm-up) and schedules dataset
updates at steps 1 and 3, so every case gets past the initial inpainting and, where updates are on, through an
update. :func:`test_every_switch_the_readme_documents_is_run` keeps the cases in step with the README.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pytest
import torch
import tyro

from mald_nerfstudio.data.training_batch import TrainingBatch
from mald_nerfstudio.errors import MaldSetupError, format_error
from mald_nerfstudio.inpaint.base import NoInpainter
from mald_nerfstudio.inpaint.exemplar import ExemplarInpainter, ExemplarInpainterConfig
from mald_nerfstudio.inpaint.ldm import LDMInpainter
from mald_nerfstudio.inpaint.schedule import noise_strength
from mald_nerfstudio.inpaint.telea import TeleaInpainter
from mald_nerfstudio.model.mald_model import DISCRIMINATOR_GROUP
from mald_nerfstudio.pipeline.dataset_update import last_update_index, scheduled_update_steps
from mald_nerfstudio.trainer import MaldTrainer, MaldTrainerConfig
from nerfstudio.utils import writer
from tests.training_harness import setup_trainer, tiny_config

README = Path(__file__).resolve().parents[1] / "README.md"
STEPS = 4
"""Training iterations per case: the initial inpainting before step 0, dataset updates after steps 1 and 3."""
UPDATE_STEPS = [1, 3]


def _base(config: MaldTrainerConfig) -> None:
    """The harness's tiny config (telea inpainter), inpainting before the first step, with two dataset updates."""
    config.pipeline.dataset_update.warmup_steps = 0
    config.pipeline.dataset_update.first_update_step = 1
    config.pipeline.dataset_update.update_every = 2
    config.pipeline.dataset_update.views_per_update = 2


def parse_flags(base: MaldTrainerConfig, flags: Sequence[str]) -> MaldTrainerConfig:
    """``flags`` applied to ``base`` as ns-train applies its command line to a method's config."""
    return tyro.cli(tyro.conf.FlagConversionOff[MaldTrainerConfig], default=base, args=list(flags))


@dataclass
class Run:
    """What a short training run did, recorded by spies on the real trainer's pieces."""

    trainer: MaldTrainer
    batches: List[TrainingBatch] = field(default_factory=list)
    """Each batch the datamanager sampled."""
    phases: List[List[Tuple[str, Tuple[str, ...]]]] = field(default_factory=list)
    """Per iteration: the pipeline's loss phases, as (name, loss names)."""
    steps: List[List[str]] = field(default_factory=list)
    """Per iteration: one entry per optimizer step, "nerf" or "discriminator"."""
    losses: List[Dict[str, float]] = field(default_factory=list)
    metrics: List[Dict] = field(default_factory=list)
    inpaint_calls: List[Tuple[float, bool, int]] = field(default_factory=list)
    """Each inpaint call: (strength, whether it started from a render, number of views)."""

    @property
    def pipeline(self):
        return self.trainer.pipeline

    def patch_iterations(self) -> List[bool]:
        """Per iteration, whether its batch carried inpainting patches."""
        return [batch.patches is not None for batch in self.batches]


def train_with_flags(scene: Path, out: Path, flags: Sequence[str], base_edit: Optional[Callable] = None) -> Run:
    """Parse ``flags`` onto the base config and train :data:`STEPS` iterations with the real trainer, recording."""

    def edit(config):
        _base(config)
        if base_edit is not None:
            base_edit(config)

    base = tiny_config(scene, out, steps=STEPS, edit=edit)
    config = parse_flags(base, flags)
    config.save_config()
    trainer = setup_trainer(config)
    run = Run(trainer)
    pipeline = trainer.pipeline

    next_train = pipeline.datamanager.next_train

    def next_train_spy(step):
        ray_bundle, batch = next_train(step)
        run.batches.append(batch)
        return ray_bundle, batch

    phases = pipeline.get_train_loss_phases

    def phases_spy(step):
        for phase in phases(step):
            run.phases[-1].append((phase.name, tuple(sorted(phase.losses))))
            yield phase

    step_some = trainer.optimizers.optimizer_scaler_step_some

    def step_spy(scaler, groups):
        groups = list(groups)
        if groups:
            run.steps[-1].append("discriminator" if groups == [DISCRIMINATOR_GROUP] else "nerf")
            assert DISCRIMINATOR_GROUP not in groups or groups == [DISCRIMINATOR_GROUP], groups
        return step_some(scaler, groups)

    iteration = trainer.train_iteration

    def iteration_spy(step):
        run.phases.append([])
        run.steps.append([])
        loss, loss_dict, metrics = iteration(step)
        assert torch.isfinite(loss), (step, loss_dict)
        run.losses.append({name: float(value) for name, value in loss_dict.items()})
        run.metrics.append(metrics)
        return loss, loss_dict, metrics

    inpainter = pipeline.inpainter
    inpaint = inpainter.inpaint

    def inpaint_spy(images, masks, init=None, strength=1.0, seeds=None):
        run.inpaint_calls.append((strength, init is not None, len(images)))
        return inpaint(images, masks, init=init, strength=strength, seeds=seeds)

    pipeline.datamanager.next_train = next_train_spy  # type: ignore[method-assign]
    pipeline.get_train_loss_phases = phases_spy  # type: ignore[method-assign]
    trainer.optimizers.optimizer_scaler_step_some = step_spy  # type: ignore[method-assign]
    trainer.train_iteration = iteration_spy  # type: ignore[method-assign]
    inpainter.inpaint = inpaint_spy  # type: ignore[method-assign]
    trainer.train()
    writer.write_out_storage()

    assert len(run.losses) == STEPS, "the run did not train every iteration"
    for losses in run.losses:
        assert "rgb_loss" in losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    nerf = [p for name, group in pipeline.get_param_groups().items() if name != DISCRIMINATOR_GROUP for p in group]
    assert all(torch.isfinite(p).all() for p in nerf)
    return run


# ------------------------------------------------------------------------------------------------ the checks
def _inpainted(run: Run) -> bool:
    """Whether the masked views now hold fills that differ from the originals inside the masks."""
    manager = run.pipeline.datamanager
    views = manager.views_with_masks()
    inside = manager.masks[views]
    return bool((manager.current[views] != manager.originals[views]).any(dim=-1)[inside].any())


def _one_nerf_step_and_a_discriminator_step(run: Run) -> None:
    """The default iteration once patches are sampled: one NeRF step on the summed losses, the discriminator step."""
    for phases, steps in zip(run.phases, run.steps):
        assert [name for name, _ in phases] == ["nerf"], phases
        assert steps == ["nerf", "discriminator"], steps


def check_no_adversarial(run: Run) -> None:
    """No in-mask loss at all: no discriminator, no patches sampled, one NeRF step per iteration and no
    inpainting-phase step (this case crashed with `reduce() of empty iterable`, issue 21 item 2)."""
    assert run.pipeline.model.discriminator is None
    assert not any(run.patch_iterations()), "patches were sampled although no loss uses them"
    for phases, steps, losses in zip(run.phases, run.steps, run.losses):
        assert steps == ["nerf"], steps
        assert [name for name, names in phases if names] == ["nerf"], phases
        assert not {"adversarial_loss", "mask_l1_loss", "mask_lpips_loss"} & set(losses), losses


def check_no_adversarial_with_l1(run: Run) -> None:
    """The 'no adversarial + L1' ablation: patches, an in-mask L1 in the NeRF step, no discriminator."""
    assert run.pipeline.model.discriminator is None
    assert all(run.patch_iterations())
    for phases, steps, losses in zip(run.phases, run.steps, run.losses):
        assert [name for name, _ in phases] == ["nerf"] and "mask_l1_loss" in phases[0][1], phases
        assert steps == ["nerf"], steps
        assert losses["mask_l1_loss"] > 0 and "adversarial_loss" not in losses, losses


def check_no_feature_matching(run: Run) -> None:
    """The adversarial loss without its feature-matching term (weight 0, so the term is not even computed)."""
    assert run.pipeline.model.adversarial_loss.config.lambda_fm == 0.0
    _one_nerf_step_and_a_discriminator_step(run)
    for losses, metrics in zip(run.losses, run.metrics):
        assert losses["adversarial_loss"] > 0 and float(metrics["adv_g_feature_matching"]) == 0.0, metrics


def check_feature_matching_by_default(run: Run) -> None:
    """(The base run, for comparison: the feature-matching term is on.)"""
    _one_nerf_step_and_a_discriminator_step(run)
    assert all(float(metrics["adv_g_feature_matching"]) > 0.0 for metrics in run.metrics)


def check_mask_l1(run: Run) -> None:
    """In-mask L1 added to the adversarial loss, both in the (summed) NeRF step."""
    _one_nerf_step_and_a_discriminator_step(run)
    for phases, losses in zip(run.phases, run.losses):
        assert {"adversarial_loss", "mask_l1_loss", "rgb_loss"} <= set(phases[0][1]), phases
        assert losses["mask_l1_loss"] > 0, losses


def check_dataset_update_off(run: Run) -> None:
    """The initial inpainting only: no update at the steps the schedule would otherwise run them."""
    config = run.pipeline.config.dataset_update
    assert not config.enabled and run.pipeline.updater.state.num_updates == 0
    assert run.inpaint_calls and all(call[:2] == (1.0, False) for call in run.inpaint_calls), run.inpaint_calls
    assert _inpainted(run) and all(run.patch_iterations())


def check_dataset_update_schedule(run: Run) -> None:
    """update-every, views-per-update, t-max, t-min, num-updates: the updates run when and as strongly as set."""
    config = run.pipeline.config.dataset_update
    steps = scheduled_update_steps(config, STEPS)
    assert steps == UPDATE_STEPS and run.pipeline.updater.state.num_updates == len(steps)
    assert [step for step, _ in run.pipeline.updater.state.history] == steps
    last = last_update_index(config, STEPS)
    expected = [noise_strength(k, last, 0.7, 0.3) for k in range(len(steps))]
    assert expected == pytest.approx([0.7, 0.3])  # num-updates 1: update 0 at t_max, update 1 at t_min
    partial = [call for call in run.inpaint_calls if call[0] < 1.0]
    assert [call[0] for call in partial] == pytest.approx(expected)
    assert all(from_render and views == 1 for _, from_render, views in partial), partial  # views-per-update 1


def check_warmup(run: Run) -> None:
    """Two steps on the observed pixels only, then the views inpainted from the render at the initial strength."""
    assert run.patch_iterations() == [False, False, True, True]
    assert [len(steps) for steps in run.steps] == [1, 1, 2, 2], run.steps
    first = [call for call in run.inpaint_calls if call[0] == pytest.approx(0.6)]
    assert first and all(from_render for _, from_render, _ in first)
    assert run.inpaint_calls[: len(first)] == first  # the initial inpainting came first, from the render


def check_two_steps(run: Run) -> None:
    """A reconstruction step, then an inpainting step on the patches rendered after it, then the discriminator."""
    assert all(run.patch_iterations())
    for phases, steps, losses in zip(run.phases, run.steps, run.losses):
        assert [name for name, _ in phases] == ["reconstruction", "inpainting"], phases
        assert steps == ["nerf", "nerf", "discriminator"], steps
        assert {"rgb_loss", "adversarial_loss"} <= set(losses)


def check_visibility(run: Run) -> None:
    """Visibility on (after a 2-step warm-up): the unseen masks are computed at the warm-up's end, lie inside the
    masks, are saved as PNGs, and the patches are judged inside the masks (tests/pipeline/test_visibility.py checks
    they are judged on the unseen masks); with recompute-every 2, again at the update of step 3, after the last
    batch; depth-tolerance reaches the config."""
    manager, config = run.pipeline.datamanager, run.pipeline.config.visibility
    assert config.enabled and config.depth_tolerance == pytest.approx(0.1) and config.recompute_every == 2
    assert run.pipeline.updater.state.visibility_step == 3  # computed at step 1 (warm-up's end), again at step 3
    assert not (manager.fill_masks & ~manager.masks).any()
    assert config.train_seen and manager.seen_trained.any() and not (manager.seen_trained & manager.fill_masks).any()
    for step in (1, 3):
        assert list((Path(run.trainer.base_dir) / "unseen_masks" / f"step_{step:06d}").glob("*.png"))
    for batch in run.batches:
        if batch.patches is not None:
            views, ys, xs = batch.patches.indices.reshape(-1, 3).unbind(-1)
            assert not (batch.patches.mask.reshape(-1) & ~manager.masks[views, ys, xs]).any()


def check_seen_untrained(run: Run) -> None:
    """Visibility on with train-seen False: the seen parts of the masks hold no observed colours and no observed
    ray is drawn inside a mask (with train-seen, the default, check_visibility's run draws some there)."""
    manager = run.pipeline.datamanager
    assert not run.pipeline.config.visibility.train_seen and run.pipeline.updater.state.visibility_step == 1
    assert not manager.seen_trained.any()
    for batch in run.batches:
        views, ys, xs = batch.observed.indices.unbind(-1)
        assert not manager.masks[views, ys, xs].any()


def check_whole_masks(run: Run) -> None:
    """Visibility off: every masked pixel is inpainted and patched, as the paper."""
    manager = run.pipeline.datamanager
    assert torch.equal(manager.fill_masks, manager.masks) and run.pipeline.updater.state.visibility_step is None
    assert _inpainted(run) and all(run.patch_iterations())


def _check_patch_appearance(mode: str) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        assert run.pipeline.model.config.patch_appearance == mode
        _one_nerf_step_and_a_discriminator_step(run)

    check.__doc__ = f"Patch rays use the appearance code as '{mode}' says (model/appearance.py tests the codes)."
    return check


def _check_inpainter(kind: type) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        assert type(run.pipeline.inpainter) is kind
        assert run.inpaint_calls and _inpainted(run) and all(run.patch_iterations())
        _one_nerf_step_and_a_discriminator_step(run)
        assert run.pipeline.updater.state.num_updates == len(UPDATE_STEPS)

    check.__doc__ = f"The {kind.__name__} fills the masks, the patches train the NeRF, the updates use it."
    return check


def check_no_inpainter(run: Run) -> None:
    """Holes ignored: nothing inpainted, no patches, no in-mask loss (as nerfacto-masked)."""
    assert isinstance(run.pipeline.inpainter, NoInpainter)
    assert not run.inpaint_calls and not _inpainted(run) and not any(run.patch_iterations())
    assert all(steps == ["nerf"] and "adversarial_loss" not in losses for steps, losses in zip(run.steps, run.losses))


def _check_ldm(customized: bool) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        inpainter = run.pipeline.inpainter
        assert isinstance(inpainter, LDMInpainter)
        assert run.inpaint_calls and _inpainted(run) and all(run.patch_iterations())
        _one_nerf_step_and_a_discriminator_step(run)
        assert run.pipeline.updater.state.num_updates == len(UPDATE_STEPS)
        adapter = Path(run.trainer.base_dir) / "lora_adapter"
        if customized:
            assert run.pipeline.inpainter_files and adapter.is_dir(), "no LoRA adapter was trained"
            assert inpainter.pipe.get_active_adapters(), "the LoRA adapter is not active"
        else:
            assert not run.pipeline.inpainter_files and not adapter.exists()

    check.__doc__ = f"The latent diffusion inpainter (tiny test LDM), customisation {'on' if customized else 'off'}."
    return check


# ------------------------------------------------------------------------------------------------- the cases
def _ldm_flags(customize: bool, cache: str, ldm: str) -> List[str]:
    return [
        # tyro: the inpainter subcommand and its own options come after the method's options
        "pipeline.inpainter:ldm", "--pipeline.inpainter.model", ldm,
        "--pipeline.inpainter.working-size", "32", "--pipeline.inpainter.num-inference-steps", "2",
        "--pipeline.inpainter.customization.enabled", str(customize),
        "--pipeline.inpainter.customization.steps", "2", "--pipeline.inpainter.customization.resolution", "32",
        "--pipeline.inpainter.customization.batch-size", "1", "--pipeline.inpainter.customization.cache-dir", cache,
    ]


CASES: Dict[str, Tuple[List[str], Callable[[Run], None], Optional[Callable]]] = {
    # id: (flags, check, edit of the base config before the flags are applied)
    "use-adversarial-False": (["--pipeline.model.use-adversarial", "False"], check_no_adversarial, None),
    "use-adversarial-False-with-mask-l1": (
        ["--pipeline.model.use-adversarial", "False", "--pipeline.model.use-mask-l1", "True"],
        check_no_adversarial_with_l1, None,
    ),
    "use-feature-matching-True": (["--pipeline.model.use-feature-matching", "True"], check_feature_matching_by_default,
                                  None),
    "use-feature-matching-False": (["--pipeline.model.use-feature-matching", "False"], check_no_feature_matching, None),
    "use-mask-l1-True": (["--pipeline.model.use-mask-l1", "True"], check_mask_l1, None),
    "dataset-update-enabled-False": (["--pipeline.dataset-update.enabled", "False"], check_dataset_update_off, None),
    "dataset-update-schedule": (
        ["--pipeline.dataset-update.update-every", "2", "--pipeline.dataset-update.views-per-update", "1",
         "--pipeline.dataset-update.t-max", "0.7", "--pipeline.dataset-update.t-min", "0.3",
         "--pipeline.dataset-update.num-updates", "1"],
        check_dataset_update_schedule, lambda c: setattr(c.pipeline.dataset_update, "update_every", 5),
    ),
    "dataset-update-warmup-steps": (
        ["--pipeline.dataset-update.warmup-steps", "2", "--pipeline.dataset-update.initial-strength", "0.6"],
        check_warmup, None,
    ),
    "separate-inpainting-step-True": (["--pipeline.separate-inpainting-step", "True"], check_two_steps, None),
    "visibility-enabled-True": (
        ["--pipeline.visibility.enabled", "True", "--pipeline.dataset-update.warmup-steps", "2",
         "--pipeline.visibility.depth-tolerance", "0.1", "--pipeline.visibility.recompute-every", "2"],
        check_visibility, None,
    ),
    "visibility-enabled-False": (["--pipeline.visibility.enabled", "False"], check_whole_masks, None),
    "visibility-train-seen-False": (
        ["--pipeline.visibility.enabled", "True", "--pipeline.dataset-update.warmup-steps", "2",
         "--pipeline.visibility.train-seen", "False"],
        check_seen_untrained, None,
    ),
    "patch-appearance-mean": (["--pipeline.model.patch-appearance", "mean"], _check_patch_appearance("mean"), None),
    "patch-appearance-trained": (["--pipeline.model.patch-appearance", "trained"],
                                 _check_patch_appearance("trained"), None),
    "inpainter-exemplar": (["pipeline.inpainter:exemplar"], _check_inpainter(ExemplarInpainter), None),
    # The harness's base uses telea: start this case from the exemplar, so the flag has something to change.
    "inpainter-telea": (["pipeline.inpainter:telea"], _check_inpainter(TeleaInpainter),
                        lambda c: setattr(c.pipeline, "inpainter", ExemplarInpainterConfig())),
    "inpainter-none": (["pipeline.inpainter:none"], check_no_inpainter, None),
}
LDM_CASES = {"inpainter-ldm-customization-True": True, "inpainter-ldm-customization-False": False}


@pytest.mark.parametrize("case", list(CASES))
def test_documented_switch_trains_a_few_steps(case, demo_scene, tmp_path):
    flags, check, base_edit = CASES[case]
    run = train_with_flags(demo_scene, tmp_path, flags, base_edit)
    check(run)


@pytest.mark.parametrize("case", list(LDM_CASES))
def test_ldm_inpainter_switch_trains_a_few_steps(case, demo_scene, tiny_ldm_dir, tmp_path):
    customize = LDM_CASES[case]
    run = train_with_flags(demo_scene, tmp_path, _ldm_flags(customize, str(tmp_path / "lora-cache"), str(tiny_ldm_dir)))
    _check_ldm(customize)(run)


def test_flags_change_the_config_they_name(demo_scene, tmp_path):
    """The parsing the cases rely on: a README flag changes its field and nothing else is lost."""
    base = tiny_config(demo_scene, tmp_path, steps=STEPS, edit=_base)
    parsed = parse_flags(base, ["--pipeline.separate-inpainting-step", "True", "--pipeline.model.use-mask-l1", "True",
                                "pipeline.inpainter:exemplar"])
    assert not base.pipeline.separate_inpainting_step and parsed.pipeline.separate_inpainting_step
    assert not base.pipeline.model.use_mask_l1 and parsed.pipeline.model.use_mask_l1
    assert isinstance(parsed.pipeline.inpainter, ExemplarInpainterConfig)
    assert parsed.max_num_iterations == STEPS and parsed.pipeline.datamanager.data == demo_scene
    assert parsed.pipeline.datamanager.train_num_rays_per_batch == base.pipeline.datamanager.train_num_rays_per_batch


def test_mask_lpips_without_its_weights_stops_with_a_setup_error(demo_scene, tmp_path, monkeypatch, capsys):
    """``--pipeline.model.use-mask-lpips True`` needs LPIPS's AlexNet weights, which are never downloaded: without
    them the run stops at start-up, before training, with one paragraph naming the file (mald-nerfstudio's
    excepthook prints it instead of a traceback), not with an error in the middle of training."""
    from mald_nerfstudio import errors

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # no weights in the hub cache
    config = parse_flags(tiny_config(demo_scene, tmp_path, steps=STEPS, edit=_base),
                         ["--pipeline.model.use-mask-lpips", "True"])
    assert config.pipeline.model.use_mask_lpips
    with pytest.raises(MaldSetupError) as info:
        setup_trainer(config)
    message = str(info.value)
    assert "alexnet-owt-7be5be79.pth" in message and "never downloaded" in message, message
    capsys.readouterr()
    errors._hook(MaldSetupError, info.value, info.value.__traceback__)  # what ns-train's excepthook does with it
    printed = capsys.readouterr().err
    assert printed == format_error(info.value) and "Traceback" not in printed


def test_mask_lpips_reads_the_metrics_lpips_weight_file(demo_scene, tmp_path, monkeypatch):
    """The in-mask LPIPS loss loads the same weight file as the LPIPS metric (``--pipeline.model.metrics.lpips-weights
    -path``), so the error names the file the user gave."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    weights = tmp_path / "my-weights" / "alexnet.pth"
    config = parse_flags(tiny_config(demo_scene, tmp_path, steps=STEPS, edit=_base),
                         ["--pipeline.model.use-mask-lpips", "True",
                          "--pipeline.model.metrics.lpips-weights-path", str(weights)])
    with pytest.raises(MaldSetupError) as info:
        setup_trainer(config)
    assert str(weights) in str(info.value), str(info.value)


def _readme_switches() -> Tuple[List[str], List[str]]:
    """The ``--pipeline.*`` switches and the inpainter choices of README.md's "Useful switches" paragraph."""
    text = README.read_text()
    start = text.index("Useful switches")
    paragraph = " ".join(text[start : text.index("\n\n", start)].split())
    inpainters = [name.strip() for name in re.search(r"pipeline\.inpainter:\{([^}]*)\}", paragraph).group(1).split(",")]
    switches = []
    for prefix, braces in re.findall(r"(--pipeline\.[\w.-]*?)(?:\{([^}]*)\}|(?=[`\s]))", paragraph):
        if braces:
            switches += [prefix + name.strip() for name in braces.split(",")]
        elif not prefix.endswith("."):
            switches.append(prefix)
    return switches, inpainters


def test_every_switch_the_readme_documents_is_run():
    switches, inpainters = _readme_switches()
    assert "--pipeline.model.use-adversarial" in switches and "--pipeline.dataset-update.warmup-steps" in switches
    assert inpainters == ["ldm", "exemplar", "telea", "none"]
    flags = [flag for case_flags, _, _ in CASES.values() for flag in case_flags]
    flags += _ldm_flags(True, "cache", "ldm") + _ldm_flags(False, "cache", "ldm")
    flags += ["--pipeline.model.use-mask-lpips"]  # test_mask_lpips_without_its_weights_stops_with_a_setup_error
    assert not [switch for switch in switches if switch not in flags], "documented switches no test runs"
    assert not [name for name in inpainters if f"pipeline.inpainter:{name}" not in flags]
