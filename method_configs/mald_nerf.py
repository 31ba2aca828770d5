"""The MALD-NeRF methods registered with nerfstudio (entry point group ``nerfstudio.method_configs``).

* ``mald-nerf``: the paper's method, defaults for one GPU at SPIn-NeRF resolution (long edge 1008).
* ``mald-nerf-tiny``: the same code sized for a 2-core CPU (small hash grid, few samples, ~1k rays per step,
  an offline inpainter), for the demo scene, tests and CPU benchmarks.
"""

from __future__ import annotations

from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.plugins.types import MethodSpecification

from mald_nerfstudio.data.datamanager import MaldDataManagerConfig
from mald_nerfstudio.inpaint.exemplar import ExemplarInpainterConfig
from mald_nerfstudio.inpaint.ldm import LDMInpainterConfig
from mald_nerfstudio.model.camera_poses import ObservedPixelsCameraOptimizerConfig
from mald_nerfstudio.model.discriminator import DiscriminatorConfig
from mald_nerfstudio.model.mald_model import DISCRIMINATOR_GROUP, MaldNerfModelConfig
from mald_nerfstudio.pipeline.dataset_update import DatasetUpdateConfig
from mald_nerfstudio.pipeline.mald_pipeline import MaldPipelineConfig
from mald_nerfstudio.trainer import AdamBetasOptimizerConfig, MaldTrainerConfig

VIEWER_HOST = "127.0.0.1"
"""The viewer listens on this machine only (nerfstudio's default, 0.0.0.0, lets the whole network steer training)."""


def optimizers(max_steps: int, discriminator_lr: float = 2e-3) -> dict:
    """nerfacto's optimizers plus the discriminator's (Adam, beta1 = 0, as for StyleGAN2's D; its learning rate
    decays tenfold over training like the field's, so D does not outpace a NeRF that converges)."""
    decay = ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=max_steps)
    return {
        "proposal_networks": {"optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15), "scheduler": decay},
        "fields": {"optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15), "scheduler": decay},
        "camera_opt": {
            "optimizer": AdamOptimizerConfig(lr=1e-3, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=5000),
        },
        DISCRIMINATOR_GROUP: {
            "optimizer": AdamBetasOptimizerConfig(lr=discriminator_lr, eps=1e-8),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=discriminator_lr / 10, max_steps=max_steps),
        },
    }


def mald_nerf_config() -> MaldTrainerConfig:
    """mald-nerf: one GPU, SPIn-NeRF resolution."""
    return MaldTrainerConfig(
        method_name="mald-nerf",
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_eval_all_images=1_000_000,
        steps_per_save=2000,
        max_num_iterations=30000,
        mixed_precision=True,
        pipeline=MaldPipelineConfig(
            datamanager=MaldDataManagerConfig(
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
                num_inpaint_patches=4,
                inpaint_patch_size=64,
            ),
            model=MaldNerfModelConfig(
                eval_num_rays_per_chunk=1 << 15,
                average_init_density=0.01,
                camera_optimizer=ObservedPixelsCameraOptimizerConfig(mode="off"),  # held-out views: decisions.md
            ),
            inpainter=LDMInpainterConfig(),
            dataset_update=DatasetUpdateConfig(update_every=200, views_per_update=4, first_update_step=2000),
        ),
        optimizers=optimizers(max_steps=200000),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15, websocket_host=VIEWER_HOST),
        vis="viewer",
    )


def mald_nerf_tiny_config() -> MaldTrainerConfig:
    """mald-nerf-tiny: the same method sized for a 2-core CPU and an offline inpainter."""
    max_steps = 2000
    return MaldTrainerConfig(
        method_name="mald-nerf-tiny",
        steps_per_eval_batch=250,
        steps_per_eval_image=500,
        steps_per_eval_all_images=1_000_000,
        steps_per_save=500,
        max_num_iterations=max_steps,
        mixed_precision=False,
        machine=MachineConfig(device_type="cpu"),
        pipeline=MaldPipelineConfig(
            datamanager=MaldDataManagerConfig(
                train_num_rays_per_batch=1024,
                eval_num_rays_per_batch=1024,
                num_inpaint_patches=2,
                inpaint_patch_size=16,
            ),
            model=MaldNerfModelConfig(
                eval_num_rays_per_chunk=1 << 13,
                average_init_density=0.01,
                camera_optimizer=ObservedPixelsCameraOptimizerConfig(mode="off"),
                implementation="torch",
                num_levels=8,
                max_res=512,
                log2_hashmap_size=17,
                hidden_dim=32,
                hidden_dim_color=32,
                appearance_embed_dim=8,
                num_nerf_samples_per_ray=32,
                num_proposal_samples_per_ray=(64, 32),
                proposal_warmup=500,
                proposal_weights_anneal_max_num_iters=500,
                proposal_net_args_list=[
                    {"hidden_dim": 16, "log2_hashmap_size": 15, "num_levels": 5, "max_res": 64, "use_linear": False},
                    {"hidden_dim": 16, "log2_hashmap_size": 15, "num_levels": 5, "max_res": 128, "use_linear": False},
                ],
                discriminator=DiscriminatorConfig(base_channels=16, max_channels=64),
            ),
            inpainter=ExemplarInpainterConfig(),
            dataset_update=DatasetUpdateConfig(update_every=100, views_per_update=2, first_update_step=300),
        ),
        optimizers=optimizers(max_steps=max_steps * 4),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 13, quit_on_train_completion=True, websocket_host=VIEWER_HOST),
        vis="viewer+tensorboard",
    )


mald_nerf = MethodSpecification(
    config=mald_nerf_config(),
    description="MALD-NeRF: NeRF inpainting with masked adversarial training and a latent diffusion model (GPU).",
)

mald_nerf_tiny = MethodSpecification(
    config=mald_nerf_tiny_config(),
    description="MALD-NeRF sized for a 2-core CPU with an offline inpainter (demo scene, tests, CPU benchmarks).",
)
