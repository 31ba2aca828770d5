"""Checkpoints survive kills, Ctrl-C, damage and full disks, a resumed run finishes the run it continues, and a
checkpoint of another run is refused (or warm-started from on purpose).

The end-to-end test SIGKILLs a real ``ns-train mald-nerf-tiny`` after a checkpoint, resumes it with the same
flags plus ``--load-dir``, and compares the result with an uninterrupted run of the same seed.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List

import pytest
import torch

from mald_nerfstudio import run_folder
from mald_nerfstudio.checkpoint_files import atomic_torch_save, checkpoint_steps, read_checkpoint
from mald_nerfstudio.data.demo_scene import DemoSceneConfig, generate_demo_scene
from mald_nerfstudio.errors import MaldInputError
from mald_nerfstudio.trainer import RUN_STATE_KEY, MaldTrainer
from tests.training_harness import setup_trainer, tiny_config, train

STEPS = 40
KILL_AFTER = 20


def _train_args(scene: Path, out: Path) -> List[str]:
    return [
        "ns-train", "mald-nerf-tiny", "--data", str(scene), "--output-dir", str(out), "--timestamp", "run",
        "--max-num-iterations", str(STEPS), "--steps-per-save", "10", "--vis", "tensorboard",
        "--pipeline.datamanager.train-num-rays-per-batch", "256",
        # visibility-aware inpainting: the unseen masks are computed before the kill and kept after it
        "--pipeline.visibility.enabled", "True", "--pipeline.dataset-update.warmup-steps", "3",
        "--pipeline.dataset-update.first-update-step", "5", "--pipeline.dataset-update.update-every", "5",
    ]


def _env():
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _final_state(out: Path) -> dict:
    (checkpoint,) = list(out.rglob("step-*.ckpt"))
    assert checkpoint.name == f"step-{STEPS - 1:09d}.ckpt", checkpoint
    pipeline = read_checkpoint(checkpoint)["pipeline"]
    return {**pipeline["datamanager._extra_state"], **pipeline["_extra_state"]["dataset_update"]}


@pytest.mark.slow
def test_sigkilled_run_resumed_with_the_same_flags_finishes_the_same_run(demo_scene, tmp_path):
    whole = subprocess.run(_train_args(demo_scene, tmp_path / "whole"), cwd=tmp_path, env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert whole.returncode == 0, whole.stdout[-3000:]

    killed_out = tmp_path / "killed"
    proc = subprocess.Popen(_train_args(demo_scene, killed_out), cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint_dir = killed_out / demo_scene.name / "mald-nerf-tiny" / "run" / "nerfstudio_models"
    target = checkpoint_dir / f"step-{KILL_AFTER:09d}.ckpt"
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    newest_step = checkpoint_steps(checkpoint_dir)[0][0]
    assert KILL_AFTER <= newest_step < STEPS - 1

    resumed = subprocess.run(_train_args(demo_scene, killed_out) + ["--load-dir", str(checkpoint_dir)],
                             cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"resuming at step {newest_step + 1}" in resumed.stdout

    expected, got = _final_state(tmp_path / "whole"), _final_state(killed_out)
    assert got["num_updates"] == expected["num_updates"] == 7  # steps 5, 10, ..., 35
    assert got["history"] == expected["history"]  # same update steps and strengths
    assert torch.equal(got["views"], expected["views"])
    difference = (got["inpainted"].float() - expected["inpainted"].float()).abs()
    assert difference.max() == 0, f"inpainted images differ by up to {difference.max():.0f}/255"


def test_resume_counts_max_num_iterations_from_step_zero_and_keeps_the_schedule_horizon(demo_scene, tmp_path):
    def edit(config):
        config.steps_per_save = 4
        config.pipeline.dataset_update.first_update_step = 2
        config.pipeline.dataset_update.update_every = 2

    config = tiny_config(demo_scene, tmp_path, steps=6, edit=edit)
    first = train(config)
    assert first.step == 5
    config.load_dir = config.get_checkpoint_dir()
    config.max_num_iterations = 10  # a longer run: it continues to step 9, the schedule keeps its horizon of 6
    resumed = setup_trainer(config)
    assert resumed._start_step == 6 and resumed.pipeline.updater.state.horizon == 6
    resumed.train()
    assert resumed.step == 9
    history = resumed.pipeline.updater.state.history
    assert [step for step, _ in history] == [2, 4, 6, 8]
    assert history[-1][1] == history[-2][1] == pytest.approx(0.2)  # K = 1 from the 6-step horizon: t_min after it

    config.max_num_iterations = 10
    finished = setup_trainer(config)  # the newest checkpoint is now step 9: nothing left to train
    finished.train()
    assert finished.step == 0 and not list(config.get_checkpoint_dir().glob("step-00000001[0-9].ckpt"))


def test_a_checkpoint_in_the_layout_before_the_updater_owned_the_schedule_resumes_the_same_schedule(
        demo_scene, tmp_path):
    """Checkpoints written before the schedule's state moved to the updater kept the count, history and visibility
    step in the datamanager's entry (with one 'initialized' flag) and the horizon in the trainer's: a resume from
    one restores them into the updater."""
    def edit(config):
        config.pipeline.dataset_update.first_update_step = 2
        config.pipeline.dataset_update.update_every = 2

    config = tiny_config(demo_scene, tmp_path, steps=6, edit=edit)
    first = train(config)
    (checkpoint,) = config.get_checkpoint_dir().glob("step-*.ckpt")
    state = read_checkpoint(checkpoint)
    schedule = state["pipeline"]["_extra_state"].pop("dataset_update")
    buffer = state["pipeline"]["datamanager._extra_state"]
    assert bool(buffer.pop("inpainted_views").all())
    buffer.update(initialized=True, num_updates=schedule["num_updates"], update_history=schedule["history"],
                  visibility_step=schedule["visibility_step"])
    state[RUN_STATE_KEY]["schedule_horizon"] = schedule["horizon"]
    torch.save(state, checkpoint)

    config.load_dir = config.get_checkpoint_dir()
    config.max_num_iterations = 10
    resumed = setup_trainer(config)
    restored = resumed.pipeline.updater.state
    assert restored.horizon == 6 and restored.num_updates == 2
    assert restored.history == first.pipeline.updater.state.history
    assert resumed.pipeline.datamanager.inpainted and resumed.pipeline.viewer_update_count.value == 2


def test_damaged_newest_checkpoint_is_named_and_resume_falls_back_to_the_previous_one(demo_scene, tmp_path, capsys):
    def edit(config):
        config.steps_per_save = 2
        config.save_only_latest_checkpoint = False

    config = tiny_config(demo_scene, tmp_path, steps=4, edit=edit)
    train(config)
    folder = config.get_checkpoint_dir()
    assert [step for step, _ in checkpoint_steps(folder)] == [3, 2]
    newest = folder / "step-000000003.ckpt"
    newest.write_bytes(newest.read_bytes()[:1000])  # cut short, as a copy or a full disk leaves it

    config.load_dir = folder
    resumed = setup_trainer(config)
    out = " ".join(capsys.readouterr().out.split())
    assert resumed._start_step == 3
    assert str(newest) in out and "cannot be loaded" in out and "previous good checkpoint" in out

    config.load_dir, config.load_checkpoint = None, newest  # a file named explicitly must load
    with pytest.raises(MaldInputError) as info:
        setup_trainer(config)
    assert str(newest) in str(info.value) and "damaged" in str(info.value)


def test_atomic_save_leaves_the_previous_checkpoint_whole_when_writing_fails(tmp_path, monkeypatch):
    folder = tmp_path / "nerfstudio_models"
    folder.mkdir()
    old = folder / "step-000000010.ckpt"
    atomic_torch_save({"step": 10, "pipeline": {}}, old)
    before = old.read_bytes()

    def dies_half_way(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # what a kill during torch.save amounts to for this file

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"step": 20, "pipeline": {}}, folder / "step-000000020.ckpt")
    assert sorted(p.name for p in folder.iterdir()) == [old.name]  # nothing partial where nerfstudio looks
    assert old.read_bytes() == before
    monkeypatch.undo()
    atomic_torch_save({"step": 20, "pipeline": {}}, folder / "step-000000020.ckpt")
    assert not list(tmp_path.glob(".*partial"))
    assert read_checkpoint(folder / "step-000000020.ckpt")["step"] == 20


def _no_run_folder(config) -> bool:
    """Nothing of the run under its output folder: no run folder, no method folder, no experiment folder."""
    return not Path(config.output_dir).exists() or not any(Path(config.output_dir).iterdir())


def test_checkpoint_of_another_method_is_refused_naming_both_and_warm_start_loads_what_matches(
        demo_scene, tmp_path, capsys):
    foreign = tiny_config(demo_scene, tmp_path / "foreign", steps=1, method="nerfacto-masked-tiny")
    train(foreign)
    folder = foreign.get_checkpoint_dir()
    (checkpoint,) = folder.glob("step-*.ckpt")

    config = tiny_config(demo_scene, tmp_path / "mald", steps=2)
    config.load_dir = folder
    with pytest.raises(MaldInputError) as info:
        setup_trainer(config)
    message = " ".join(str(info.value).split())
    assert str(checkpoint) in message and "of a nerfacto-masked-tiny run and this run is mald-nerf-tiny" in message
    assert "tensor(s) of this model are not in the checkpoint (discriminator" in message
    assert "--warm-start True" in message
    assert _no_run_folder(config), list(Path(config.output_dir).rglob("*"))  # nothing written, no config.yml

    # A checkpoint without the origin record (nerfstudio's trainer, older versions): named from its config.yml.
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    del state[RUN_STATE_KEY]["origin"]
    torch.save(state, checkpoint)
    with pytest.raises(MaldInputError, match="of a nerfacto-masked-tiny run and this run is mald-nerf-tiny"):
        setup_trainer(config)

    config.warm_start = True
    capsys.readouterr()
    trainer = setup_trainer(config)
    note = " ".join(capsys.readouterr().out.split())
    assert f"Warm start (--warm-start) from {checkpoint} (nerfacto-masked-tiny, step 0)" in note
    assert "Not loaded: " in note and "tensor(s) of this model are not in the checkpoint (discriminator" in note
    assert trainer._start_step == 0 and not trainer.pipeline.datamanager.inpainted
    fields = [key for key, value in state["pipeline"].items() if key.startswith("_model.field.")]
    assert fields and all(torch.equal(trainer.pipeline.state_dict()[key], state["pipeline"][key]) for key in fields)


def test_checkpoint_of_another_scene_is_refused_naming_both_scenes(demo_scene, tmp_path):
    other = generate_demo_scene(tmp_path / "other-scene", DemoSceneConfig(seed=1, num_train_views=8,
                                                                            num_test_views=3, width=96, height=72))
    first = tiny_config(other, tmp_path / "first", steps=1)
    train(first)
    config = tiny_config(demo_scene, tmp_path / "second", steps=2)
    config.load_dir = first.get_checkpoint_dir()
    with pytest.raises(MaldInputError) as info:
        setup_trainer(config)
    message = " ".join(str(info.value).split())
    assert f"trained on the scene {other} and this run's scene is {demo_scene}" in message
    assert f"resume with --data {other}" in message and _no_run_folder(config)


@pytest.fixture
def ctrl_c_answered():
    """Python's Ctrl-C handler in this process for the test, also when pytest was started in the background by a
    non-interactive shell (SIGINT ignored, which the trainer respects: a background job is not stopped by Ctrl-C)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_at(trainer: MaldTrainer, step: int, times: int = 1) -> List[int]:
    """Press Ctrl-C ``times`` while ``trainer`` runs step ``step``; returns the steps whose iteration finished."""
    finished: List[int] = []
    iteration = trainer.train_iteration

    def pressed(current: int):
        if current == step:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)  # handled before the next bytecode: mid-step
        result = iteration(current)
        finished.append(current)
        return result

    trainer.train_iteration = pressed  # type: ignore[method-assign]
    return finished


