"""One command for a GPU owner: speed and memory of ``mald-nerf`` at its defaults, and a whole scene's wall time.

    python benchmarks/gpu_suite.py --ldm /path/to/stable-diffusion-2-inpainting --output-dir gpu-suite

Without SD-2's weights, build its architecture with random weights first (about 5 GB; same cost and memory):

    python -m tests.sd2_shaped_ldm /tmp/sd2-shaped && python benchmarks/gpu_suite.py --ldm /tmp/sd2-shaped

Run it from the repository root of an installed checkout. On one device it measures, at mald-nerf's defaults
(4096 observed rays + 4 patches of 64x64, full nerfacto field, SD-2 inpainting at 512 px, batch 4, guidance):

* s/step of mald-nerf and of nerfacto on the same field and the same number of rays (interleaved blocks; the
  field's hash grid is tiny-cuda-nn's when it imports, else nerfstudio's torch one: the report says which);
* peak memory of one training step, of the initial inpainting, of one dataset update and of LoRA training
  (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's peak resident set, reset before each phase);
* s/view of the initial inpainting (full strength, 50 DDIM steps) and of a dataset update (render of the mask
  region, then partial DDIM at t_max), s per LoRA step;
* the wall time of a whole SPIn-NeRF scene (60 masked views, 30k steps) extrapolated from those figures, split
  into LoRA / initial inpainting / training / updates.

It generates its own scene (the demo scene at SPIn-NeRF's resolution, 1008x568) and writes ``gpu_suite.json``
and ``gpu_suite.md`` into ``--output-dir``. ``--device cpu`` with smaller counts runs the same code on a CPU (the
tests do, with a tiny LDM); its seconds say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import torch

from mald_nerfstudio.data.demo_scene import DemoSceneConfig, generate_demo_scene
from mald_nerfstudio.inpaint.ldm import LDMInpainterConfig
from mald_nerfstudio.inpaint.lora.training import customize
from mald_nerfstudio.pipeline.dataset_update import DatasetUpdater, scheduled_update_steps

sys.path.insert(0, str(Path(__file__).resolve().parent))  # step_time_ratio beside this file
from step_time_ratio import build_trainers, time_steps  # noqa: E402

GB = 2**30
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
"""On a CPU, glibc hands large buffers back to the system when they are freed, so the resident set follows the
live tensors and its peak per phase means something."""


# ---------------------------------------------------------------------------------------------- memory
def _proc_status_kb(key: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class PeakMemory:
    """Peak memory of a block on ``device``: CUDA allocator statistics, or the CPU process's resident set."""

    device: str
    before_gb: Optional[float] = None
    peak_gb: Optional[float] = None
    source: str = ""

    @contextmanager
    def measure(self) -> Iterator["PeakMemory"]:
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before_gb = torch.cuda.memory_allocated(self.device) / GB
            self.source = "torch.cuda.max_memory_allocated"
            yield self
            torch.cuda.synchronize(self.device)
            self.peak_gb = torch.cuda.max_memory_allocated(self.device) / GB
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak resident set, to now
            reset = True
        except OSError:
            reset = False
        rss = _proc_status_kb("VmHWM" if reset else "VmRSS")
        self.before_gb = rss / 2**20 if rss is not None else None
        self.source = "peak resident set (VmHWM after clear_refs)" if reset else "unavailable"
        yield self
        hwm = _proc_status_kb("VmHWM")
        # The kernel's resident-set counters lag by a few pages per thread: never report a peak below the start.
        self.peak_gb = max(hwm / 2**20, self.before_gb or 0.0) if (hwm is not None and reset) else None

    def as_dict(self) -> Dict[str, Any]:
        added = None if self.peak_gb is None or self.before_gb is None else self.peak_gb - self.before_gb
        return {"before_gb": self.before_gb, "peak_gb": self.peak_gb, "added_gb": added, "source": self.source}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------- phases
@dataclass
class SuiteSettings:
    """What the suite runs; the defaults are mald-nerf's and a GPU's."""

    ldm: Path
    output_dir: Path
    device: str = "cuda"
    config: str = "mald-nerf"
    width: int = 1008
    height: int = 568
    views: int = 8
    steps: int = 40
    block: int = 10
    warmup: int = 5
    lora_steps: int = 12
    lora_resolution: Optional[int] = None
    working_size: Optional[int] = None
    num_inference_steps: Optional[int] = None
    scene_views: int = 60
    scene_steps: Optional[int] = None
    rays: Optional[int] = None
    patches: Optional[int] = None
    ldm_batch_size: Optional[int] = None
    lora_batch_size: Optional[int] = None
    eval_chunk: Optional[int] = None
    command: str = ""
    notes: List[str] = field(default_factory=list)


