"""``mald-nerf-masks-recon``: the quick reconstruction ``mald-nerf-masks`` trains to find the object's box.

nerfacto on every view of the capture, the object present and no masks, with our nerfacto subclass (nerfacto's own
model builds an LPIPS metric that downloads AlexNet, so it cannot start offline) and nerfstudio's vanilla data
manager. It is registered so that ``ns-viewer --load-config`` and ``ns-eval`` open the reconstruction (they look a
run's method up by name); ``mald-nerf-masks`` trains it with the scene's frame set (see
``mald_nerfstudio/box_masks/reconstruction.py``).
"""

from __future__ import annotations

from typing import Optional

from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.nerfacto import NerfactoModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from mald_nerfstudio.method_configs.mald_nerf import (
    VIEWER_HOST,
    mald_nerf_config,
    mald_nerf_tiny_config,
    optimizers,
)
from mald_nerfstudio.model.camera_poses import ObservedPixelsCameraOptimizerConfig
from mald_nerfstudio.model.mald_model import DISCRIMINATOR_GROUP, MaldNerfModelConfig

RECON_METHOD = "mald-nerf-masks-recon"
"""The registered name of the reconstruction."""


def mald_nerf_masks_recon_config(cuda: bool = True, steps: Optional[int] = None,
                                 rays_per_batch: Optional[int] = None) -> TrainerConfig:
    """The reconstruction's trainer: nerfacto's field sizes on CUDA, mald-nerf-tiny's on a CPU."""
    steps = steps or (5000 if cuda else 1500)
    rays = rays_per_batch or (4096 if cuda else 1024)
    base = mald_nerf_config() if cuda else mald_nerf_tiny_config()
    field_options = {f: getattr(base.pipeline.model, f) for f in NerfactoModelConfig.__dataclass_fields__
                     if f not in ("_target", "camera_optimizer")}
    groups = {k: v for k, v in optimizers(max_steps=max(steps, 1)).items() if k != DISCRIMINATOR_GROUP}
    never = 1 << 30
    return TrainerConfig(
        method_name=RECON_METHOD,
        max_num_iterations=steps,
        steps_per_save=max(steps, 1),
        save_only_latest_checkpoint=True,
        steps_per_eval_batch=never,
        steps_per_eval_image=never,
        steps_per_eval_all_images=never,
        mixed_precision=cuda,
        machine=MachineConfig(device_type="cuda" if cuda else "cpu"),
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(eval_mode="all", load_3D_points=False),
                train_num_rays_per_batch=rays,
                eval_num_rays_per_batch=rays,
            ),
            model=MaldNerfModelConfig(
                **field_options,
                camera_optimizer=ObservedPixelsCameraOptimizerConfig(mode="off"),
                use_adversarial=False,
                use_feature_matching=False,
            ),
        ),
        optimizers=groups,
        vis="tensorboard",
        viewer=ViewerConfig(quit_on_train_completion=True, websocket_host=VIEWER_HOST),
    )


mald_nerf_masks_recon = MethodSpecification(
    config=mald_nerf_masks_recon_config(),
    description="The quick reconstruction (object present, no masks) mald-nerf-masks trains to find the object's box.",
)
