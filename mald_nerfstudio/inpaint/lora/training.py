"""Training of the per-scene LoRA adapter: its config, the customizer (cache lookup, training loop, saving) and
:func:`customize`.

LoRA (peft) is injected into the U-Net's attention projections and the CLIP text encoder's, trained on the
self-supervised task of :mod:`.data` with the scene token's prompt, saved with :func:`.adapter.save_adapter` under
the cache key of :mod:`.cache`, and removed again: the model is left as it was.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Union

import torch
from jaxtyping import Bool, Float
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor

from mald_nerfstudio.errors import MaldInputError, MaldSetupError
from mald_nerfstudio.inpaint.base import Inpainter
from mald_nerfstudio.inpaint.lora.adapter import build_prompt, is_finished_adapter, save_adapter, saves_adapter_metadata
from mald_nerfstudio.inpaint.lora.cache import RECIPE_VERSION, base_model_name, cache_root, scene_adapter_dir
from mald_nerfstudio.inpaint.lora.config import DEFAULT_SCENE_PROMPT, DEFAULT_SCENE_TOKEN, LoRACustomizationConfig
from mald_nerfstudio.inpaint.lora.data import masked_diffusion_loss, object_latent_mask, prepare_scene, training_batch
from mald_nerfstudio.inpaint.partial_ddim import encode_latents, latent_mask, masked_image_condition, vae_scale_factor

if TYPE_CHECKING:  # heavy imports only for type checkers
    from diffusers import StableDiffusionInpaintPipeline

#: LoRA target modules: attention projections of the U-Net and of the CLIP text encoder.
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
#: peft adapter name used while training (removed afterwards; the saved adapter is loaded as "scene").
TRAINING_ADAPTER = "default"

LossCallback = Callable[[int, float], None]


def cuda_grad_scaler(enabled: bool) -> Any:
    """A CUDA gradient scaler: ``torch.amp.GradScaler("cuda")`` where torch has it (2.3+), else the older
    ``torch.cuda.amp.GradScaler``."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


class LoRACustomizer:
    """Trains (or reuses from the cache) the per-scene LoRA adapter."""

    config: LoRACustomizationConfig

    def __init__(self, config: LoRACustomizationConfig, scene_token: str = DEFAULT_SCENE_TOKEN,
                 scene_prompt: str = DEFAULT_SCENE_PROMPT) -> None:
        self.config = config
        self.scene_token = scene_token
        """The token learnt for the scene (the inpainter's ``scene_token``)."""
        self.scene_prompt = scene_prompt
        """The training prompt; ``{token}`` is replaced by the token (the inpainter's ``scene_prompt``)."""
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
        return cache_root(self.config.cache_dir)

    def adapter_dir(self, images: Tensor, object_masks: Tensor, base_model: str) -> Path:
        """Where the adapter for this scene, model and config is (or will be) stored."""
        return scene_adapter_dir(images, object_masks, base_model, self.settings(), self.config.cache_dir)

    def settings(self) -> Dict[str, Any]:
        """What changes the trained adapter: the config's training settings, the scene token and the prompt."""
        return {**self.config.training_settings(), "scene_token": self.scene_token, "scene_prompt": self.scene_prompt}

    def customize(
        self,
        model: Union[Inpainter, "StableDiffusionInpaintPipeline"],
        images: Float[Tensor, "B H W 3"],
        object_masks: Bool[Tensor, "B H W"],
        on_loss: Optional[LossCallback] = None,
        show_progress: bool = True,
        base_model: Optional[str] = None,
    ) -> Path:
        """Train the scene adapter (or find it in the cache) and return its folder.

        Args:
            model: the inpainter (its pipeline is loaded on first use) or a diffusers inpainting pipeline. It is
                left without any LoRA afterwards; use
                :meth:`~mald_nerfstudio.inpaint.ldm.LDMInpainter.load_adapter` to apply the result.
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
        target = self.adapter_dir(images, object_masks, base_model_name(model, base_model))
        if is_finished_adapter(target):
            return target
        inpainter = model if isinstance(model, Inpainter) else None  # an LDMInpainter
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
                "--pipeline.inpainter.customization.alpha to the rank."
            )
        unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
        device = unet.device
        factor = vae_scale_factor(vae)
        scene_images, scene_objects = prepare_scene(images, object_masks, c.resolution)
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

        prompt = build_prompt(self.scene_prompt, self.scene_prompt, self.scene_token)
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
        progress = Progress(
            TextColumn("LoRA customisation"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeRemainingColumn(),
            disable=not show_progress,
        )
        try:
            with progress:
                task = progress.add_task("lora", total=c.steps, loss=math.nan)
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
                    progress.update(task, advance=1, loss=last_loss)

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
        """Save the trained adapter atomically into ``target`` with what it was trained on."""
        info = {
            "recipe": RECIPE_VERSION,
            "scene_token": self.scene_token,
            "scene_prompt": self.scene_prompt,
            "prompt": prompt,
            "final_loss": final_loss,
            "settings": self.settings(),
        }
        save_adapter(pipe, target, unet_layers, unet_lora, text_layers, text_lora, info)


def customize(
    model: Union[Inpainter, "StableDiffusionInpaintPipeline"],
    images: Float[Tensor, "B H W 3"],
    object_masks: Bool[Tensor, "B H W"],
    config: LoRACustomizationConfig,
    on_loss: Optional[LossCallback] = None,
    show_progress: bool = True,
    base_model: Optional[str] = None,
) -> Path:
    """Train (or reuse from the cache) the scene's LoRA adapter with the inpainter's scene token and prompt (the
    defaults for a bare diffusers pipeline); see :meth:`LoRACustomizer.customize`."""
    ldm_config = getattr(model, "config", None) if isinstance(model, Inpainter) else None
    scene = {name: getattr(ldm_config, name) for name in ("scene_token", "scene_prompt") if hasattr(ldm_config, name)}
    return LoRACustomizer(config, **scene).customize(model, images, object_masks, on_loss, show_progress, base_model)