def test_ctrl_c_finishes_the_step_saves_it_and_prints_the_resume_command(demo_scene, tmp_path, capsys,
                                                                          ctrl_c_answered):
    config = tiny_config(demo_scene, tmp_path, steps=50, edit=lambda c: setattr(c, "steps_per_save", 1000))
    trainer = setup_trainer(config)
    finished = _interrupt_at(trainer, 3)
    with pytest.raises(SystemExit) as info:
        trainer.train()
    assert info.value.code == 130
    assert finished == [0, 1, 2, 3]  # step 3 finished, step 4 never started
    saved = config.get_checkpoint_dir() / "step-000000003.ckpt"
    assert [path for _, path in checkpoint_steps(config.get_checkpoint_dir())] == [saved]
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("Stopped by Ctrl-C")]
    assert line.startswith(f"Stopped by Ctrl-C after step 3; the last checkpoint is {saved}. Resume with: ns-train "
                           f"mald-nerf-tiny --data {demo_scene} --output-dir {tmp_path} --timestamp "
                           f"{config.timestamp} --load-dir {config.get_checkpoint_dir()}")
    assert "Traceback" not in out and not (config.get_base_dir() / run_folder.LOCK_NAME).exists()
    assert read_checkpoint(saved)["step"] == 3

    config.load_dir = config.get_checkpoint_dir()
    assert setup_trainer(config)._start_step == 4


