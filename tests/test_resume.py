"""Checkpoints survive kills and damage, and a resumed run finishes the run it continues.

The end-to-end test SIGKILLs a real ``ns-train mald-nerf-tiny`` after a checkpoint, resumes it with the same
flags plus ``--load-dir``, and compares the result with an uninterrupted run of the same seed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List

import pytest
import torch

from mald_nerfstudio.checkpoint_files import atomic_torch_save, checkpoint_steps
from mald_nerfstudio.errors import MaldInputError
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
    return torch.load(checkpoint, map_location="cpu")["pipeline"]["datamanager._extra_state"]


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
    assert got["update_history"] == expected["update_history"]  # same update steps and strengths
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
    assert resumed._start_step == 6 and resumed.schedule_horizon == 6
    resumed.train()
    assert resumed.step == 9
    history = resumed.pipeline.datamanager.update_history
    assert [step for step, _ in history] == [2, 4, 6, 8]
    assert history[-1][1] == history[-2][1] == pytest.approx(0.2)  # K = 1 from the 6-step horizon: t_min after it

    config.max_num_iterations = 10
    finished = setup_trainer(config)  # the newest checkpoint is now step 9: nothing left to train
    finished.train()
    assert finished.step == 0 and not list(config.get_checkpoint_dir().glob("step-00000001[0-9].ckpt"))


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
    assert torch.load(folder / "step-000000020.ckpt")["step"] == 20
