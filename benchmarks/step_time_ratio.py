"""Step-time cost of MALD-NeRF's training iteration relative to plain nerfacto (not a test).

Both trainers are built in one process on the same scene, with the same field configuration and the same
number of rays per step (nerfacto draws ``recon + patch`` rays; mald-nerf draws ``recon`` observed rays plus
its mask patches and adds the discriminator step). They run interleaved blocks of iterations so that machine
load affects both alike, and the script prints the mean seconds per step of each and their ratio.

    python benchmarks/step_time_ratio.py --data demo-scene/ [--steps 40] [--config mald-nerf-tiny]

The nerfacto side is nerfstudio's VanillaPipeline, VanillaDataManager and Trainer with our model class with the
discriminator off: nerfacto's field, sampler and losses, built without the LPIPS metric whose torchmetrics class
downloads AlexNet at construction (an evaluation metric that plays no part in a training step).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from statistics import mean
from typing import Optional

import torch

from mald_nerfstudio.inpaint.telea import TeleaInpainterConfig
from mald_nerfstudio.method_configs.mald_nerf import mald_nerf_config, mald_nerf_tiny_config
from mald_nerfstudio.model.mald_model import MaldNerfModelConfig
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.nerfacto import NerfactoModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig


def build_trainers(data: Path, out: Path, which: str, device: str, downscale_factor: Optional[int] = None,
                   rays: Optional[int] = None, patches: Optional[int] = None, eval_chunk: Optional[int] = None):
    """(mald-nerf trainer, nerfacto trainer, rays per step) with matching field config and rays per step; ``rays``
    and ``patches`` replace the method's observed rays and mask patches per step, ``eval_chunk`` its rays per
    rendering chunk (the dataset update's renders)."""
    mald = mald_nerf_tiny_config() if which == "mald-nerf-tiny" else mald_nerf_config()
    mald.pipeline.datamanager.data = data
    mald.pipeline.datamanager.dataparser.downscale_factor = downscale_factor
    if rays is not None:
        mald.pipeline.datamanager.train_num_rays_per_batch = rays
    if patches is not None:
        mald.pipeline.datamanager.num_inpaint_patches = patches
    if eval_chunk is not None:
        mald.pipeline.model.eval_num_rays_per_chunk = eval_chunk
    mald.pipeline.inpainter = TeleaInpainterConfig()  # the initial inpainting is not part of a step
    mald.machine.device_type = device
    mald.vis, mald.output_dir = "tensorboard", out
    manager = mald.pipeline.datamanager
    patch_rays = manager.num_inpaint_patches * manager.inpaint_patch_size**2
    rays = manager.train_num_rays_per_batch + patch_rays

    field_options = {f: getattr(mald.pipeline.model, f) for f in NerfactoModelConfig.__dataclass_fields__
                     if f != "_target"}
    nerfacto = TrainerConfig(
        method_name="nerfacto-same-field",
        max_num_iterations=mald.max_num_iterations,
        mixed_precision=mald.mixed_precision,
        machine=mald.machine,
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=mald.pipeline.datamanager.dataparser, data=data, train_num_rays_per_batch=rays
            ),
            model=MaldNerfModelConfig(**field_options, use_adversarial=False),
        ),
        optimizers={k: v for k, v in mald.optimizers.items() if k != "discriminator"},
        vis="tensorboard",
        output_dir=out,
        viewer=ViewerConfig(),
    )
    trainers = []
    for config in (mald, nerfacto):
        config.set_timestamp()
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        trainers.append(trainer)
    trainers[0].pipeline.prepare_training(trainers[0])
    return trainers[0], trainers[1], rays


def time_steps(trainer, start: int, count: int) -> list:
    """Seconds per train_iteration (with the pipeline's callbacks, as in Trainer.train)."""
    times = []
    for step in range(start, start + count):
        begin = time.perf_counter()
        trainer.pipeline.train()
        trainer.train_iteration(step)
        if trainer.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - begin)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="scene folder (e.g. the demo scene)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per method")
    parser.add_argument("--block", type=int, default=10, help="steps per interleaved block")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per method first")
    parser.add_argument("--config", choices=["mald-nerf-tiny", "mald-nerf"], default="mald-nerf-tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("/tmp/mald-step-time"))
    args = parser.parse_args()

    mald, nerfacto, rays = build_trainers(args.data, args.out, args.config, args.device)
    for trainer in (mald, nerfacto):
        time_steps(trainer, 0, args.warmup)
    mald_times, nerfacto_times, step = [], [], args.warmup
    while len(mald_times) < args.steps:
        mald_times += time_steps(mald, step, args.block)
        nerfacto_times += time_steps(nerfacto, step, args.block)
        step += args.block
    print(f"{args.config} vs nerfacto, same field config, {rays} rays per step, {args.device}, "
          f"{torch.get_num_threads()} threads, {len(mald_times)} steps each:")
    print(f"  mald-nerf: {mean(mald_times):.3f} s/step   nerfacto: {mean(nerfacto_times):.3f} s/step   "
          f"ratio: {mean(mald_times) / mean(nerfacto_times):.2f}")


if __name__ == "__main__":
    main()
