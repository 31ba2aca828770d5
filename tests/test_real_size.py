"""`ns-train mald-nerf` at its GPU defaults with a Stable-Diffusion-2-sized LDM, on the CPU (marker ``real_size``).

The LDM has exactly SD2 inpainting's architecture with random weights (:mod:`tests.sd2_shaped_ldm`, about 5 GB,
built once per machine in a cache folder). The run keeps every GPU default of ``mald-nerf`` (full nerfacto field,
4096 observed rays + 4 patches of 64x64 per step, StyleGAN2 discriminator at 64 px, LDM batch 4 with guidance) and
reduces only step counts (NeRF, LoRA and DDIM steps) and the LDM's working size (256 px for the inpainting and the
LoRA crops instead of 512). It covers LoRA customisation, the initial inpainting, a dataset update, a checkpoint,
a resume on a machine without the LoRA cache (neither retraining LoRA nor re-inpainting), a second update after
the resume, and ``ns-eval`` on the result. About 25 minutes and 20 GB of memory on 2 CPU cores, so it is not part
of the default test run:

    python3 -m pytest -q -m real_size tests/test_real_size.py -s
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import List

import pytest
import torch

pytestmark = pytest.mark.real_size

FIRST_RUN_STEPS = 4  # steps 0..3: LoRA, initial inpainting, the update at step 2, the final checkpoint at step 3
TOTAL_STEPS = 6  # the resume trains steps 4 and 5 and runs the update at step 5


def _run(args: List[str], cwd: Path, timeout: float = 3600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    start = time.time()
    result = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=timeout)
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"\n{args[0]} {args[1]}: exit {result.returncode} in {time.time() - start:.0f} s; "
          f"peak RSS of the children so far {peak_gb:.1f} GB")
    return result


def _train_args(scene: Path, out: Path, ldm: Path, lora_cache: Path, steps: int, *extra: str) -> List[str]:
    return [
        "ns-train", "mald-nerf", "--data", str(scene), "--output-dir", str(out), "--timestamp", "run",
        "--machine.device-type", "cpu", "--vis", "tensorboard", "--logging.steps-per-log", "1",
        "--max-num-iterations", str(steps), "--steps-per-save", "3",
        "--pipeline.dataset-update.first-update-step", "2", "--pipeline.dataset-update.update-every", "3",
        *extra,
        # tyro: the inpainter subcommand and its options come after the method's own options
        "pipeline.inpainter:ldm", "--pipeline.inpainter.model", str(ldm),
        "--pipeline.inpainter.working-size", "256", "--pipeline.inpainter.num-inference-steps", "2",
        "--pipeline.inpainter.customization.steps", "2", "--pipeline.inpainter.customization.resolution", "256",
        "--pipeline.inpainter.customization.cache-dir", str(lora_cache),
    ]


def _buffer_and_schedule(checkpoint: Path) -> dict:
    pipeline = torch.load(checkpoint, map_location="cpu", weights_only=False)["pipeline"]
    return {**pipeline["datamanager._extra_state"], **pipeline["_extra_state"]["dataset_update"]}


@pytest.fixture(scope="module")
def sd2_shaped_ldm() -> Path:
    from tests.sd2_shaped_ldm import build_sd2_shaped_pipeline, parameter_counts

    folder = build_sd2_shaped_pipeline()
    counts = parameter_counts(folder)
    assert counts["unet"] > 800e6 and counts["text_encoder"] > 300e6 and counts["vae"] > 80e6, counts
    return folder


def test_gpu_defaults_with_an_sd2_sized_ldm_customise_inpaint_update_resume_and_evaluate(sd2_shaped_ldm, tmp_path):
    from mald_nerfstudio.data.demo_scene import DemoSceneConfig, generate_demo_scene

    scene = generate_demo_scene(
        tmp_path / "scene", DemoSceneConfig(num_train_views=8, num_test_views=2, width=160, height=120)
    )
    out, lora_cache = tmp_path / "out", tmp_path / "lora-cache"

    first = _run(_train_args(scene, out, sd2_shaped_ldm, lora_cache, FIRST_RUN_STEPS), cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-4000:]
    assert "LDM customised to the scene with LoRA adapter" in first.stdout
    assert list(lora_cache.rglob("pytorch_lora_weights.safetensors"))
    run_dir = out / scene.name / "mald-nerf" / "run"
    checkpoint_dir = run_dir / "nerfstudio_models"
    first_checkpoint = checkpoint_dir / f"step-{FIRST_RUN_STEPS - 1:09d}.ckpt"
    assert first_checkpoint.is_file(), sorted(checkpoint_dir.iterdir())
    before = _buffer_and_schedule(first_checkpoint)
    assert before["inpainted_views"].all() and before["num_updates"] == 1, before["history"]

    shutil.rmtree(lora_cache)  # a machine without the LoRA cache: the resume must use the checkpoint's adapter
    resumed = _run(
        _train_args(scene, out, sd2_shaped_ldm, lora_cache, TOTAL_STEPS, "--load-dir", str(checkpoint_dir)),
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert f"resuming at step {FIRST_RUN_STEPS}" in resumed.stdout
    assert "LoRA adapter restored from the checkpoint" in resumed.stdout
    assert "LDM customised to the scene" not in resumed.stdout and not lora_cache.exists()
    assert "Resuming with the checkpoint's inpainted images" in resumed.stdout
    after = _buffer_and_schedule(checkpoint_dir / f"step-{TOTAL_STEPS - 1:09d}.ckpt")
    assert [step for step, _ in after["history"]] == [2, 5]
    # Update 0 (step 2) refreshed views 0-3 and update 1 (step 5) views 4-7 of the 8: views 0-3 must be exactly
    # as the first run left them, which a re-inpainting at the resume would have changed.
    assert torch.equal(after["views"], before["views"])
    assert torch.equal(after["inpainted"][:4], before["inpainted"][:4])
    assert not torch.equal(after["inpainted"][4:], before["inpainted"][4:])

    eval_json = tmp_path / "eval.json"
    evaluated = _run(["ns-eval", "--load-config", str(run_dir / "config.yml"), "--output-path", str(eval_json)],
                     cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stdout[-4000:]
    results = json.loads(eval_json.read_text())["results"]
    assert results["psnr"] > 0 and "m_swd" in results, results