def _field_backend() -> str:
    from nerfstudio.utils.external import TCNN_EXISTS

    return "tcnn (tiny-cuda-nn)" if TCNN_EXISTS else "torch (tiny-cuda-nn not importable)"


def _scene(settings: SuiteSettings, folder: Path) -> Path:
    return generate_demo_scene(
        folder,
        DemoSceneConfig(num_train_views=settings.views, num_test_views=1, width=settings.width, height=settings.height),
    )


def _training_steps(settings: SuiteSettings, mald, nerfacto) -> Dict[str, Any]:
    for trainer in (mald, nerfacto):
        time_steps(trainer, 0, settings.warmup)
    mald_times: List[float] = []
    nerfacto_times: List[float] = []
    step = settings.warmup
    while len(mald_times) < settings.steps:
        mald_times += time_steps(mald, step, settings.block)
        nerfacto_times += time_steps(nerfacto, step, settings.block)
        step += settings.block
    return {
        "mald_nerf_s_per_step": statistics.mean(mald_times),
        "nerfacto_s_per_step": statistics.mean(nerfacto_times),
        "ratio": statistics.mean(mald_times) / statistics.mean(nerfacto_times),
        "timed_steps_each": len(mald_times),
        "next_step": step,
    }


def _step_memory(settings: SuiteSettings, mald, step: int) -> Dict[str, Any]:
    memory = PeakMemory(settings.device)
    with memory.measure():
        time_steps(mald, step, 1)
    return memory.as_dict()


def _ldm_inpainter(settings: SuiteSettings, mald):
    config = LDMInpainterConfig(model=str(settings.ldm))  # mald-nerf's inpainter with these weights
    if settings.working_size is not None:
        config.working_size = settings.working_size
    if settings.num_inference_steps is not None:
        config.num_inference_steps = settings.num_inference_steps
    if settings.ldm_batch_size is not None:
        config.batch_size = settings.ldm_batch_size
    return config.setup(device=settings.device)


def _inpainting(settings: SuiteSettings, mald, inpainter) -> Dict[str, Any]:
    pipeline = mald.pipeline
    datamanager = pipeline.datamanager
    update_config = pipeline.config.dataset_update
    start = time.perf_counter()
    inpainter.load()
    load_s = time.perf_counter() - start
    updater = DatasetUpdater(update_config, datamanager, pipeline.model)
    updater.start(inpainter, run_length=mald.config.max_num_iterations)
    views = len(datamanager.views_with_masks())
    initial_memory = PeakMemory(settings.device)
    with initial_memory.measure():
        start = time.perf_counter()
        updater.initial_inpainting()
        _sync(settings.device)
        initial_s = time.perf_counter() - start
    update_step = min(updater.update_steps)
    update_memory = PeakMemory(settings.device)
    with update_memory.measure():
        start = time.perf_counter()
        assert updater.step(update_step), "no dataset update ran"
        _sync(settings.device)
        update_s = time.perf_counter() - start
    return {
        "ldm_load_s": load_s,
        "views": views,
        "batch_size": inpainter.config.batch_size,
        "working_size": inpainter.config.working_size,
        "num_inference_steps": inpainter.config.num_inference_steps,
        "guidance_scale": inpainter.config.guidance_scale,
        "dtype": str(inpainter.dtype).replace("torch.", ""),
        "initial_s_per_view": initial_s / views,
        "initial_memory": initial_memory.as_dict(),
        "update_views": update_config.views_per_update,
        "update_strength": updater.strength(0),
        "update_s_per_view": update_s / min(update_config.views_per_update, views),
        "update_memory": update_memory.as_dict(),
    }


def _lora(settings: SuiteSettings, mald, inpainter) -> Dict[str, Any]:
    config = dataclasses.replace(inpainter.config.customization, steps=settings.lora_steps)
    if settings.lora_resolution is not None:
        config.resolution = settings.lora_resolution
    if settings.lora_batch_size is not None:
        config.batch_size = settings.lora_batch_size
    datamanager = mald.pipeline.datamanager
    stamps: List[float] = []

    def on_loss(step: int, loss: float) -> None:
        _sync(settings.device)
        stamps.append(time.perf_counter())

    memory = PeakMemory(settings.device)
    with tempfile.TemporaryDirectory() as cache, memory.measure():
        config.cache_dir = Path(cache)
        start = time.perf_counter()
        customize(inpainter, datamanager.originals.float() / 255.0, datamanager.masks, config, on_loss=on_loss,
                  show_progress=False)
    gaps = [b - a for a, b in zip([start] + stamps[:-1], stamps)]
    steady = gaps[1:] if len(gaps) > 1 else gaps  # the first step also moves the model and warms up kernels
    return {
        "steps": config.steps,
        "resolution": config.resolution,
        "batch_size": config.batch_size,
        "gradient_checkpointing": config.gradient_checkpointing,
        "s_per_step": statistics.median(steady),
        "first_step_s": gaps[0],
        "memory": memory.as_dict(),
    }