def test_second_ctrl_c_stops_at_once_without_saving_the_half_step(demo_scene, tmp_path, capsys, ctrl_c_answered):
    config = tiny_config(demo_scene, tmp_path, steps=50, edit=lambda c: setattr(c, "steps_per_save", 2))
    trainer = setup_trainer(config)
    finished = _interrupt_at(trainer, 3, times=2)
    with pytest.raises(SystemExit) as info:
        trainer.train()
    assert info.value.code == 130 and finished == [0, 1, 2]
    assert [step for step, _ in checkpoint_steps(config.get_checkpoint_dir())] == [2]
    out = " ".join(capsys.readouterr().out.split())
    assert "Stopped by Ctrl-C during step 3 (not saved: it had not finished); the last checkpoint is " in out


def test_full_disk_is_refused_before_any_work_and_a_failed_save_keeps_the_previous_checkpoint(
        demo_scene, tmp_path, monkeypatch):
    config = tiny_config(demo_scene, tmp_path, steps=4, edit=lambda c: setattr(c, "steps_per_save", 2))
    with monkeypatch.context() as patch:
        patch.setattr(run_folder.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 100_000})())
        with pytest.raises(MaldInputError) as info:
            setup_trainer(config)
    message = " ".join(str(info.value).split())
    assert str(config.get_base_dir()) in message and "has 0.1 MB free" in message and _no_run_folder(config)

    trainer = setup_trainer(config)
    real_save = torch.save

    def disk_fills_at_step_3(state, handle, *args, **kwargs):
        if state["step"] == 3:
            handle.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(state, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_at_step_3)
    with pytest.raises(MaldInputError) as info:
        trainer.train()
    message = " ".join(str(info.value).split())
    assert str(config.get_checkpoint_dir()) in message
    assert "the checkpoint of step 3 could not be written (the disk is full)" in message
    assert "the previous checkpoint step-000000002.ckpt is intact" in message and "resume with: ns-train" in message
    monkeypatch.undo()
    assert [step for step, _ in checkpoint_steps(config.get_checkpoint_dir())] == [2]
    assert read_checkpoint(config.get_checkpoint_dir() / "step-000000002.ckpt")["step"] == 2
    assert not list(tmp_path.rglob("*.partial")) and not (config.get_base_dir() / run_folder.LOCK_NAME).exists()


