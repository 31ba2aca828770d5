"""Build and run mald-nerf trainers in-process, the way ns-train does, for end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from mald_nerfstudio.inpaint.base import NoInpainterConfig
from mald_nerfstudio.inpaint.telea import TeleaInpainterConfig
from mald_nerfstudio.method_configs.baselines import variant_config
from mald_nerfstudio.method_configs.mald_nerf import mald_nerf_tiny_config
from mald_nerfstudio.trainer import MaldTrainer, MaldTrainerConfig
from nerfstudio.utils import writer


def tiny_config(data: Path, out: Path, steps: int, edit: Optional[Callable[[MaldTrainerConfig], None]] = None,
                num_test_views: Optional[int] = None, method: str = "mald-nerf-tiny") -> MaldTrainerConfig:
    """mald-nerf-tiny (or another ``-tiny`` method) for a test: CPU, tensorboard only, telea inpainter (fast; none
    for a method without one), no eval during training, and the paper's whole-mask inpainting before the first step
    (no warm-up, no visibility test) unless ``edit`` asks for them (tests/pipeline/test_visibility.py does)."""
    config = mald_nerf_tiny_config() if method == "mald-nerf-tiny" else variant_config(method)
    config.pipeline.datamanager.data = data
    if num_test_views is not None:
        config.pipeline.datamanager.dataparser.num_test_views = num_test_views
    config.output_dir = out
    config.vis = "tensorboard"
    config.max_num_iterations = steps
    config.steps_per_eval_batch = 10_000
    config.steps_per_eval_image = 10_000
    if not isinstance(config.pipeline.inpainter, NoInpainterConfig):
        config.pipeline.inpainter = TeleaInpainterConfig()
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    config.pipeline.model.eval_num_rays_per_chunk = 4096
    config.logging.steps_per_log = 1
    config.pipeline.dataset_update.warmup_steps = 0
    config.pipeline.visibility.enabled = False
    if edit is not None:
        edit(config)
    config.set_timestamp()
    return config


def setup_trainer(config: MaldTrainerConfig) -> MaldTrainer:
    """config.setup() + trainer.setup(), as nerfstudio's train_loop does."""
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def train(config: MaldTrainerConfig) -> MaldTrainer:
    """Train to completion in-process (no viewer) and return the trainer."""
    config.save_config()
    trainer = setup_trainer(config)
    trainer.train()
    writer.write_out_storage()
    return trainer
