"""In-process training tests on the demo scene: the three-step iteration, checkpoints, dataset updates, resume."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from nerfstudio.engine.callbacks import TrainingCallbackLocation

from mald_nerfstudio.inpaint.exemplar import ExemplarInpainterConfig
from mald_nerfstudio.inpaint.ldm import LDMInpainterConfig
from mald_nerfstudio.model.mald_model import DISCRIMINATOR_GROUP
from mald_nerfstudio.pipeline.dataset_update import last_update_index, scheduled_update_steps
from mald_nerfstudio.inpaint.schedule import noise_strength
from tests.training_harness import setup_trainer, tiny_config, train


def _snapshot(params) -> List[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _same(a: List[torch.Tensor], b) -> bool:
    return all(torch.equal(x, y.detach()) for x, y in zip(a, b))


def _nerf_params(trainer) -> List[torch.nn.Parameter]:
    groups = trainer.pipeline.get_param_groups()
    return [p for name, params in groups.items() if name != DISCRIMINATOR_GROUP for p in params]


def _file_digests(folder: Path) -> Dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("mixed_precision", [False, True], ids=["fp32", "bf16-autocast"])
def test_train_iteration_keeps_the_nerf_and_discriminator_updates_apart(demo_scene, tmp_path, mixed_precision):
    """Through the real MaldTrainer.train_iteration with one summed NeRF step (bf16 autocast runs on CPU): the NeRF's
    loss reaches no discriminator parameter, the discriminator's loss reaches no NeRF parameter, each step uses its
    own scaler."""
    def edit(config):
        config.mixed_precision = mixed_precision
        config.pipeline.separate_inpainting_step = False

    trainer = setup_trainer(tiny_config(demo_scene, tmp_path, steps=5, edit=edit))
    trainer.mixed_precision = mixed_precision  # nerfstudio turns autocast off on a CPU: really run it in bf16
    trainer.pipeline.prepare_training(trainer)
    dtypes = _record_output_dtypes({"field": trainer.pipeline.model.field})
    disc = list(trainer.pipeline.model.discriminator.parameters())
    nerf = _nerf_params(trainer)
    steps = []
    original_step = trainer.optimizers.optimizer_scaler_step_some

    def spy(scaler, groups):
        grads = lambda params: [None if p.grad is None else p.grad.detach().clone() for p in params]  # noqa: E731
        steps.append({"groups": list(groups), "scaler": scaler, "disc": grads(disc), "nerf": grads(nerf)})
        return original_step(scaler, groups)

    trainer.optimizers.optimizer_scaler_step_some = spy  # type: ignore[method-assign]
    disc_before, nerf_before = _snapshot(disc), _snapshot(nerf)
    loss, loss_dict, metrics = trainer.train_iteration(0)
    assert (torch.bfloat16 in dtypes["field"]) == mixed_precision, dtypes  # autocast ran exactly when asked
    assert torch.isfinite(loss) and "adversarial_loss" in loss_dict and "adv_d_loss" in metrics
    nerf_step, disc_step = steps
    assert DISCRIMINATOR_GROUP not in nerf_step["groups"] and disc_step["groups"] == [DISCRIMINATOR_GROUP]
    assert nerf_step["scaler"] is trainer.grad_scaler and disc_step["scaler"] is trainer.discriminator_scaler
    assert all(g is None or not g.any() for g in nerf_step["disc"]), "the NeRF's loss reached the discriminator"
    assert any(g is not None and g.any() for g in nerf_step["nerf"])
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(nerf_step["nerf"], disc_step["nerf"])), (
        "the discriminator's loss reached the NeRF"
    )
    assert any(g is not None and g.any() for g in disc_step["disc"])
    assert not _same(disc_before, disc) and not _same(nerf_before, nerf)  # both steps really updated


def test_training_logs_adversarial_losses_and_checkpoint_restores_discriminator_exactly(demo_scene, tmp_path):
    config = tiny_config(demo_scene, tmp_path, steps=4)
    trainer = train(config)
    _, _, metrics = trainer.train_iteration(4)
    assert {"adv_d_real_logit", "adv_d_fake_logit", "adv_d_loss", "adv_g_feature_matching"} <= set(metrics)
    trainer.save_checkpoint(4)

    config.load_dir = config.get_checkpoint_dir()
    resumed = setup_trainer(config)
    saved_d = trainer.pipeline.model.discriminator.state_dict()
    for key, value in resumed.pipeline.model.discriminator.state_dict().items():
        assert torch.equal(value, saved_d[key]), key
    saved_opt = trainer.optimizers.optimizers[DISCRIMINATOR_GROUP].state_dict()
    loaded_opt = resumed.optimizers.optimizers[DISCRIMINATOR_GROUP].state_dict()
    assert saved_opt["state"].keys() == loaded_opt["state"].keys() and saved_opt["state"]
    for index, state in saved_opt["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(loaded_opt["state"][index][name])), name
    assert resumed._start_step == 5


def test_tiny_ldm_run_performs_the_scheduled_updates_and_resume_restores_inpainted_images(
    demo_scene, tiny_ldm_dir, tmp_path
):
    data_before = _file_digests(demo_scene)

    def edit(config):
        config.pipeline.inpainter = LDMInpainterConfig(model=str(tiny_ldm_dir), num_inference_steps=4)
        config.pipeline.inpainter.customization.enabled = False
        config.pipeline.dataset_update.first_update_step = 3
        config.pipeline.dataset_update.update_every = 3
        config.pipeline.dataset_update.views_per_update = 3
        config.steps_per_save = 6
        config.save_only_latest_checkpoint = False

    config = tiny_config(demo_scene, tmp_path, steps=12, edit=edit)
    strengths: List[float] = []
    trainer = setup_trainer(config)
    inpainter = trainer.pipeline.inpainter
    original_inpaint = inpainter.inpaint

    def spy(images, masks, init=None, strength=1.0, seeds=None):
        strengths.append(strength)
        return original_inpaint(images, masks, init=init, strength=strength, seeds=seeds)

    inpainter.inpaint = spy  # type: ignore[method-assign]
    trainer.train()

    steps = scheduled_update_steps(config.pipeline.dataset_update, 12)
    assert steps == [3, 6, 9]
    last = last_update_index(config.pipeline.dataset_update, 12)
    expected = [noise_strength(k, last, 0.85, 0.2) for k in range(len(steps))]
    partial = [s for s in strengths if s < 1.0]
    assert trainer.pipeline.updater.state.num_updates == len(steps)
    # views_per_update=3 with the LDM's batch of 4: one inpaint call per update.
    assert partial == pytest.approx(expected)
    assert strengths[0] == 1.0  # the initial full-strength inpainting

    # "Kill" after the step-6 checkpoint: a new run resumes from it.
    checkpoint = config.get_checkpoint_dir() / "step-000000006.ckpt"
    saved = torch.load(checkpoint, map_location="cpu")["pipeline"]
    state = saved["datamanager._extra_state"]
    assert saved["_extra_state"]["dataset_update"]["num_updates"] == 2  # updates at 3 and 6 ran before the save

    config.load_dir = None
    config.load_checkpoint = checkpoint
    resumed = setup_trainer(config)
    manager = resumed.pipeline.datamanager
    assert manager.inpainted and resumed.pipeline.updater.state.num_updates == 2
    assert torch.equal(manager.current[state["views"]], state["inpainted"])
    calls: List[float] = []
    resumed.pipeline.prepare_training(resumed)
    resumed.pipeline.inpainter.inpaint = lambda *a, **k: calls.append(1)  # type: ignore[method-assign]
    assert torch.equal(manager.current[state["views"]], state["inpainted"]), "prepare_training re-inpainted"
    assert not calls
    assert _file_digests(demo_scene) == data_before, "training wrote into the scene folder"


def _record_output_dtypes(modules: Dict[str, torch.nn.Module]) -> Dict[str, set]:
    """Forward hooks on every layer of some modules: the dtypes of the tensors the layers returned, per module."""
    seen: Dict[str, set] = {name: set() for name in modules}

    def hook(name: str):
        return lambda _module, _inputs, out: seen[name].add(out.dtype) if isinstance(out, torch.Tensor) else None

    for name, module in modules.items():
        for layer in module.modules():
            layer.register_forward_hook(hook(name))
    return seen


def _train_and_track_parameters(trainer, iterations: int) -> List[Dict[str, bool]]:
    """Run ``iterations`` real train_iterations after the preparation; per iteration, whether the NeRF's and the
    discriminator's parameters changed. Every loss and the discriminator's loss must be finite."""
    trainer.pipeline.prepare_training(trainer)
    nerf, disc = _nerf_params(trainer), list(trainer.pipeline.model.discriminator.parameters())
    changes = []
    for step in range(iterations):
        nerf_before, disc_before = _snapshot(nerf), _snapshot(disc)
        loss, loss_dict, metrics = trainer.train_iteration(step)
        assert torch.isfinite(loss), (step, loss_dict)
        assert "adversarial_loss" in loss_dict and all(torch.isfinite(v) for v in loss_dict.values()), loss_dict
        assert torch.isfinite(torch.as_tensor(metrics["adv_d_loss"])), metrics
        changes.append({"nerf": not _same(nerf_before, nerf), "discriminator": not _same(disc_before, disc)})
    assert all(torch.isfinite(p).all() for p in nerf + disc)
    return changes


def test_bf16_autocast_iterations_on_cpu_update_the_nerf_and_the_discriminator(demo_scene, tmp_path):
    """Mixed precision on a CPU: bf16 autocast, no loss scaling. nerfstudio's Trainer turns ``mixed_precision`` off on
    a CPU (and its GradScaler, CUDA's, stays disabled there), so the test turns the trainer's autocast back on: the
    NeRF's and the discriminator's forward passes then really run in bfloat16, and every iteration must still move
    both (a step that is skipped, by a scaler or otherwise, fails it)."""
    def edit(config):
        config.mixed_precision = True

    trainer = setup_trainer(tiny_config(demo_scene, tmp_path, steps=4, edit=edit))
    assert trainer.device == "cpu" and not trainer.grad_scaler.is_enabled()
    trainer.mixed_precision = True
    model = trainer.pipeline.model
    dtypes = _record_output_dtypes({"field": model.field, "discriminator": model.discriminator})
    changes = _train_and_track_parameters(trainer, 4)
    assert torch.bfloat16 in dtypes["field"], dtypes  # the NeRF's forward ran under autocast
    assert torch.bfloat16 in dtypes["discriminator"], dtypes
    assert all(change["nerf"] for change in changes), changes
    assert all(change["discriminator"] for change in changes), changes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision and the grad scaler need a CUDA GPU")
def test_iteration_runs_with_mixed_precision_and_grad_scaler_on_gpu(demo_scene, tmp_path):
    """fp16 autocast with the gradient scalers on a GPU: losses stay finite and the steps really update the NeRF and
    the discriminator (a scaler that skips every step fails it; the first steps may be skipped while the scale
    adapts, so only the run as a whole must move them)."""
    def edit(config):
        config.machine.device_type = "cuda"
        config.mixed_precision = True

    trainer = setup_trainer(tiny_config(demo_scene, tmp_path, steps=6, edit=edit))
    assert trainer.mixed_precision and trainer.grad_scaler.is_enabled()
    assert trainer.discriminator_scaler.is_enabled() and trainer.inpainting_scaler.is_enabled()
    model = trainer.pipeline.model
    dtypes = _record_output_dtypes({"field": model.field, "discriminator": model.discriminator})
    changes = _train_and_track_parameters(trainer, 6)
    assert torch.float16 in dtypes["field"] and torch.float16 in dtypes["discriminator"], dtypes
    assert any(change["nerf"] for change in changes), changes
    assert any(change["discriminator"] for change in changes), changes


def test_warmup_trains_observed_pixels_then_inpaints_from_the_render(demo_scene, tmp_path):
    def edit(config):
        config.pipeline.inpainter = ExemplarInpainterConfig()
        config.pipeline.dataset_update.warmup_steps = 3
        config.pipeline.dataset_update.initial_strength = 0.6
        config.pipeline.dataset_update.first_update_step = 100

    trainer = setup_trainer(tiny_config(demo_scene, tmp_path, steps=6, edit=edit))
    calls: List[tuple] = []
    inpainter = trainer.pipeline.inpainter
    original = inpainter.inpaint

    def spy(images, masks, init=None, strength=1.0, seeds=None):
        calls.append((strength, init is not None))
        return original(images, masks, init=init, strength=strength, seeds=seeds)

    inpainter.inpaint = spy  # type: ignore[method-assign]
    trainer.pipeline.prepare_training(trainer)
    manager = trainer.pipeline.datamanager
    assert not calls and not manager.inpainted  # nothing invented before the NeRF has seen the observed pixels
    for step in range(6):
        _, loss_dict, _ = trainer.train_iteration(step)
        assert ("adversarial_loss" in loss_dict) == (step >= 3), step
        for callback in trainer.callbacks:
            callback.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
    assert manager.inpainted and calls and all(call == (0.6, True) for call in calls)
    views = manager.views_with_masks()
    assert not torch.equal(manager.current[views], manager.originals[views])  # the masks now hold fills


def test_dataset_update_renders_use_each_views_appearance_embedding(demo_scene, tmp_path):
    from mald_nerfstudio.model.view_render import render_mask_regions

    trainer = setup_trainer(tiny_config(demo_scene, tmp_path, steps=1))
    model, manager = trainer.pipeline.model, trainer.pipeline.datamanager
    with torch.no_grad():
        model.field.embedding_appearance.embedding.weight.zero_()
        model.field.embedding_appearance.embedding.weight[1] = 3.0  # view 1 looks different from the others
    _, current, masks = manager.view_images([1])
    model.train()
    as_view1 = render_mask_regions(model, manager.train_ray_generator, [1], current, masks)[0]
    # The same rays in nerfstudio's eval mode (the mean embedding) render differently.
    model.eval()
    with torch.no_grad():
        ys, xs = torch.nonzero(masks[0], as_tuple=True)
        idx = torch.stack([torch.ones_like(ys), ys, xs], dim=-1)
        mean_embedding = model(manager.train_ray_generator(idx))["rgb"]
    model.train()
    assert not torch.allclose(as_view1[masks[0]], mean_embedding, atol=1e-3)
    assert model.training  # render_mask_regions restores the mode it found


def test_inpainting_losses_do_not_move_the_camera_poses(demo_scene, tmp_path):
    from mald_nerfstudio.method_configs.mald_nerf import mald_nerf_config
    from mald_nerfstudio.model.camera_poses import ObservedPixelsCameraOptimizerConfig

    assert isinstance(mald_nerf_config().pipeline.model.camera_optimizer, ObservedPixelsCameraOptimizerConfig)

    def edit(config):
        config.pipeline.model.camera_optimizer.mode = "SO3xR3"

    trainer = setup_trainer(tiny_config(demo_scene, tmp_path, steps=2, edit=edit))
    trainer.pipeline.prepare_training(trainer)
    pipeline = trainer.pipeline
    poses = pipeline.model.camera_optimizer.pose_adjustment
    with torch.no_grad():
        poses.normal_(std=1e-3)  # away from the identity, where the SO3 exponential's gradient is degenerate

    def pose_grad(loss_names):
        poses.grad = None
        _, loss_dict, _ = pipeline.get_train_loss_dict(step=0)
        sum(loss_dict[name] for name in loss_names).backward()
        return poses.grad

    inpainting = pose_grad(["adversarial_loss"])  # adversarial + feature matching, weighted
    assert inpainting is None or not inpainting.any(), "the inpainting losses reached the camera poses"
    reconstruction = pose_grad(["rgb_loss"])
    assert reconstruction is not None and reconstruction.abs().sum() > 0  # observed pixels still refine them


@pytest.mark.parametrize("mixed_precision", [False, True], ids=["fp32", "bf16-autocast"])
def test_separate_inpainting_step_renders_patches_after_the_reconstruction_step(demo_scene, tmp_path, mixed_precision):
    """With separate_inpainting_step, train_iteration takes a reconstruction step on the observed rays, renders the
    patch rays with the updated field for an inpainting step with its own scaler, then the discriminator step; the
    inpainting step's gradients reach neither the proposal networks nor the discriminator."""
    def edit(config):
        config.mixed_precision = mixed_precision
        config.pipeline.separate_inpainting_step = True

    trainer = setup_trainer(tiny_config(demo_scene, tmp_path, steps=5, edit=edit))
    trainer.mixed_precision = mixed_precision  # nerfstudio turns autocast off on a CPU: really run it in bf16
    trainer.pipeline.prepare_training(trainer)
    model = trainer.pipeline.model
    manager = trainer.pipeline.datamanager
    num_recon = manager.config.train_num_rays_per_batch
    num_patch_rays = manager.config.num_inpaint_patches * manager.config.inpaint_patch_size**2
    rendered, steps = [], []
    original_forward, original_step = model.forward, trainer.optimizers.optimizer_scaler_step_some

    def forward_spy(ray_bundle, *args, **kwargs):
        rendered.append((len(ray_bundle), _snapshot(model.field.parameters())))
        return original_forward(ray_bundle, *args, **kwargs)

    def step_spy(scaler, groups):
        grads = {name: [None if p.grad is None else p.grad.detach().clone() for p in params]
                 for name, params in trainer.pipeline.get_param_groups().items()}
        steps.append({"groups": list(groups), "scaler": scaler, "grads": grads})
        return original_step(scaler, groups)

    for step in range(3):  # at initialisation the interlevel loss can be exactly flat
        trainer.train_iteration(step)
    model.forward = forward_spy  # type: ignore[method-assign]
    trainer.optimizers.optimizer_scaler_step_some = step_spy  # type: ignore[method-assign]
    disc_grads_before = [p.grad.detach().clone() for p in model.discriminator.parameters()]
    dtypes = _record_output_dtypes({"field": model.field})
    _, loss_dict, metrics = trainer.train_iteration(3)
    assert (torch.bfloat16 in dtypes["field"]) == mixed_precision, dtypes  # autocast ran exactly when asked
    assert {"rgb_loss", "interlevel_loss", "adversarial_loss"} <= set(loss_dict)
    assert {"adv_g_feature_matching", "adv_d_loss"} <= set(metrics)
    assert [n for n, _ in rendered] == [num_recon, num_patch_rays]
    assert not _same(rendered[0][1], rendered[1][1]), "the patches were rendered before the reconstruction step"
    recon, inpaint, disc = steps
    assert recon["scaler"] is trainer.grad_scaler and inpaint["scaler"] is trainer.inpainting_scaler
    assert disc["scaler"] is trainer.discriminator_scaler and disc["groups"] == [DISCRIMINATOR_GROUP]
    assert DISCRIMINATOR_GROUP not in recon["groups"] and DISCRIMINATOR_GROUP not in inpaint["groups"]

    def touched(grads):
        return any(g is not None and g.any() for g in grads)

    def unchanged(grads, before):
        return all(torch.equal(g, b) for g, b in zip(grads, before))

    assert touched(recon["grads"]["fields"])
    assert touched(inpaint["grads"]["fields"]), "the inpainting step did not train the field"
    assert not touched(inpaint["grads"]["proposal_networks"]), "patch rays reached the proposal losses"
    # The discriminator's gradients are still those of the previous discriminator step.
    assert unchanged(recon["grads"][DISCRIMINATOR_GROUP], disc_grads_before)
    assert unchanged(inpaint["grads"][DISCRIMINATOR_GROUP], disc_grads_before)
    assert not unchanged(disc["grads"][DISCRIMINATOR_GROUP], disc_grads_before)


@pytest.mark.parametrize("on_patches", [False, True])
def test_proposal_losses_see_patch_rays_only_when_asked(demo_scene, tmp_path, on_patches):
    """In the summed step, nerfacto's interlevel and distortion losses cover the observed rays only, unless
    proposal_losses_on_patches."""
    from nerfstudio.model_components.losses import distortion_loss, interlevel_loss

    def edit(config):
        config.pipeline.model.proposal_losses_on_patches = on_patches
        config.pipeline.separate_inpainting_step = False

    trainer = setup_trainer(tiny_config(demo_scene, tmp_path, steps=2, edit=edit))
    trainer.pipeline.prepare_training(trainer)
    model = trainer.pipeline.model
    ray_bundle, batch = trainer.pipeline.datamanager.next_train(0)
    outputs = model(ray_bundle)
    metrics = model.get_metrics_dict(outputs, batch)
    losses = model.get_loss_dict(outputs, batch, metrics)
    n = batch.num_observed
    assert batch.patches is not None and outputs["rgb"].shape[0] == n + batch.patches.num_rays
    weights = outputs["weights_list"] if on_patches else [w[:n] for w in outputs["weights_list"]]
    samples = outputs["ray_samples_list"] if on_patches else [s[:n] for s in outputs["ray_samples_list"]]
    expected_interlevel = model.config.interlevel_loss_mult * interlevel_loss(weights, samples)
    assert torch.allclose(losses["interlevel_loss"], expected_interlevel)
    assert torch.allclose(metrics["distortion"], distortion_loss(weights, samples))


def test_each_inpainting_pass_runs_inside_one_inpainter_session(demo_scene, tmp_path):
    """The initial inpainting and a dataset update call the inpainter only inside one session each, so an LDM moves
    to the GPU once per pass rather than once per view batch."""
    import contextlib

    trainer = setup_trainer(tiny_config(demo_scene, tmp_path, steps=2))
    pipeline = trainer.pipeline
    inpainter = pipeline.inpainter
    events: List[str] = []
    original_inpaint = inpainter.inpaint

    @contextlib.contextmanager
    def session():
        events.append("enter")
        yield
        events.append("exit")

    def inpaint(*args, **kwargs):
        events.append("inpaint")
        return original_inpaint(*args, **kwargs)

    inpainter.session, inpainter.inpaint = session, inpaint
    pipeline.prepare_training(trainer)
    calls = events.count("inpaint")
    assert calls >= 2 and events == ["enter"] + ["inpaint"] * calls + ["exit"]
    events.clear()
    updater = pipeline.updater
    updater.update_steps.add(1)
    assert updater.step(1)
    assert events[0] == "enter" and events[-1] == "exit" and events.count("enter") == 1 and "inpaint" in events


def test_resume_loads_the_checkpoints_lora_adapter_without_the_cache_or_retraining(
    demo_scene, tiny_ldm_dir, tmp_path, monkeypatch
):
    """The run's LoRA adapter is kept in its checkpoints and copied into the run folder; a resume on a machine
    without the LoRA cache loads it from the checkpoint instead of training it again."""
    import shutil

    from mald_nerfstudio.inpaint.lora import adapter, training

    cache = tmp_path / "lora-cache"

    def edit(config):
        config.pipeline.inpainter = LDMInpainterConfig(model=str(tiny_ldm_dir), working_size=32, num_inference_steps=2)
        config.pipeline.inpainter.customization.enabled = True
        config.pipeline.inpainter.customization.steps = 2
        config.pipeline.inpainter.customization.resolution = 32
        config.pipeline.inpainter.customization.cache_dir = cache
        config.pipeline.dataset_update.enabled = False
        config.steps_per_save = 2

    config = tiny_config(demo_scene, tmp_path / "out", steps=3, edit=edit)
    trained = train(config)
    run_adapter = Path(trained.base_dir) / "lora_adapter"
    assert (run_adapter / adapter.ADAPTER_WEIGHTS).is_file()
    files = trained.pipeline.inpainter_files
    assert set(files) >= {adapter.ADAPTER_WEIGHTS, adapter.ADAPTER_INFO}
    checkpoint = sorted(config.get_checkpoint_dir().glob("*.ckpt"))[-1]
    saved = torch.load(checkpoint, map_location="cpu")["pipeline"]["_extra_state"]["lora_adapter_files"]
    assert all(torch.equal(saved[name], files[name]) for name in files)

    shutil.rmtree(cache)  # another machine: no LoRA cache
    trainings: List[int] = []
    monkeypatch.setattr(training.LoRACustomizer, "_train", lambda *a, **k: trainings.append(1))
    config.load_dir, config.load_checkpoint = None, checkpoint
    config.max_num_iterations = 4
    config.set_timestamp()
    resumed = setup_trainer(config)
    resumed.pipeline.prepare_training(resumed)
    assert not trainings, "the resume trained the LoRA adapter again"
    inpainter = resumed.pipeline.inpainter
    token = adapter.read_adapter_info(run_adapter).scene_token
    assert token and token in inpainter.prompt
    assert inpainter.config.scene_token == LDMInpainterConfig().scene_token, "loading the adapter rewrote the config"
    assert inpainter.pipe.get_active_adapters(), "no LoRA adapter is active after the resume"
    restored = Path(resumed.base_dir) / "lora_adapter" / adapter.ADAPTER_WEIGHTS
    assert restored.read_bytes() == (run_adapter / adapter.ADAPTER_WEIGHTS).read_bytes()


def test_a_loaded_run_shows_its_update_count_and_strength_in_the_viewer(demo_scene, tmp_path):
    """Loading a checkpoint (as ns-viewer and a resume do) sets the viewer's 'Dataset updates done' and 'Current
    update strength' to the run's values instead of 0 and 1."""
    def edit(config):
        config.pipeline.dataset_update.first_update_step = 2
        config.pipeline.dataset_update.update_every = 2
        config.steps_per_save = 6

    config = tiny_config(demo_scene, tmp_path, steps=7, edit=edit)
    trained = train(config)
    history = trained.pipeline.updater.state.history
    assert len(history) >= 2
    config.load_dir, config.load_checkpoint = None, sorted(config.get_checkpoint_dir().glob("*.ckpt"))[-1]
    loaded = setup_trainer(config)
    assert loaded.pipeline.viewer_update_count.value == len(history)
    assert loaded.pipeline.viewer_strength.value == pytest.approx(history[-1][1])
    assert history[-1][1] < 1.0


def test_the_viewer_scene_is_set_up_before_the_preparation(demo_scene, tmp_path, monkeypatch):
    """nerfstudio sets up the viewer's scene (training cameras) at the start of train(); the customisation and the
    initial inpainting run after it, in a training callback before the first step (under the train lock, so the
    viewer does not render meanwhile), so the viewer is not empty while they run."""
    from nerfstudio.engine.trainer import Trainer

    order: List[str] = []
    monkeypatch.setattr(Trainer, "_init_viewer_state", lambda self: order.append("viewer scene"))
    trainer = setup_trainer(tiny_config(demo_scene, tmp_path, steps=1))
    original = trainer.pipeline.prepare_training

    def prepare(t):
        order.append(f"preparation, train lock held: {trainer.train_lock.locked()}")
        return original(t)

    trainer.pipeline.prepare_training = prepare
    trainer.train()
    assert order == ["viewer scene", "preparation, train lock held: True"]
    assert trainer.pipeline.datamanager.inpainted
