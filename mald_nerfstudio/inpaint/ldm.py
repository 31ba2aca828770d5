"""The latent-diffusion inpainter: Stable Diffusion 2 inpainting (or any 9-channel diffusers inpainting model).

Full strength (``strength == 1``) fills the hole from pure noise; partial strength runs partial DDIM from the
NeRF's render (see :mod:`mald_nerfstudio.inpaint.partial_ddim`). Each view is cropped around its mask with
context and filled at the crop's own resolution up to ``max_working_size`` (larger crops are shrunk to it; see
:mod:`mald_nerfstudio.inpaint.region`), so images of any size work and small holes keep their detail.

Loading is lazy: constructing the config or the inpainter touches neither the disk nor the network. The model
is resolved and loaded on first use or by :meth:`LDMInpainter.load`; :meth:`LDMInpainter.check_available` only
resolves the model folder and validates it (no weights in memory), so a run can fail at start-up with a clear
:class:`~mald_nerfstudio.errors.MaldSetupError` instead of after hours of training. A hub id is first looked up
in the local hub cache only; the hub is contacted only when the model is not cached and neither
``local_files_only`` nor ``HF_HUB_OFFLINE`` is set. Nothing ever falls back to random weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import torch
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from mald_nerfstudio.errors import MaldInputError, MaldSetupError
from mald_nerfstudio.inpaint.base import Inpainter, InpainterConfig
from mald_nerfstudio.inpaint.lora.adapter import (
    AdapterInfo,
    build_prompt,
    check_adapter_dir,
    read_adapter_files,
    read_adapter_info,
    write_adapter_files,
)
from mald_nerfstudio.inpaint.lora.config import DEFAULT_SCENE_PROMPT, DEFAULT_SCENE_TOKEN, LoRACustomizationConfig
from mald_nerfstudio.inpaint.partial_ddim import num_denoising_steps, partial_ddim_inpaint, vae_scale_factor
from mald_nerfstudio.inpaint.region import RegionPlan, crop_resize, crop_resize_mask, paste_back, plan_region

if TYPE_CHECKING:  # heavy imports only for type checkers
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

#: Sub-folders a diffusers inpainting pipeline folder must have.
REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
#: Input channels of an inpainting U-Net: noisy latents (4) + mask (1) + masked-image latents (4).
INPAINTING_UNET_CHANNELS = 9
#: Adapter name under which a scene LoRA is loaded into the pipeline.
SCENE_ADAPTER = "scene"

_FIX = (
    "Pass a local folder holding a diffusers inpainting pipeline (saved with save_pretrained, or a copy of the "
    "hub snapshot) with `pipeline.inpainter:ldm --pipeline.inpainter.model /path/to/folder` (last on the "
    "command line), or choose an inpainter that needs no weights with `pipeline.inpainter:exemplar` or "
    "`pipeline.inpainter:telea`"
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


@dataclass
class LDMInpainterConfig(InpainterConfig):
    """Latent-diffusion inpainting with a diffusers 9-channel inpainting model (default: SD2 inpainting)."""

    _target: Type = field(default_factory=lambda: LDMInpainter)
    """Target class to instantiate."""
    model: str = "stabilityai/stable-diffusion-2-inpainting"
    """Hugging Face hub id or local folder of a diffusers inpainting pipeline (U-Net with 9 input channels)."""
    revision: Optional[str] = None
    """Hub revision (branch, tag or commit) of ``model``; None = the default branch."""
    variant: Optional[str] = None
    """Weight-file variant to load, e.g. "fp16" for the half-precision files of a hub repo; None = the default."""
    cache_dir: Optional[Path] = None
    """Hugging Face hub cache folder; None = the default (``HF_HUB_CACHE`` / ``HF_HOME``)."""
    local_files_only: bool = False
    """Never contact the hub: use a local folder or the hub cache only (also implied by ``HF_HUB_OFFLINE=1``)."""
    prompt: str = "a photo of a scene"
    """Text prompt of the base model (no scene adapter loaded)."""
    scene_prompt: str = DEFAULT_SCENE_PROMPT
    """Text prompt of the LoRA customisation and, once its adapter is loaded, of inpainting; ``{token}``: the token."""
    scene_token: str = DEFAULT_SCENE_TOKEN
    """The scene's token: learnt by the per-scene LoRA customisation, in the prompt once its adapter is loaded."""
    customization: LoRACustomizationConfig = field(default_factory=LoRACustomizationConfig)
    """Per-scene LoRA customisation before the first fill (cached per scene); a given lora_adapter skips it."""
    negative_prompt: str = "blurry, low quality, text, watermark"
    """Negative prompt for classifier-free guidance (what the fill should not look like)."""
    guidance_scale: float = 7.5
    """Classifier-free guidance weight; <= 1 disables guidance (half the U-Net work)."""
    num_inference_steps: int = 50
    """DDIM steps of a full-strength fill; a partial update at strength s runs round(s * steps) of them."""
    eta: float = 0.0
    """DDIM eta: 0 = deterministic DDIM, 1 = DDPM-like stochastic sampling."""
    device: Optional[str] = None
    """Device of the diffusion model; None = the NeRF's device. E.g. "cuda:1" to put it on a second GPU."""
    fp16: bool = True
    """Half precision on CUDA (about 2.6 GB of weights for SD2 instead of 5.2 GB); always fp32 on CPU."""
    offload_to_cpu: bool = True
    """Move the diffusion model to CPU memory between dataset updates, freeing GPU memory for the NeRF."""
    batch_size: int = 4
    """Views per LDM call for working-size crops; larger crops go fewer per call (same pixel budget, at least 1)."""
    working_size: int = 512
    """Smallest crop side in pixels (SD2 inpainting's 512; a multiple of 8); smaller images are upscaled to it."""
    max_working_size: int = 1024
    """Longest crop side filled at its own resolution; a longer crop is shrunk to it, filled, enlarged back (softer)."""
    context_margin: float = 0.25
    """Context around the mask's bounding box on each side, as a fraction of the box's longer side."""
    lora_adapter: Optional[Path] = None
    """Folder of a LoRA adapter (from mald-nerf-customize) to load; its scene token then prompts. None: no adapter."""
    lora_scale: float = 1.0
    """Weight of the LoRA adapter (0 = base model, 1 = as trained)."""


