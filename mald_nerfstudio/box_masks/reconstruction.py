"""The quick reconstruction of the scene with the object present: trained with nerfstudio's Trainer into
``OUT/reconstruction/``, reused while the scene and the settings are the same, and loaded as ``ns-viewer`` and
``ns-eval`` load a run (``eval_setup``), so the masks come from the same model whether it was trained now or before.

The world frame is nerfstudio's (oriented and centred on the cameras) with the scene's own scale (see ``scene.py``):
the frame in which ``ns-viewer --load-config OUT/reconstruction/mald-nerf-masks-recon/run/config.yml`` shows the
crop box.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, Iterator, Optional

import numpy as np
import torch
from rich.console import Console

from mald_nerfstudio.box_masks.box import Box
from mald_nerfstudio.box_masks.scene import RECONSTRUCTION_JSON, SceneInput
from mald_nerfstudio.errors import checkpoint_folder_problem

RECON_EXPERIMENT, RECON_TIMESTAMP = "reconstruction", "run"
"""The reconstruction's run folder is OUT/reconstruction/<method>/run."""
FINGERPRINT_FILE = "reconstruction/fingerprint.json"
"""What the reconstruction in OUT was trained on and with; a match lets a rerun reuse it."""

_CONSOLE = Console()


@dataclass
class ReconstructionSettings:
    """The quick reconstruction with the object present."""

    steps: Optional[int] = None
    """Training steps; None: 1500 on a CPU (mald-nerf-tiny's field), 5000 on CUDA (nerfacto's field)."""
    device: Optional[str] = None
    """Torch device type, cpu or cuda; None: cuda when available."""
    rays_per_batch: Optional[int] = None
    """Rays per training step; None: 1024 on a CPU, 4096 on CUDA."""
    eval_rays_per_chunk: int = 1 << 13
    """Rays per rendering chunk for the depth pass."""
    seed: int = 42
    """Random seed of the reconstruction."""

    def resolved(self) -> "ReconstructionSettings":
        """The same settings with every None replaced by what it means on this machine."""
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        cuda = device.startswith("cuda")
        return replace(self, device=device, steps=self.steps or (5000 if cuda else 1500),
                       rays_per_batch=self.rays_per_batch or (4096 if cuda else 1024))


def reconstruction_dataparser(out_dir: Path, scene: SceneInput):
    """nerfstudio's parser config for OUT/reconstruction.json: the frame the reconstruction and the box are in."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    return NerfstudioDataParserConfig(
        data=Path(out_dir).resolve() / RECONSTRUCTION_JSON, eval_mode="all", downscale_factor=1,
        load_3D_points=False, auto_scale_poses=scene.scale_factor is None, scale_factor=scene.scale_factor or 1.0,
    )


@contextlib.contextmanager
def quiet_nerfstudio_console() -> Iterator[None]:
    """Silence nerfstudio's console for a while: loading the reconstruction prints notices meant for ns-train users
    (``--eval-mode=all`` and camera optimisation, checkpoint paths) that are not this tool's user's business."""
    from nerfstudio.utils.rich_utils import CONSOLE

    before = CONSOLE.quiet
    CONSOLE.quiet = True
    try:
        yield
    finally:
        CONSOLE.quiet = before


def box_from_capture_frame(box: Box, out_dir: Path, scene: SceneInput) -> Box:
    """The box given in the capture's own coordinates (those of transforms.json's matrices or poses_bounds.npy) in
    the reconstruction's frame: nerfstudio's orienting and centring transform, then the scene's scale."""
    import viser.transforms as vtf

    with quiet_nerfstudio_console():
        outputs = reconstruction_dataparser(out_dir, scene).setup().get_dataparser_outputs("train")
    transform = np.concatenate([outputs.dataparser_transform.double().numpy(), [[0.0, 0.0, 0.0, 1.0]]])
    if "applied_transform" in scene.meta:  # nerfstudio's transform starts from the data before that one
        applied = np.concatenate([np.asarray(scene.meta["applied_transform"], np.float64), [[0.0, 0.0, 0.0, 1.0]]])
        transform = transform @ np.linalg.inv(applied)
    scale = float(outputs.dataparser_scale)
    rotation = transform[:3, :3] @ box.rotation_matrix()
    rpy = vtf.SO3.from_matrix(rotation).as_rpy_radians()
    centre = scale * (transform[:3, :3] @ np.asarray(box.center, np.float64) + transform[:3, 3])
    return Box(center=tuple(float(v) for v in centre), size=tuple(float(scale * v) for v in box.size),
               rotation=(float(rpy.roll), float(rpy.pitch), float(rpy.yaw)))


