"""benchmarks/gpu_suite.py runs every phase and writes its report (here on the CPU with a tiny LDM and scene)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_gpu_suite_measures_every_phase_and_writes_json_and_markdown(tiny_ldm_dir, tmp_path):
    # A subprocess, as a GPU owner runs it (nerfstudio's writers are process-wide state).
    out = tmp_path / "suite"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"),
         "--ldm", str(tiny_ldm_dir), "--output-dir", str(out), "--device", "cpu", "--config", "mald-nerf-tiny",
         "--width", "96", "--height", "72", "--views", "3", "--steps", "2", "--block", "1", "--warmup", "1",
         "--lora-steps", "3", "--lora-resolution", "32", "--working-size", "64", "--num-inference-steps", "2",
         "--note", "test run"],
        cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    results = json.loads((out / "gpu_suite.json").read_text())
    training, inpainting, lora, scene = (results[k] for k in ("training", "inpainting", "lora", "scene"))
    assert training["timed_steps_each"] == 2 and training["mald_nerf_s_per_step"] > 0
    assert training["ratio"] == pytest.approx(training["mald_nerf_s_per_step"] / training["nerfacto_s_per_step"])
    assert results["field_backend"].startswith(("tcnn", "torch"))
    assert inpainting["views"] == 3 and inpainting["initial_s_per_view"] > 0 and inpainting["update_s_per_view"] > 0
    assert 0 < inpainting["update_strength"] < 1
    assert lora["steps"] == 3 and lora["s_per_step"] > 0
    if sys.platform.startswith("linux"):  # the resident-set peak comes from /proc
        for memory in (training["step_memory"], inpainting["initial_memory"], inpainting["update_memory"],
                       lora["memory"]):
            assert memory["peak_gb"] >= memory["before_gb"] > 0, memory
    # The whole-scene figure is the per-unit costs times the scene's counts: 60 views, mald-nerf-tiny's 2000 steps.
    assert scene["masked_views"] == 60 and scene["training_steps"] == 2000
    assert scene["training_s"] == pytest.approx(training["mald_nerf_s_per_step"] * 2000)
    assert scene["initial_inpainting_s"] == pytest.approx(inpainting["initial_s_per_view"] * 60)
    assert scene["updates_s"] == pytest.approx(
        inpainting["update_s_per_view"] * scene["dataset_updates"] * scene["views_per_update"])
    assert scene["total_s"] == pytest.approx(
        sum(scene[k] for k in ("lora_s", "initial_inpainting_s", "training_s", "updates_s")))
    report = (out / "gpu_suite.md").read_text()
    assert "| training step, mald-nerf |" in report and "test run" in report and "Whole scene" in report