def _hub_offline() -> bool:
    """Whether the environment forbids hub access (read at call time, not at import)."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return bool(constants.HF_HUB_OFFLINE) or any(str(f).upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def _looks_like_path(model: str) -> bool:
    """True when ``model`` cannot be a hub id (absolute, relative with ./ or ~, more than one slash, ...)."""
    return _HUB_ID.fullmatch(model) is None


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception of a chain (diffusers wraps the network error in an OSError)."""
    seen = {id(err)}
    while (err.__cause__ or err.__context__) is not None and id(err.__cause__ or err.__context__) not in seen:
        err = err.__cause__ or err.__context__
        seen.add(id(err))
    return err


def validate_pipeline_folder(folder: Path, tried: str) -> Path:
    """Check that ``folder`` holds a diffusers pipeline with all components and a 9-channel U-Net."""
    if not (folder / "model_index.json").is_file():
        raise MaldSetupError(
            f"The latent diffusion model {tried} resolved to {folder}, which is not a diffusers pipeline folder "
            f"(no model_index.json). {_FIX}."
        )
    missing = [name for name in REQUIRED_COMPONENTS if not (folder / name).is_dir()]
    if missing:
        raise MaldSetupError(
            f"The latent diffusion model folder {folder} (from {tried}) lacks the component folder(s) "
            f"{', '.join(missing)}; an inpainting pipeline needs {', '.join(REQUIRED_COMPONENTS)}. {_FIX}."
        )
    try:
        unet_config = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise MaldSetupError(f"Cannot read the U-Net config of {folder} (from {tried}): {err}. {_FIX}.") from err
    _check_inpainting_unet(unet_config.get("in_channels"), tried)
    return folder