def test_damaged_checkpoint_paragraph_cuts_torch_s_reason_between_words(tmp_path):
    from mald_nerfstudio.errors import damaged_checkpoint_error

    reason = " ".join(f"word{i:03d}" for i in range(60))  # 479 characters, more than the paragraph keeps
    message = str(damaged_checkpoint_error(tmp_path / "step-000000010.ckpt", RuntimeError(reason)))
    kept = message.split("(RuntimeError: ", 1)[1].split("); the file is damaged", 1)[0]
    assert kept.endswith(" ...") and len(kept) <= 300
    assert all(len(word) == 7 for word in kept[: -len(" ...")].split(" ")), kept  # whole words only


def test_checkpoints_are_read_with_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "step-000000001.ckpt"
    torch.save({"step": 1, "pipeline": {}}, path)
    seen = {}
    real_load = torch.load

    def recording_load(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    assert read_checkpoint(path)["step"] == 1
    assert seen.get("weights_only") is True


def test_a_reconstruction_without_checkpoints_is_named_before_it_is_loaded(tmp_path):
    from mald_nerfstudio.box_masks.reconstruction import load_reconstruction

    run = tmp_path / "reconstruction" / "mald-nerf-masks-recon" / "run"
    (run / "nerfstudio_models").mkdir(parents=True)
    (run / "config.yml").write_text("not read: the folder is checked first\n")
    with pytest.raises(MaldInputError) as info:
        load_reconstruction(run / "config.yml")
    assert str(info.value).startswith(f"{run / 'nerfstudio_models'}: this run's checkpoint folder holds no "
                                      "step-*.ckpt checkpoint (it is empty)")
    (run / "nerfstudio_models" / "step-000000001.ckpt").write_bytes(b"")
    (run / "nerfstudio_models" / ".DS_Store").write_bytes(b"")
    with pytest.raises(MaldInputError, match=r"holds 1 file\(s\) that are not checkpoints \(\.DS_Store\)"):
        load_reconstruction(run / "config.yml")
