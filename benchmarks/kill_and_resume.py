"""Kill ``ns-train mald-nerf-tiny`` with SIGKILL at random moments (some during a checkpoint save), resume it with
the same command plus ``--load-dir``, and check that every trial ends like an uninterrupted run of the same seed:
same last step, same dataset-update steps and strengths, same inpainted images.

    python benchmarks/kill_and_resume.py --data demo-scene --trials 6

Prints one line per trial and exits non-zero if any trial differs. The runs use one CPU thread: multi-threaded CPU
training is not bitwise deterministic (two uninterrupted 2-thread runs of the same seed end with different
weights), so only single-threaded runs can be compared bit for bit.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import torch

from mald_nerfstudio.checkpoint_files import read_checkpoint


def train_args(data: Path, out: Path, steps: int, save_every: int) -> List[str]:
    return [
        "ns-train", "mald-nerf-tiny", "--data", str(data), "--output-dir", str(out), "--timestamp", "run",
        "--max-num-iterations", str(steps), "--steps-per-save", str(save_every), "--vis", "tensorboard",
        "--pipeline.dataset-update.first-update-step", "20", "--pipeline.dataset-update.update-every", "20",
    ]


def final_state(out: Path) -> Tuple[str, dict]:
    checkpoints = sorted(out.rglob("step-*.ckpt"))
    pipeline = read_checkpoint(checkpoints[-1])["pipeline"]
    return checkpoints[-1].name, {**pipeline["datamanager._extra_state"], **pipeline["_extra_state"]["dataset_update"]}


def kill_at(proc: subprocess.Popen, run_dir: Path, seconds: float, during_save: bool) -> str:
    """SIGKILL ``proc`` after ``seconds`` or, with ``during_save``, as soon as a checkpoint is being written."""
    deadline = time.time() + seconds
    while proc.poll() is None:
        if during_save and time.time() > deadline and list(run_dir.glob(".*.partial")):
            proc.send_signal(signal.SIGKILL)
            return "during a save"
        if not during_save and time.time() > deadline:
            proc.send_signal(signal.SIGKILL)
            return f"after {seconds:.1f} s"
        time.sleep(0.002)
    return "finished before the kill"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="scene folder (e.g. from mald-nerf-demo-scene)")
    parser.add_argument("--work-dir", type=Path, default=Path("kill-and-resume"), help="where the runs go")
    parser.add_argument("--trials", type=int, default=6, help="killed-and-resumed runs")
    parser.add_argument("--steps", type=int, default=100, help="steps per run")
    parser.add_argument("--save-every", type=int, default=20, help="--steps-per-save of the runs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rng = random.Random(args.seed)

    start = time.time()
    reference = args.work_dir / "uninterrupted"
    subprocess.run(train_args(args.data, reference, args.steps, args.save_every), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_seconds = time.time() - start
    want_name, want = final_state(reference)
    print(f"uninterrupted: {want_name}, {want['num_updates']} updates, {run_seconds:.0f} s", flush=True)

    failures = 0
    for trial in range(args.trials):
        out = args.work_dir / f"trial-{trial}"
        run_dir = out / args.data.name / "mald-nerf-tiny" / "run"
        command = train_args(args.data, out, args.steps, args.save_every)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        when = kill_at(proc, run_dir, rng.uniform(0.3, 0.95) * run_seconds, during_save=trial % 2 == 1)
        proc.wait()
        left = sorted(p.name for p in (run_dir / "nerfstudio_models").glob("*.ckpt"))
        partial = sorted(p.name for p in run_dir.glob(".*.partial"))
        resume = command + ["--load-dir", str(run_dir / "nerfstudio_models")] if left else command
        result = subprocess.run(resume, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        got_name, got = final_state(out) if result.returncode == 0 else ("(resume failed)", {})
        same = (
            result.returncode == 0
            and got_name == want_name
            and got["history"] == want["history"]
            and torch.equal(got["inpainted"], want["inpainted"])
        )
        failures += not same
        print(f"trial {trial}: killed {when}; left {left or 'no checkpoint'} {partial or ''}; resumed to "
              f"{got_name}, {got.get('num_updates')} updates: {'same as uninterrupted' if same else 'DIFFERENT'}",
              flush=True)
        if result.returncode != 0:
            print(result.stdout[-2000:])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