def _check_inpainting_unet(in_channels: Optional[int], tried: str) -> None:
    if in_channels != INPAINTING_UNET_CHANNELS:
        raise MaldSetupError(
            f"The latent diffusion model {tried} is not an inpainting model: its U-Net has in_channels="
            f"{in_channels}, but an inpainting U-Net takes {INPAINTING_UNET_CHANNELS} input channels (4 noisy "
            "latents + 1 mask + 4 masked-image latents), like stabilityai/stable-diffusion-2-inpainting. "
            f"{_FIX}."
        )


def resolve_model_folder(
    model: str,
    revision: Optional[str] = None,
    variant: Optional[str] = None,
    cache_dir: Optional[Path] = None,
    local_files_only: bool = False,
) -> Path:
    """The local folder of ``model`` (a folder, or a hub id looked up in the cache, downloaded only if allowed).

    Raises:
        MaldSetupError: the folder is missing or invalid, the hub id is not cached while offline, or the
            download failed; the message names what was tried and how to fix it.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return validate_pipeline_folder(path, f"folder {path}")
    if _looks_like_path(model):
        raise MaldSetupError(
            f"The latent diffusion model folder {path} does not exist (from --pipeline.inpainter.model {model!r}). "
            f"{_FIX}."
        )

    from diffusers import DiffusionPipeline

    tried = f"hub id {model!r}" + (f" (revision {revision})" if revision else "")
    download_kwargs = dict(revision=revision, variant=variant, cache_dir=str(cache_dir) if cache_dir else None)
    try:
        folder = DiffusionPipeline.download(model, local_files_only=True, **download_kwargs)
    except Exception:  # noqa: BLE001 - not in the local cache (the exact error type varies across versions)
        folder = None
    if folder is None:
        if local_files_only or _hub_offline():
            reason = "local_files_only is set" if local_files_only else "HF_HUB_OFFLINE is set"
            raise MaldSetupError(
                f"The latent diffusion model {tried} is not in the Hugging Face cache "
                f"({cache_dir or 'default cache'}), there is no local folder {path.resolve()} either, and {reason}, "
                "so it cannot be downloaded. Download it once on a "
                f"machine with internet (`hf download {model}`) and copy the cache or the snapshot folder here. "
                f"{_FIX}."
            )
        try:
            folder = DiffusionPipeline.download(model, **download_kwargs)
        except Exception as err:  # noqa: BLE001 - network/auth/not-found errors all mean the same to the user
            root = _root_cause(err)
            raise MaldSetupError(
                f"Could not download the latent diffusion model {tried} from the Hugging Face hub and it is not "
                f"in the local cache ({type(root).__name__}: {root}). Check the id and your connection, or set "
                f"HF_HUB_OFFLINE=1 to never try the network. {_FIX}."
            ) from err
    return validate_pipeline_folder(Path(folder), tried)


class LDMInpainter(Inpainter):
    """Inpaints views with a 9-channel latent diffusion model, at full or partial (DDIM) strength."""

    config: LDMInpainterConfig

    def __init__(self, config: LDMInpainterConfig, device: str | torch.device = "cpu", **kwargs) -> None:
        super().__init__(config, device=config.device or device, **kwargs)
        if config.working_size % 8 != 0 or config.working_size <= 0:
            raise MaldInputError(f"ldm.working_size must be a positive multiple of 8, got {config.working_size}")
        if config.max_working_size % 8 != 0 or config.max_working_size < config.working_size:
            raise MaldInputError(
                f"ldm.max_working_size must be a multiple of 8 and at least working_size ({config.working_size}), "
                f"got {config.max_working_size}"
            )
        if config.batch_size < 1 or config.num_inference_steps < 1:
            raise MaldInputError("ldm.batch_size and ldm.num_inference_steps must be at least 1")
        self._folder: Optional[Path] = None
        self._pipe: Optional["StableDiffusionInpaintPipeline"] = None
        self._session_depth = 0
        self._adapter_info: Optional[AdapterInfo] = None
        self._shrink_noted = False

    # ------------------------------------------------------------------ loading
    def check_available(self) -> Path:
        """Resolve and validate the model folder without loading weights; raise MaldSetupError if unusable."""
        if self._folder is None:
            c = self.config
            self._folder = resolve_model_folder(c.model, c.revision, c.variant, c.cache_dir, c.local_files_only)
        return self._folder

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype: fp16 on CUDA when enabled, else fp32."""
        return torch.float16 if self.config.fp16 and self.device.type == "cuda" else torch.float32

    @property
    def views_per_call(self) -> int:
        """Views inpainted per diffusion-model call (``batch_size``)."""
        return self.config.batch_size

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._pipe is not None

    def load(self) -> "StableDiffusionInpaintPipeline":
        """Load the pipeline (once) with a DDIM scheduler; return it.

        The weights go to the inpainter's device, or stay in CPU memory until first used when ``offload_to_cpu``
        is set (so an early ``load()`` to fail fast takes no GPU memory).
        """
        if self._pipe is not None:
            return self._pipe
        folder = self.check_available()
        import diffusers
        from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline
        from packaging import version

        # diffusers 0.42 renamed from_pretrained's `torch_dtype` to `dtype` (the old name still works, deprecated).
        dtype_kwarg = "dtype" if version.parse(diffusers.__version__).release >= (0, 42) else "torch_dtype"
        try:
            pipe = StableDiffusionInpaintPipeline.from_pretrained(
                str(folder),
                **{dtype_kwarg: self.dtype},
                variant=self.config.variant,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
                local_files_only=True,
            )
        except Exception as err:  # noqa: BLE001 - corrupt/missing weight files, wrong classes, ...
            raise MaldSetupError(
                f"Could not load the latent diffusion model from {folder} (model {self.config.model!r}): "
                f"{type(err).__name__}: {err}. {_FIX}."
            ) from err
        _check_inpainting_unet(pipe.unet.config.in_channels, f"{self.config.model!r}")
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.requires_grad_(False).eval()
        self._pipe = pipe
        if not self.config.offload_to_cpu:  # otherwise it waits in CPU memory until first used
            self.to_device()
        if self.config.lora_adapter is not None:
            self.load_adapter(self.config.lora_adapter, scale=self.config.lora_scale)
        return self._pipe

    @property
    def pipe(self) -> "StableDiffusionInpaintPipeline":
        """The diffusers pipeline (loaded on first access)."""
        return self.load()

    @property
    def vae(self) -> "AutoencoderKL":
        """The VAE."""
        return self.load().vae

    @property
    def unet(self) -> "UNet2DConditionModel":
        """The 9-channel inpainting U-Net."""
        return self.load().unet

    @property
    def text_encoder(self) -> "CLIPTextModel":
        """The CLIP text encoder."""
        return self.load().text_encoder

    @property
    def tokenizer(self) -> "CLIPTokenizer":
        """The CLIP tokenizer."""
        return self.load().tokenizer

    @property
    def scheduler(self) -> "DDIMScheduler":
        """The DDIM scheduler."""
        return self.load().scheduler

    # ------------------------------------------------------------------ memory placement
    def to_device(self) -> None:
        """Move the model onto its compute device (after :meth:`offload`)."""
        pipe = self.load()
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.to(self.device)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """The model on its device for the whole block (one pass over the views), offloaded once at its end when
        ``offload_to_cpu``; nested sessions and the :meth:`inpaint` calls inside keep it there."""
        if self._session_depth == 0:
            self.to_device()
        self._session_depth += 1
        try:
            yield
        finally:
            self._session_depth -= 1
            if self._session_depth == 0 and self.config.offload_to_cpu:
                self.offload()

    def offload(self) -> None:
        """Move the model to CPU memory and release cached GPU memory (no-op when not loaded or on CPU)."""
        if self._pipe is None or self.device.type == "cpu":
            return
        for module in (self._pipe.unet, self._pipe.vae, self._pipe.text_encoder):
            module.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ LoRA
    def prepare(self, images: Tensor, object_masks: Tensor, run_dir: Path, saved: Dict[str, Tensor],
                on_loss: Optional[Callable[[int, float], None]] = None) -> Dict[str, Tensor]:
        """The per-scene LoRA customisation (paper Sec. 3.2), unless it is off or ``lora_adapter`` names one to
        use as it is: the adapter is restored from ``saved`` (a resumed run: not trained again), or trained (a cache
        hit on a second run), loaded, and copied to ``run_dir/lora_adapter``; its files are returned for the
        checkpoints."""
        from mald_nerfstudio.inpaint.lora.training import customize

        if not self.config.customization.enabled or self.config.lora_adapter is not None:
            return {}
        run_adapter = Path(run_dir) / "lora_adapter"
        if saved:
            write_adapter_files(run_adapter, saved)
            self.load_adapter(run_adapter)
            CONSOLE.print(f"LoRA adapter restored from the checkpoint into {run_adapter} (not trained again).")
            return dict(saved)
        adapter = customize(self, images, object_masks, self.config.customization, on_loss=on_loss)
        self.load_adapter(adapter)
        files = read_adapter_files(adapter)
        write_adapter_files(run_adapter, files)
        CONSOLE.print(f"LDM customised to the scene with LoRA adapter {adapter} (copied to {run_adapter})")
        return files

    def load_adapter(self, adapter_dir: Path | str, scale: float = 1.0) -> None:
        """Load a LoRA adapter saved in diffusers' format (``save_lora_weights``) as the active scene adapter.

        A previously loaded scene adapter is replaced. Any diffusers-format LoRA folder loads; when it has our
        ``customization.json``, :attr:`prompt` uses the adapter's scene token and scene prompt (the config is left
        unchanged).
        """
        adapter_dir = check_adapter_dir(adapter_dir)
        info = read_adapter_info(adapter_dir)
        pipe = self.load()
        self.unload_lora()
        pipe.load_lora_weights(str(adapter_dir), adapter_name=SCENE_ADAPTER)
        pipe.set_adapters([SCENE_ADAPTER], adapter_weights=[scale])
        self._adapter_info = info

    def unload_lora(self) -> None:
        """Remove any loaded LoRA adapter (and its scene prompt), restoring the base model."""
        self._adapter_info = None
        if self._pipe is not None:
            self._pipe.unload_lora_weights()

    # ------------------------------------------------------------------ inpainting
    @property
    def prompt(self) -> str:
        """The text prompt in use: the loaded adapter's scene prompt with its token, else the base model's."""
        if self._adapter_info is not None:
            info = self._adapter_info
            return build_prompt(self.config.prompt, info.scene_prompt, info.scene_token)
        return self.config.prompt

    def encode_prompts(self) -> Tuple[Tensor, Optional[Tensor]]:
        """Text embeddings ``[1, L, D]`` of the prompt and (when guidance is on) of the negative prompt."""
        pipe = self.load()
        guided = self.config.guidance_scale > 1.0
        positive, negative = pipe.encode_prompt(
            self.prompt,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=guided,
            negative_prompt=self.config.negative_prompt if guided else None,
        )
        return positive, (negative if guided else None)

    def plan(self, masks: Tensor) -> List[Optional[RegionPlan]]:
        """Crop plan of each view (None for views with an empty mask)."""
        c = self.config
        factor = vae_scale_factor(self.load().vae)
        plans = [
            plan_region(mask, c.working_size, c.context_margin, multiple=factor, max_size=c.max_working_size)
            for mask in masks
        ]
        shrunk = [p for p in plans if p is not None and max(p.content_size) < max(p.box.height, p.box.width)]
        if shrunk and not self._shrink_noted:
            self._shrink_noted = True
            box = shrunk[0].box
            CONSOLE.print(
                f"LDM: a {box.height}x{box.width} crop is longer than max_working_size {c.max_working_size}: it is "
                f"shrunk to {shrunk[0].content_size[0]}x{shrunk[0].content_size[1]}, filled and enlarged back "
                "(a softer fill; raise --pipeline.inpainter.max-working-size to fill it at its own resolution, with "
                "more memory). Noted once."
            )
        return plans

    def views_per_chunk(self, size: Tuple[int, int]) -> int:
        """Views of working resolution ``size`` per model call: ``batch_size`` at working size, fewer for larger
        crops (the same pixel budget), at least one."""
        budget = self.config.batch_size * self.config.working_size**2
        return max(1, min(self.config.batch_size, budget // (size[0] * size[1])))

    def _fill(
        self, images: Tensor, masks: Tensor, init: Optional[Tensor], strength: float, seeds: Sequence[int]
    ) -> Tensor:
        if init is not None and num_denoising_steps(strength, self.config.num_inference_steps) == 0:
            return init.detach().float().clone()  # no denoising step at this strength: the render as is
        plans = self.plan(masks.cpu())
        out = images.detach().float().clone()
        groups: Dict[Tuple[int, int], List[int]] = defaultdict(list)
        for index, plan in enumerate(plans):
            if plan is not None:
                groups[plan.size].append(index)
        if not groups:
            return out
        with self.session():
            positive, negative = self.encode_prompts()
            for size, indices in groups.items():
                per_call = self.views_per_chunk(size)
                for first in range(0, len(indices), per_call):
                    chunk = indices[first : first + per_call]
                    filled = self._fill_chunk(images, masks, init, strength, seeds, plans, chunk, positive, negative)
                    for row, index in enumerate(chunk):
                        out[index] = paste_back(out[index], filled[row].to(out.device), plans[index])
        return out

    def _fill_chunk(
        self,
        images: Tensor,
        masks: Tensor,
        init: Optional[Tensor],
        strength: float,
        seeds: Sequence[int],
        plans: Sequence[Optional[RegionPlan]],
        chunk: Sequence[int],
        positive: Tensor,
        negative: Optional[Tensor],
    ) -> Tensor:
        """Inpaint the views ``chunk`` (same working size) at working resolution; returns ``[b, 3, h, w]``."""
        crops = torch.stack([crop_resize(images[i].cpu(), plans[i]) for i in chunk])
        crop_masks = torch.stack([crop_resize_mask(masks[i].cpu(), plans[i]) for i in chunk])
        start = None
        if strength < 1.0:
            # Outside the hole the original is the truth; inside, the render is what partial DDIM refines.
            renders = torch.stack([crop_resize(init[i].cpu(), plans[i]) for i in chunk])
            start = torch.where(crop_masks, renders, crops).clamp(0.0, 1.0)
        generators = [torch.Generator("cpu").manual_seed(int(seeds[i])) for i in chunk]
        pipe = self.load()
        return partial_ddim_inpaint(
            pipe.vae,
            pipe.unet,
            pipe.scheduler,
            images=crops.clamp(0.0, 1.0),
            masks=crop_masks,
            start=start,
            prompt_embeds=positive,
            negative_prompt_embeds=negative,
            strength=strength,
            num_inference_steps=self.config.num_inference_steps,
            guidance_scale=self.config.guidance_scale,
            generators=generators,
            eta=self.config.eta,
        )
