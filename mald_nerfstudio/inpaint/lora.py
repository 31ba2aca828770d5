"""Per-scene LoRA customisation of the inpainting latent diffusion model (MALD-NeRF, Sec. 3.2).

LoRA adapters (peft) are added to the U-Net's attention projections and to the CLIP text encoder, and trained
on the scene's own training images with a self-supervised inpainting task: random rectangles are masked and the
model learns to fill them, prompted with a scene-specific token ("a photo of sks scene"). The real object's
content is unknown (it must be removed), so

* the object region is always part of the inpainting mask and hidden in the masked-image conditioning, exactly
  as at inference time, and
* the diffusion loss (noise-prediction MSE per latent pixel) is zero on latent pixels that touch the object.

The adapter is saved in diffusers' LoRA format (``pytorch_lora_weights.safetensors`` written by
``save_lora_weights``) under a cache folder whose name is a hash of the images, the object masks, the base model
and the customisation settings, so a second run on the same scene reuses it. :func:`load_adapter` puts it into an
:class:`~mald_nerfstudio.inpaint.ldm.LDMInpainter` (and switches the inpainter's prompt to the scene token).

The standalone command ``mald-nerf-customize --images DIR --masks DIR`` does the same from image folders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Type, Union

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor

from mald_nerfstudio.data.image_io import binarize_mask, mask_levels, read_rgb
from mald_nerfstudio.errors import MaldInputError, MaldSetupError
from mald_nerfstudio.inpaint.ldm import LDMInpainter, LDMInpainterConfig, build_prompt
from mald_nerfstudio.inpaint.partial_ddim import (
    encode_latents,
    latent_mask,
    masked_image_condition,
    vae_scale_factor,
)

if TYPE_CHECKING:  # heavy imports only for type checkers
    from diffusers import StableDiffusionInpaintPipeline

#: Name of the weights file diffusers' ``save_lora_weights`` writes and ``load_lora_weights`` reads.
ADAPTER_WEIGHTS = "pytorch_lora_weights.safetensors"
#: Written last into a finished adapter folder: what was trained, on what.
ADAPTER_INFO = "customization.json"
#: Bump when the training recipe changes so old cached adapters are not reused.
RECIPE_VERSION = "mald-lora-1"
#: LoRA target modules: attention projections of the U-Net and of the CLIP text encoder.
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
#: peft adapter name used while training (removed afterwards; the saved adapter is loaded as "scene").
TRAINING_ADAPTER = "default"

LossCallback = Callable[[int, float], None]


def default_cache_dir() -> Path:
    """Per-user cache folder of the adapters (e.g. ``~/.cache/mald-nerfstudio/lora`` on Linux)."""
    try:
        from platformdirs import user_cache_dir

        root = Path(user_cache_dir("mald-nerfstudio"))
    except ImportError:  # platformdirs is optional; fall back to the XDG convention
        root = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "mald-nerfstudio"
    return root / "lora"


@dataclass
class LoRACustomizationConfig(InstantiateConfig):
    """Per-scene LoRA customisation of the inpainting diffusion model (self-supervised on the scene's images)."""

    _target: Type = field(default_factory=lambda: LoRACustomizer)
    """Target class to instantiate."""
    enabled: bool = True
    """Customise the diffusion model on the scene before inpainting (off: use the base model, an ablation)."""
    rank: int = 8
    """LoRA rank of every adapted projection."""
    alpha: float = 8.0
    """LoRA alpha; the adapter's output is scaled by alpha / rank."""
    learning_rate: float = 1e-4
    """AdamW learning rate of the LoRA weights."""
    steps: int = 500
    """Optimisation steps."""
    batch_size: int = 2
    """Training crops per step."""
    resolution: int = 512
    """Side of the square training crops (images are first resized so their short side is this); multiple of 8."""
    num_rectangles: Tuple[int, int] = (1, 3)
    """Inclusive range of the number of random rectangles masked per training crop."""
    rectangle_size: Tuple[float, float] = (0.1, 0.5)
    """Range of each rectangle side as a fraction of the crop side."""
    scene_token: str = "sks"
    """Scene-specific token placed in the prompt; the inpainter uses the same token after :func:`load_adapter`."""
    scene_prompt: str = "a photo of {token} scene"
    """Training prompt; ``{token}`` is replaced by ``scene_token``."""
    train_text_encoder: bool = True
    """Also adapt the CLIP text encoder (as the paper does); off trains the U-Net only."""
    gradient_checkpointing: bool = True
    """Recompute the U-Net's activations in the backward pass: much less GPU memory for about 30% more time."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping of the LoRA weights."""
    seed: int = 0
    """Seed of crops, rectangles, timesteps and noise (and of the LoRA initialisation)."""
    cache_dir: Optional[Path] = None
    """Folder of cached adapters; None = the per-user cache (``~/.cache/mald-nerfstudio/lora`` on Linux)."""

    def training_settings(self) -> Dict[str, Any]:
        """The fields that change the trained adapter (everything but the switch and the cache location)."""
        ignored = {"_target", "enabled", "cache_dir"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ignored}


def object_latent_mask(object_masks: Bool[Tensor, "B 1 H W"], factor: int) -> Float[Tensor, "B 1 h w"]:
    """Latent pixels touching the object (max-pooled object mask): 1 = object, 0 = known content."""
    return latent_mask(object_masks, factor)


def masked_diffusion_loss(
    prediction: Float[Tensor, "B C h w"], target: Float[Tensor, "B C h w"], object_latents: Float[Tensor, "B 1 h w"]
) -> Tensor:
    """Mean squared error per latent pixel, averaged over the latent pixels outside the object only.

    Latent pixels inside the object get weight 0, so their error has exactly zero gradient.
    """
    per_pixel = (prediction.float() - target.float()).pow(2).mean(dim=1, keepdim=True)
    keep = 1.0 - object_latents.float()
    return (per_pixel * keep).sum() / keep.sum().clamp_min(1.0)


def random_rectangles(
    batch: int,
    size: int,
    count: Tuple[int, int],
    side: Tuple[float, float],
    generator: torch.Generator,
) -> Bool[Tensor, "B 1 S S"]:
    """Masks with ``count`` (inclusive range) random axis-aligned rectangles of relative ``side`` each."""
    masks = torch.zeros(batch, 1, size, size, dtype=torch.bool)
    for b in range(batch):
        n = int(torch.randint(count[0], count[1] + 1, (1,), generator=generator))
        for _ in range(n):
            h, w = (
                max(1, int(round(size * (side[0] + (side[1] - side[0]) * float(torch.rand(1, generator=generator))))))
                for _ in range(2)
            )
            top = int(torch.randint(0, size - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, size - w + 1, (1,), generator=generator))
            masks[b, 0, top : top + h, left : left + w] = True
    return masks


def _prepare_scene(
    images: Float[Tensor, "B H W 3"], object_masks: Bool[Tensor, "B H W"], resolution: int
) -> Tuple[Tensor, Tensor]:
    """Images ``[B, 3, h, w]`` and masks ``[B, 1, h, w]`` resized so the short side is ``resolution``."""
    height, width = images.shape[1:3]
    scale = resolution / min(height, width)
    size = (max(resolution, int(round(height * scale))), max(resolution, int(round(width * scale))))
    chw = images.detach().float().cpu().permute(0, 3, 1, 2).clamp(0.0, 1.0)
    masks = object_masks.detach().cpu()[:, None].float()
    if size != (height, width):
        chw = F.interpolate(chw, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)
        masks = F.interpolate(masks, size=size, mode="bilinear", antialias=True, align_corners=False)
    return chw, masks > 1e-3


def training_batch(
    images: Float[Tensor, "N 3 h w"],
    object_masks: Bool[Tensor, "N 1 h w"],
    config: LoRACustomizationConfig,
    generator: torch.Generator,
) -> Tuple[Tensor, Tensor, Tensor]:
    """One batch of the self-supervised task: crops, their inpainting masks, their object masks.

    The inpainting mask is the random rectangles plus the object, so the object is always hidden from the
    model's masked-image conditioning, as at inference time.
    """
    size = config.resolution
    indices = torch.randint(0, images.shape[0], (config.batch_size,), generator=generator)
    crops, objects = [], []
    for index in indices.tolist():
        top = int(torch.randint(0, images.shape[2] - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, images.shape[3] - size + 1, (1,), generator=generator))
        crops.append(images[index, :, top : top + size, left : left + size])
        objects.append(object_masks[index, :, top : top + size, left : left + size])
    crops_t, objects_t = torch.stack(crops), torch.stack(objects)
    rectangles = random_rectangles(config.batch_size, size, config.num_rectangles, config.rectangle_size, generator)
    return crops_t, rectangles | objects_t, objects_t


def scene_cache_key(
    images: Float[Tensor, "B H W 3"],
    object_masks: Bool[Tensor, "B H W"],
    base_model: str,
    config: LoRACustomizationConfig,
) -> str:
    """Hash of the image bytes, mask bytes, base model and training settings (the adapter's cache name)."""
    import transformers

    digest = hashlib.sha256()
    digest.update(RECIPE_VERSION.encode())
    # transformers 5 renamed the CLIP text encoder's parameters, so adapters do not carry across major versions.
    digest.update(f"transformers-{transformers.__version__.split('.')[0]}".encode())
    digest.update(base_model.encode())
    digest.update(json.dumps(config.training_settings(), sort_keys=True, default=str).encode())
    image_array = np.ascontiguousarray(images.detach().cpu().float().numpy())
    mask_array = np.packbits(object_masks.detach().cpu().bool().numpy())
    digest.update(repr(tuple(image_array.shape)).encode())
    digest.update(image_array.tobytes())
    digest.update(repr(tuple(object_masks.shape)).encode())
    digest.update(mask_array.tobytes())
    return digest.hexdigest()[:32]


def _base_model_name(model: Union[LDMInpainter, "StableDiffusionInpaintPipeline"], base_model: Optional[str]) -> str:
    if base_model is not None:
        return base_model
    if isinstance(model, LDMInpainter):
        c = model.config
        path = Path(c.model).expanduser()
        name = str(path.resolve()) if path.is_dir() else c.model
        return f"{name}@{c.revision or 'main'}:{c.variant or 'default'}"
    name = getattr(model, "name_or_path", None) or model.config.get("_name_or_path")
    if not name:
        raise MaldInputError("cannot tell which base model this pipeline is", fix="pass base_model=...")
    return str(name)


def cuda_grad_scaler(enabled: bool) -> Any:
    """A CUDA gradient scaler: ``torch.amp.GradScaler("cuda")`` where torch has it (2.3+), else the older
    ``torch.cuda.amp.GradScaler``."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def saves_adapter_metadata(save_lora_weights: Callable) -> bool:
    """Whether diffusers' ``save_lora_weights`` stores the LoRA configs (diffusers 0.34+)."""
    return "unet_lora_adapter_metadata" in inspect.signature(save_lora_weights).parameters


def adapter_metadata_kwargs(save_lora_weights: Callable, unet_lora: Any, text_lora: Any) -> Dict[str, Any]:
    """The LoRA configs as ``save_lora_weights`` keyword arguments where it accepts them; older releases infer the
    rank from the weights on loading and take alpha = rank (training refuses other alphas there)."""
    if not saves_adapter_metadata(save_lora_weights):
        return {}
    return {
        "unet_lora_adapter_metadata": unet_lora.to_dict(),
        "text_encoder_lora_adapter_metadata": text_lora.to_dict() if text_lora is not None else None,
    }


class LoRACustomizer:
    """Trains (or reuses from the cache) the per-scene LoRA adapter."""

    config: LoRACustomizationConfig

    def __init__(self, config: LoRACustomizationConfig, **kwargs) -> None:
        self.config = config
        if config.resolution % 8 != 0 or config.resolution <= 0:
            raise MaldInputError(f"lora.resolution must be a positive multiple of 8, got {config.resolution}")
        if config.steps < 1 or config.batch_size < 1 or config.rank < 1:
            raise MaldInputError("lora.steps, lora.batch_size and lora.rank must be at least 1")
        if not 0 <= config.num_rectangles[0] <= config.num_rectangles[1]:
            raise MaldInputError(f"lora.num_rectangles must be an increasing range, got {config.num_rectangles}")
        if not 0.0 < config.rectangle_size[0] <= config.rectangle_size[1] <= 1.0:
            raise MaldInputError(f"lora.rectangle_size must lie in (0, 1] and increase, got {config.rectangle_size}")

    @property
    def cache_root(self) -> Path:
        """Folder holding the cached adapters."""
        return Path(self.config.cache_dir).expanduser() if self.config.cache_dir else default_cache_dir()

    def adapter_dir(self, images: Tensor, object_masks: Tensor, base_model: str) -> Path:
        """Where the adapter for this scene, model and config is (or will be) stored."""
        return self.cache_root / scene_cache_key(images, object_masks, base_model, self.config)

    def customize(
        self,
        model: Union[LDMInpainter, "StableDiffusionInpaintPipeline"],
        images: Float[Tensor, "B H W 3"],
        object_masks: Bool[Tensor, "B H W"],
        on_loss: Optional[LossCallback] = None,
        show_progress: bool = True,
        base_model: Optional[str] = None,
    ) -> Path:
        """Train the scene adapter (or find it in the cache) and return its folder.

        Args:
            model: the inpainter (its pipeline is loaded on first use) or a diffusers inpainting pipeline. It is
                left without any LoRA afterwards; use :func:`load_adapter` to apply the result.
            images: the scene's training images, float in ``[0, 1]``.
            object_masks: True on the object to remove (no loss there; hidden from the model).
            on_loss: called with ``(step, loss)`` after every optimisation step (e.g. to log to nerfstudio).
            show_progress: show a rich progress bar.
            base_model: name of the base model for the cache key; taken from the inpainter's config by default.
        """
        if images.ndim != 4 or images.shape[-1] != 3 or object_masks.shape != images.shape[:3]:
            raise MaldInputError(
                f"customisation needs images [B, H, W, 3] and object masks [B, H, W], got "
                f"{tuple(images.shape)} and {tuple(object_masks.shape)}"
            )
        target = self.adapter_dir(images, object_masks, _base_model_name(model, base_model))
        if (target / ADAPTER_INFO).is_file() and (target / ADAPTER_WEIGHTS).is_file():
            return target
        inpainter = model if isinstance(model, LDMInpainter) else None
        pipe = inpainter.load() if inpainter is not None else model
        with inpainter.session() if inpainter is not None else contextlib.nullcontext():
            self._train(pipe, images, object_masks, target, on_loss, show_progress)
        return target

    # ------------------------------------------------------------------ training
    def _train(
        self,
        pipe: "StableDiffusionInpaintPipeline",
        images: Tensor,
        object_masks: Tensor,
        target: Path,
        on_loss: Optional[LossCallback],
        show_progress: bool,
    ) -> None:
        from diffusers import DDPMScheduler
        from diffusers.training_utils import cast_training_params
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

        c = self.config
        if c.alpha != c.rank and not saves_adapter_metadata(pipe.save_lora_weights):
            import diffusers

            raise MaldSetupError(
                f"LoRA alpha {c.alpha} differs from the rank {c.rank}, and diffusers {diffusers.__version__} cannot "
                "save an adapter's alpha (save_lora_weights has no adapter metadata before diffusers 0.34): the saved "
                "adapter would load with alpha = rank. Upgrade diffusers (pip install 'diffusers>=0.34') or set "
                "--pipeline.customization.alpha to the rank."
            )
        unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
        device = unet.device
        factor = vae_scale_factor(vae)
        scene_images, scene_objects = _prepare_scene(images, object_masks, c.resolution)
        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        generator = torch.Generator("cpu").manual_seed(c.seed)

        pipe.unload_lora_weights()  # train from the base model, whatever adapter was active
        for module in (unet, vae, text_encoder):
            module.requires_grad_(False)
        # peft's model-agnostic injection (diffusers' and transformers' add_adapter wrap the same call, but the
        # latter insists on a newer peft than some installs have). B = 0 at start: training starts at the base.
        torch.manual_seed(c.seed)  # LoRA A-matrix initialisation
        unet_lora = LoraConfig(
            r=c.rank, lora_alpha=c.alpha, init_lora_weights="gaussian", target_modules=list(UNET_TARGETS)
        )
        inject_adapter_in_model(unet_lora, unet, adapter_name=TRAINING_ADAPTER)
        trained = [unet]
        text_lora = None
        if c.train_text_encoder:
            text_lora = LoraConfig(
                r=c.rank, lora_alpha=c.alpha, init_lora_weights="gaussian", target_modules=list(TEXT_ENCODER_TARGETS)
            )
            inject_adapter_in_model(text_lora, text_encoder, adapter_name=TRAINING_ADAPTER)
            trained.append(text_encoder)
        for module in trained:
            for name, param in module.named_parameters():
                param.requires_grad_("lora_" in name)
        cast_training_params(trained, dtype=torch.float32)  # fp32 LoRA weights even on an fp16 base model
        params = [p for module in trained for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.learning_rate)
        if c.gradient_checkpointing:  # the U-Net's activations dominate; the text encoder's are tiny
            unet.enable_gradient_checkpointing()
        for module in trained:
            module.train()

        prompt = build_prompt(c.scene_prompt, c.scene_prompt, c.scene_token)
        tokens = pipe.tokenizer(
            [prompt],
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        mixed = device.type == "cuda" and unet.dtype != torch.float32  # fp16 base weights, fp32 LoRA weights
        autocast = torch.autocast("cuda", dtype=unet.dtype, enabled=mixed)
        scaler = cuda_grad_scaler(enabled=mixed and unet.dtype == torch.float16)
        last_loss = math.nan
        try:
            with _progress(show_progress, c.steps) as advance:
                for step in range(c.steps):
                    crops, inpaint_masks, objects = training_batch(scene_images, scene_objects, c, generator)
                    crops, inpaint_masks, objects = crops.to(device), inpaint_masks.to(device), objects.to(device)
                    with torch.no_grad():
                        latents = encode_latents(vae, crops).float()
                        masked_latents = encode_latents(vae, masked_image_condition(crops, inpaint_masks)).float()
                    noise = torch.randn(latents.shape, generator=generator).to(device)
                    timesteps = torch.randint(
                        0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator
                    ).to(device)
                    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                    if noise_scheduler.config.prediction_type == "v_prediction":
                        goal = noise_scheduler.get_velocity(latents, noise, timesteps)
                    else:
                        goal = noise
                    model_input = torch.cat([noisy, latent_mask(inpaint_masks, factor), masked_latents], dim=1)
                    with autocast:
                        with torch.set_grad_enabled(c.train_text_encoder):
                            embeds = text_encoder(tokens, return_dict=False)[0]
                        embeds = embeds.expand(latents.shape[0], -1, -1)
                        prediction = unet(model_input.to(unet.dtype), timesteps, embeds, return_dict=False)[0]
                    loss = masked_diffusion_loss(prediction, goal, object_latent_mask(objects, factor))
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                    last_loss = float(loss.detach())
                    if on_loss is not None:
                        on_loss(step, last_loss)
                    advance(last_loss)

            unet_layers = convert_state_dict_to_diffusers(
                get_peft_model_state_dict(unet, adapter_name=TRAINING_ADAPTER)
            )
            text_layers = None
            if text_lora is not None:
                text_layers = convert_state_dict_to_diffusers(
                    get_peft_model_state_dict(text_encoder, adapter_name=TRAINING_ADAPTER)
                )
            self._save(pipe, target, unet_layers, unet_lora, text_layers, text_lora, last_loss, prompt)
        finally:
            if c.gradient_checkpointing:
                unet.disable_gradient_checkpointing()
            pipe.unload_lora_weights()
            for module in (unet, vae, text_encoder):
                module.requires_grad_(False).eval()

    def _save(
        self,
        pipe: "StableDiffusionInpaintPipeline",
        target: Path,
        unet_layers: Dict[str, Tensor],
        unet_lora: Any,
        text_layers: Optional[Dict[str, Tensor]],
        text_lora: Any,
        final_loss: float,
        prompt: str,
    ) -> None:
        """Write the adapter into a temporary folder, then move it into place (never a half-written cache entry)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        pipe.save_lora_weights(
            str(scratch),
            unet_lora_layers=unet_layers,
            text_encoder_lora_layers=text_layers,
            safe_serialization=True,
            **adapter_metadata_kwargs(pipe.save_lora_weights, unet_lora, text_lora),
        )
        info = {
            "recipe": RECIPE_VERSION,
            "scene_token": self.config.scene_token,
            "scene_prompt": self.config.scene_prompt,
            "prompt": prompt,
            "final_loss": final_loss,
            "settings": self.config.training_settings(),
        }
        (scratch / ADAPTER_INFO).write_text(json.dumps(info, indent=2, default=str))
        if target.exists():  # another run finished the same adapter meanwhile
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            scratch.rename(target)


class _progress:
    """A rich progress bar with the current loss (or nothing when disabled)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar = None

    def __enter__(self) -> Callable[[float], None]:
        if not self.enabled:
            return lambda loss: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("LoRA customisation"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeRemainingColumn(),
        )
        self._bar.__enter__()
        task = self._bar.add_task("lora", total=self.total, loss=float("nan"))
        return lambda loss: self._bar.update(task, advance=1, loss=loss)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def customize(
    model: Union[LDMInpainter, "StableDiffusionInpaintPipeline"],
    images: Float[Tensor, "B H W 3"],
    object_masks: Bool[Tensor, "B H W"],
    config: LoRACustomizationConfig,
    on_loss: Optional[LossCallback] = None,
    show_progress: bool = True,
    base_model: Optional[str] = None,
) -> Path:
    """Train (or reuse from the cache) the scene's LoRA adapter; see :meth:`LoRACustomizer.customize`."""
    return LoRACustomizer(config).customize(model, images, object_masks, on_loss, show_progress, base_model)


def load_adapter(inpainter: LDMInpainter, adapter_dir: Union[str, Path], scale: float = 1.0) -> None:
    """Load a LoRA adapter into ``inpainter``; for one made here, also switch its prompt to the scene token.

    Any diffusers-format LoRA folder loads; the prompt changes only when the folder has our ``customization.json``.
    """
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        raise MaldSetupError(
            f"{adapter_dir} is not a LoRA adapter folder (no {ADAPTER_WEIGHTS}). Run the customisation "
            "(`mald-nerf-customize --images DIR --masks DIR`) and pass the folder it prints, or leave "
            "--pipeline.ldm.lora-adapter unset"
        )
    info_file = adapter_dir / ADAPTER_INFO
    if info_file.is_file():
        info = json.loads(info_file.read_text())
        inpainter.config.scene_token = info["scene_token"]
        inpainter.config.scene_prompt = info["scene_prompt"]
    inpainter.load_lora(adapter_dir, scale=scale)


def read_adapter_files(adapter_dir: Union[str, Path]) -> Dict[str, Tensor]:
    """An adapter folder's files as uint8 tensors by name (to keep the adapter inside a checkpoint)."""
    return {
        path.name: torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8).clone()
        for path in sorted(Path(adapter_dir).iterdir())
        if path.is_file()
    }


def write_adapter_files(adapter_dir: Union[str, Path], files: Dict[str, Tensor]) -> None:
    """Write files read by :func:`read_adapter_files` into ``adapter_dir`` (each written to a temporary name and
    renamed into place)."""
    adapter_dir = Path(adapter_dir)
    adapter_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        scratch = adapter_dir / f".{name}.tmp-{os.getpid()}"
        scratch.write_bytes(data.cpu().numpy().tobytes())
        scratch.replace(adapter_dir / name)


# ---------------------------------------------------------------------- command line
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_scene_folders(images_dir: Path, masks_dir: Path) -> Tuple[Tensor, Tensor, List[str]]:
    """Images ``[B, H, W, 3]`` in ``[0, 1]`` and masks ``[B, H, W]`` (nonzero = object) from two folders.

    Each image needs a mask of the same file name (or the same stem with ``.png``) and the same size.
    """
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise MaldInputError("folder not found", path=folder, fix="pass existing --images and --masks folders")
    image_files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not image_files:
        raise MaldInputError("no PNG/JPEG images in the images folder", path=images_dir)
    images, masks = [], []
    for image_file in image_files:
        candidates = [masks_dir / image_file.name, masks_dir / f"{image_file.stem}.png"]
        mask_file = next((p for p in candidates if p.is_file()), None)
        if mask_file is None:
            raise MaldInputError(
                f"image {image_file.name} has no mask",
                path=masks_dir,
                fix=f"add {image_file.stem}.png (nonzero = object)",
            )
        image = read_rgb(image_file).astype(np.float32) / 255.0
        levels, source = mask_levels(mask_file)
        mask = binarize_mask(levels, source, mask_file)
        if mask.shape != image.shape[:2]:
            raise MaldInputError(
                f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image size {image.shape[1]}x{image.shape[0]}",
                path=mask_file,
            )
        images.append(torch.from_numpy(image))
        masks.append(torch.from_numpy(mask))
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise MaldInputError(f"all images must have the same size, found {sorted(shapes)}", path=images_dir)
    return torch.stack(images), torch.stack(masks), [p.name for p in image_files]


@dataclass
class CustomizeCommand:
    """Customise the inpainting diffusion model on one scene and print the adapter folder."""

    images: Path
    """Folder of the scene's training images (PNG/JPEG)."""
    masks: Path
    """Folder of object masks with the images' file names (PNG; nonzero = object to remove)."""
    ldm: LDMInpainterConfig = field(default_factory=LDMInpainterConfig)
    """The base diffusion model."""
    lora: LoRACustomizationConfig = field(default_factory=LoRACustomizationConfig)
    """Customisation settings."""
    device: Optional[str] = None
    """Device to train on; None = CUDA when available, else CPU."""

    def main(self) -> Path:
        """Run the customisation; return (and print) the adapter folder."""
        images, masks, _ = read_scene_folders(self.images, self.masks)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        inpainter = self.ldm.setup(device=device)
        inpainter.check_available()
        adapter = customize(inpainter, images, masks, self.lora)
        print(adapter)
        return adapter


def entrypoint() -> None:
    """Console entry point of ``mald-nerf-customize``."""
    import tyro

    tyro.cli(CustomizeCommand).main()