def _scene_wall_time(settings: SuiteSettings, mald, results: Dict[str, Any]) -> Dict[str, Any]:
    """A whole scene at the method's defaults, from the measured per-unit costs."""
    update_config = mald.pipeline.config.dataset_update
    steps = settings.scene_steps or mald.config.max_num_iterations
    updates = len(scheduled_update_steps(update_config, steps))
    # the method's LDM customisation (the defaults' when this run swapped the inpainter for an offline one)
    lora_steps = getattr(mald.pipeline.config.inpainter, "customization", LDMInpainterConfig().customization).steps
    views = settings.scene_views
    phases = {
        "lora_s": results["lora"]["s_per_step"] * lora_steps,
        "initial_inpainting_s": results["inpainting"]["initial_s_per_view"] * views,
        "training_s": results["training"]["mald_nerf_s_per_step"] * steps,
        "updates_s": results["inpainting"]["update_s_per_view"] * updates * min(update_config.views_per_update, views),
    }
    return {
        "masked_views": views,
        "training_steps": steps,
        "lora_steps": lora_steps,
        "dataset_updates": updates,
        "views_per_update": update_config.views_per_update,
        **phases,
        "total_s": sum(phases.values()),
        "nerfacto_training_s": results["training"]["nerfacto_s_per_step"] * steps,
    }


def run_suite(settings: SuiteSettings) -> Dict[str, Any]:
    """Run every phase; returns the results (also written as JSON and markdown)."""
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    results: Dict[str, Any] = {
        "device": settings.device,
        "device_name": torch.cuda.get_device_name(settings.device) if settings.device.startswith("cuda")
        else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "field_backend": _field_backend(),
        "config": settings.config,
        "ldm": str(settings.ldm),
        "image_size": [settings.width, settings.height],
        "command": settings.command,
    }
    if settings.device.startswith("cuda"):
        results["device_total_gb"] = torch.cuda.get_device_properties(settings.device).total_memory / GB
    with tempfile.TemporaryDirectory() as scratch:
        scene = _scene(settings, Path(scratch) / "scene")
        mald, nerfacto, rays = build_trainers(scene, Path(scratch) / "runs", settings.config, settings.device,
                                              downscale_factor=1, rays=settings.rays, patches=settings.patches,
                                              eval_chunk=settings.eval_chunk)
        results["rays_per_step"] = rays
        results["render_chunk_rays"] = mald.pipeline.model.config.eval_num_rays_per_chunk
        print(f"[gpu-suite] training steps: {settings.config} vs nerfacto, {rays} rays per step")
        results["training"] = _training_steps(settings, mald, nerfacto)
        del nerfacto
        gc.collect()
        results["training"]["step_memory"] = _step_memory(settings, mald, results["training"].pop("next_step"))
        print("[gpu-suite] initial inpainting and one dataset update")
        inpainter = _ldm_inpainter(settings, mald)
        results["inpainting"] = _inpainting(settings, mald, inpainter)
        print("[gpu-suite] LoRA customisation steps")
        results["lora"] = _lora(settings, mald, inpainter)
        results["scene"] = _scene_wall_time(settings, mald, results)
    results["notes"] = settings.notes
    (settings.output_dir / "gpu_suite.json").write_text(json.dumps(results, indent=2))
    (settings.output_dir / "gpu_suite.md").write_text(markdown(results))
    return results