def reconstruction_config(out_dir: Path, scene: SceneInput, settings: ReconstructionSettings):
    """The registered ``mald-nerf-masks-recon`` trainer, pointed at OUT and the scene's frame."""
    from mald_nerfstudio.method_configs.box_masks import mald_nerf_masks_recon_config

    settings = settings.resolved()
    config = mald_nerf_masks_recon_config(cuda=settings.device.startswith("cuda"), steps=settings.steps,
                                          rays_per_batch=settings.rays_per_batch)
    config.output_dir = Path(out_dir).resolve()
    config.experiment_name = RECON_EXPERIMENT
    config.timestamp = RECON_TIMESTAMP
    config.machine.seed = settings.seed
    config.pipeline.datamanager.dataparser = reconstruction_dataparser(out_dir, scene)
    config.pipeline.model.eval_num_rays_per_chunk = settings.eval_rays_per_chunk
    return config


def _fingerprint(scene: SceneInput, scene_path: Path, settings: ReconstructionSettings) -> Dict:
    frames = [[str(f.source.resolve()), f.source.stat().st_size, f.frame.get("transform_matrix")]
              for f in scene.frames if not f.object_free]
    text = json.dumps([scene.meta, scene.scale_factor, frames], sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return {"scene": str(Path(scene_path).resolve()), "cameras_and_images": digest,
            "settings": {k: v for k, v in asdict(settings.resolved()).items() if k != "eval_rays_per_chunk"}}


def train_or_reuse(out_dir: Path, scene: SceneInput, scene_path: Path, settings: ReconstructionSettings,
                   retrain: bool = False) -> Path:
    """The config.yml of a finished reconstruction of this scene with these settings: the one in OUT when it
    matches, otherwise trained now (nerfstudio prints its progress)."""
    config = reconstruction_config(out_dir, scene, settings)
    run_dir = config.get_base_dir()
    checkpoint = run_dir / "nerfstudio_models" / f"step-{config.max_num_iterations - 1:09d}.ckpt"
    fingerprint = _fingerprint(scene, scene_path, settings)
    fingerprint_path = Path(out_dir) / FINGERPRINT_FILE
    if (not retrain and checkpoint.is_file() and (run_dir / "config.yml").is_file() and fingerprint_path.is_file()
            and json.loads(fingerprint_path.read_text()) == fingerprint):
        _CONSOLE.print(f"[green]Reusing the finished reconstruction[/green] {run_dir} (--retrain trains a new one)",
                       soft_wrap=True)
        return run_dir / "config.yml"
    if fingerprint_path.is_file():
        fingerprint_path.unlink()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    resolved = settings.resolved()
    _CONSOLE.print(f"Training the reconstruction ({resolved.steps} steps on {resolved.device}, scale from "
                   f"{scene.scale_source}) into {run_dir}")
    random.seed(resolved.seed)  # what ns-train does before it builds the trainer
    np.random.seed(resolved.seed)
    torch.manual_seed(resolved.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    with quiet_nerfstudio_console():
        trainer.setup()
    config.save_config()
    trainer.train()
    fingerprint_path.parent.mkdir(parents=True, exist_ok=True)
    fingerprint_path.write_text(json.dumps(fingerprint, indent=2) + "\n")
    return run_dir / "config.yml"


def load_reconstruction(config_path: Path):
    """The reconstruction's pipeline in eval mode, loaded as ``ns-viewer`` loads a run; a checkpoint folder that
    loader cannot list (empty, or holding other files) is named in one paragraph first."""
    from nerfstudio.utils.eval_utils import eval_setup

    problem = checkpoint_folder_problem(Path(config_path).parent / "nerfstudio_models")
    if problem is not None:
        raise problem
    with quiet_nerfstudio_console():
        _config, pipeline, _checkpoint, _step = eval_setup(Path(config_path), test_mode="inference")
    sampler = getattr(pipeline.model, "proposal_sampler", None)
    if sampler is not None:  # the end of the annealing a training callback runs, whatever the step count
        sampler.set_anneal(1.0)
    return pipeline
