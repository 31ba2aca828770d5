"""The edges of a run as a user meets them (issue 23): the real ``ns-train`` / ``ns-eval`` command, its exit status,
one paragraph (or line) naming the file or folder and the fix, and nothing written where it should not be."""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mald_nerfstudio.run_folder import LOCK_NAME
from nerfstudio.engine.trainer import TrainerConfig
from tests.test_cli import answer_ctrl_c, run
from tests.training_harness import tiny_config, train

pytestmark = pytest.mark.slow

SMALL = ["--vis", "tensorboard", "--pipeline.datamanager.train-num-rays-per-batch", "256"]
ENV = {"OMP_NUM_THREADS": "1"}


def paragraph(output: str) -> str:
    """The output on one line (the error paragraph is wrapped at 110 characters, paths kept whole)."""
    return " ".join(output.split())


def refused(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout[-3000:]
    assert "Traceback" not in result.stdout and "mald-nerfstudio error:" in result.stdout, result.stdout[-3000:]
    return paragraph(result.stdout)


def test_ns_train_refuses_a_checkpoint_of_another_method_naming_both_and_writes_nothing(demo_scene, tmp_path):
    foreign = tiny_config(demo_scene, tmp_path / "foreign", steps=1, method="nerfacto-masked-tiny")
    train(foreign)
    (checkpoint,) = foreign.get_checkpoint_dir().glob("step-*.ckpt")
    out = tmp_path / "out"
    text = refused(run(["ns-train", "mald-nerf-tiny", "--data", str(demo_scene), "--output-dir", str(out),
                        "--load-dir", str(checkpoint.parent), *SMALL], cwd=tmp_path, env=ENV))
    assert f"{checkpoint}: this checkpoint is of a nerfacto-masked-tiny run and this run is mald-nerf-tiny" in text
    assert "--warm-start True" in text
    assert not out.exists()  # not even the config.yml nerfstudio writes before the trainer's checks


def test_ns_eval_on_a_run_without_checkpoints_names_its_checkpoint_folder(demo_scene, tmp_path):
    config = tiny_config(demo_scene, tmp_path / "runs", steps=1)
    TrainerConfig.save_config(config)  # a run stopped before its first checkpoint: config.yml, empty folder
    folder = config.get_checkpoint_dir()
    folder.mkdir()
    text = refused(run(["ns-eval", "--load-config", str(config.get_base_dir() / "config.yml"),
                        "--output-path", str(tmp_path / "eval.json")], cwd=tmp_path, env=ENV))
    assert f"{folder}: this run's checkpoint folder holds no step-*.ckpt checkpoint (it is empty)" in text
    assert not (tmp_path / "eval.json").exists()


def _private_mounts_work() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


@pytest.mark.skipif(not _private_mounts_work(), reason="needs unshare (Linux user and mount namespaces)")
@pytest.mark.parametrize("disk", ["read-only", "full"])
def test_ns_train_into_a_read_only_or_full_output_folder_names_it_before_any_work(demo_scene, tmp_path, disk):
    out = tmp_path / "out"
    out.mkdir()
    mount = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0"' if disk == "read-only"
             else 'mount -t tmpfs -o size=64k tmpfs "$0"')
    # In a private mount namespace: the folder is read-only (or a 64 kB disk) for this command only.
    script = f'{mount} && "$@"; status=$?; echo "left in the output folder: [$(ls -A "$0")]"; exit $status'
    text = refused(run(["unshare", "-rm", "sh", "-c", script, str(out), "ns-train", "mald-nerf-tiny", "--data",
                        str(demo_scene), "--output-dir", str(out), "--timestamp", "run", *SMALL],
                       cwd=tmp_path, env=ENV))
    run_dir = out / demo_scene.name / "mald-nerf-tiny" / "run"
    if disk == "read-only":
        assert f"{out}: ns-train cannot write its run folder here (Read-only file system; errno EROFS)" in text
        assert "Training views:" not in text  # refused before the data was read
    else:
        assert f"{run_dir}: the disk holding this run folder has 0.1 MB free and one checkpoint of this run " in text
        assert "Step (% Done)" not in text  # refused before the first step
    assert "left in the output folder: []" in text


def test_ctrl_c_stops_with_one_line_naming_the_checkpoint_and_the_command_that_resumes(demo_scene, tmp_path):
    args = ["ns-train", "mald-nerf-tiny", "--data", str(demo_scene), "--output-dir", "out",
            "--max-num-iterations", "30", "--steps-per-save", "5", *SMALL]
    proc = subprocess.Popen(args, cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "ignore", **ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=answer_ctrl_c)
    deadline = time.time() + 300
    while not glob.glob(str(tmp_path / "out/*/*/*/nerfstudio_models/step-000000005.ckpt")) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130 and "Traceback" not in output, output[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("Stopped by Ctrl-C")]
    stopped = line.split("; the last checkpoint is ", 1)
    step = int(stopped[0].removeprefix("Stopped by Ctrl-C after step "))
    checkpoint, command = stopped[1].split(". Resume with: ", 1)
    (run_dir,) = (tmp_path / "out" / demo_scene.name / "mald-nerf-tiny").iterdir()
    assert checkpoint == f"out/{demo_scene.name}/mald-nerf-tiny/{run_dir.name}/nerfstudio_models/step-{step:09d}.ckpt"
    assert 5 <= step < 29 and sorted(p.name for p in (run_dir / "nerfstudio_models").iterdir()) == [
        Path(checkpoint).name]  # the finished step was saved (only the latest is kept)
    assert not (run_dir / LOCK_NAME).exists()

    resumed = run(shlex.split(command), cwd=tmp_path, env=ENV)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"resuming at step {step + 1}" in resumed.stdout
    assert (run_dir / "nerfstudio_models" / "step-000000029.ckpt").is_file()


def test_a_second_run_into_the_same_folder_is_refused_and_a_killed_run_leaves_no_lock(demo_scene, tmp_path):
    args = ["ns-train", "mald-nerf-tiny", "--data", str(demo_scene), "--output-dir", str(tmp_path / "out"),
            "--timestamp", "run", *SMALL]
    run_dir = tmp_path / "out" / demo_scene.name / "mald-nerf-tiny" / "run"
    first = subprocess.Popen(args + ["--max-num-iterations", "100000"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore", **ENV})
    try:
        deadline = time.time() + 300
        while not (run_dir / "config.yml").exists() and time.time() < deadline:  # written once the set-up passed
            assert first.poll() is None
            time.sleep(0.05)
        config = (run_dir / "config.yml").read_bytes()
        first.send_signal(signal.SIGSTOP)  # alive but idle: the second run does not compete with it for the CPU
        text = refused(run(args + ["--max-num-iterations", "3"], cwd=tmp_path, env=ENV))
        assert f"{run_dir}: another ns-train is writing into this run folder (process {first.pid} on this " in text
        assert (run_dir / "config.yml").read_bytes() == config
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == first.pid
    finally:
        first.kill()  # SIGKILL: no clean-up runs, the lock file stays
        first.wait()
    assert (run_dir / LOCK_NAME).exists()

    after = run(args + ["--max-num-iterations", "3"], cwd=tmp_path, env=ENV)
    assert after.returncode == 0, after.stdout[-3000:]
    assert f"the run that left it (process {first.pid}" in paragraph(after.stdout)
    assert (run_dir / "nerfstudio_models" / "step-000000002.ckpt").is_file() and not (run_dir / LOCK_NAME).exists()