# ---------------------------------------------------------------------------------------------- report
def _gb(memory: Dict[str, Any]) -> str:
    if memory.get("peak_gb") is None:
        return "n/a"
    return f"{memory['peak_gb']:.2f} GB (+{memory['added_gb']:.2f} GB over the {memory['before_gb']:.2f} GB before)"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def markdown(results: Dict[str, Any]) -> str:
    """The results as a markdown report."""
    t, i, lora, s = results["training"], results["inpainting"], results["lora"], results["scene"]
    lines = [
        f"# mald-nerf GPU suite: {results['device_name']} ({results['device']})",
        "",
        f"torch {results['torch']}, field hash grid: {results['field_backend']}, method `{results['config']}`, "
        f"{results['rays_per_step']} rays per step, renders in chunks of {results['render_chunk_rays']} rays, "
        f"images {results['image_size'][0]}x{results['image_size'][1]}, "
        f"LDM `{results['ldm']}` ({i['dtype']}, working size {i['working_size']}, batch {i['batch_size']}, "
        f"guidance {i['guidance_scale']}). Memory: {t['step_memory']['source']}.",
        "",
        f"Command: `{results['command']}`",
        "",
        "| what | time | peak memory |",
        "|---|---|---|",
        f"| training step, mald-nerf | {t['mald_nerf_s_per_step']:.3f} s/step | {_gb(t['step_memory'])} |",
        f"| training step, nerfacto (same field and rays) | {t['nerfacto_s_per_step']:.3f} s/step "
        f"(mald-nerf / nerfacto = {t['ratio']:.2f}) | |",
        f"| initial inpainting ({i['num_inference_steps']} DDIM steps) | {i['initial_s_per_view']:.2f} s/view "
        f"| {_gb(i['initial_memory'])} |",
        f"| dataset update (render + partial DDIM at t = {i['update_strength']:.2f}) | "
        f"{i['update_s_per_view']:.2f} s/view | {_gb(i['update_memory'])} |",
        f"| LoRA step ({lora['resolution']} px, batch {lora['batch_size']}) | {lora['s_per_step']:.2f} s/step "
        f"| {_gb(lora['memory'])} |",
        "",
        f"Whole scene at the defaults ({s['masked_views']} masked views, {s['training_steps']} steps, "
        f"{s['lora_steps']} LoRA steps, {s['dataset_updates']} updates of {s['views_per_update']} views), "
        "extrapolated from the figures above:",
        "",
        "| LoRA | initial inpainting | training | updates | total | nerfacto training alone |",
        "|---|---|---|---|---|---|",
        f"| {_duration(s['lora_s'])} | {_duration(s['initial_inpainting_s'])} | {_duration(s['training_s'])} | "
        f"{_duration(s['updates_s'])} | **{_duration(s['total_s'])}** | {_duration(s['nerfacto_training_s'])} |",
    ]
    for note in results.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ldm", type=Path, required=True, help="folder of a diffusers inpainting pipeline")
    parser.add_argument("--output-dir", type=Path, default=Path("gpu-suite"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--config", choices=["mald-nerf", "mald-nerf-tiny"], default="mald-nerf")
    parser.add_argument("--width", type=int, default=1008)
    parser.add_argument("--height", type=int, default=568)
    parser.add_argument("--views", type=int, default=8, help="training views of the generated scene")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per method")
    parser.add_argument("--block", type=int, default=10, help="steps per interleaved block")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per method first")
    parser.add_argument("--lora-steps", type=int, default=12)
    parser.add_argument("--lora-resolution", type=int, default=None, help="default: the method's (512)")
    parser.add_argument("--working-size", type=int, default=None, help="default: the method's (512)")
    parser.add_argument("--num-inference-steps", type=int, default=None, help="default: the method's (50)")
    parser.add_argument("--scene-views", type=int, default=60, help="masked views of the extrapolated scene")
    parser.add_argument("--scene-steps", type=int, default=None, help="default: the method's max-num-iterations")
    parser.add_argument("--rays", type=int, default=None, help="observed rays per step; default: the method's")
    parser.add_argument("--patches", type=int, default=None, help="mask patches per step; default: the method's")
    parser.add_argument("--ldm-batch-size", type=int, default=None, help="views per LDM call; default: 4")
    parser.add_argument("--lora-batch-size", type=int, default=None, help="LoRA crops per step; default: 2")
    parser.add_argument("--eval-chunk", type=int, default=None,
                        help="rays per rendering chunk of the updates' renders; default: the method's (32768)")
    parser.add_argument("--note", action="append", default=[], help="a line to add to the report")
    args = parser.parse_args(argv)
    if args.device == "cpu" and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()) and argv is None:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device: pass --device cpu to run the suite on the CPU")
    settings = SuiteSettings(
        ldm=args.ldm, output_dir=args.output_dir, device=args.device, config=args.config, width=args.width,
        height=args.height, views=args.views, steps=args.steps, block=args.block, warmup=args.warmup,
        lora_steps=args.lora_steps, lora_resolution=args.lora_resolution, working_size=args.working_size,
        num_inference_steps=args.num_inference_steps, scene_views=args.scene_views, scene_steps=args.scene_steps,
        rays=args.rays, patches=args.patches, ldm_batch_size=args.ldm_batch_size,
        lora_batch_size=args.lora_batch_size, eval_chunk=args.eval_chunk, notes=args.note,
        command="python benchmarks/gpu_suite.py " + " ".join(sys.argv[1:] if argv is None else argv),
    )
    results = run_suite(settings)
    print(markdown(results))
    print(f"written: {settings.output_dir / 'gpu_suite.json'} and {settings.output_dir / 'gpu_suite.md'}")


if __name__ == "__main__":
    main()
