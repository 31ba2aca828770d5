"""Stable Diffusion 2 inpainting's architecture with random weights, built from configs alone (never downloaded).

The U-Net, VAE, text encoder and scheduler configs are those of ``stabilityai/stable-diffusion-2-inpainting``
(9-channel U-Net, blocks 320/640/1280/1280, attention heads 5/10/20/20, cross-attention 1024, linear projection;
VAE 128/256/512/512; 23-layer CLIP text encoder of width 1024 with its 49408-token embedding; DDIM with SD2's
betas). Only the tokenizer's vocabulary is the tiny one of :mod:`tests.tiny_ldm` (the real BPE files cannot be had
offline); prompts are padded to 77 tokens either way, so the text encoder's cost is the real one.

The pipeline is saved with ``save_pretrained`` (about 5.2 GB in fp32) into a cache folder, once per machine, and
read back with ``from_pretrained`` by the code under test, so real-size cost and memory are measured on the real
loading path. Its outputs are noise: never a quality result. Never commit the folder.

    python -m tests.sd2_shaped_ldm [FOLDER]     # build (or find) it and print its folder
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Union

import torch

#: Written last into a finished build: what it is, so a half-written folder is never reused.
BUILD_INFO = "sd2_shaped_random.json"
#: Bump when the configs below change, so an old build is rebuilt.
BUILD_VERSION = 1

UNET_CONFIG = dict(
    sample_size=64,
    in_channels=9,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
    norm_num_groups=32,
    norm_eps=1e-5,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
    downsample_padding=1,
    mid_block_scale_factor=1,
    center_input_sample=False,
)
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    norm_num_groups=32,
    act_fn="silu",
    latent_channels=4,
    sample_size=512,
    scaling_factor=0.18215,
)
TEXT_ENCODER_CONFIG = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    projection_dim=512,
)


def default_folder() -> Path:
    """``$MALD_SD2_SHAPED_LDM``, else ``~/.cache/mald-nerfstudio/sd2-shaped-random-ldm``."""
    env = os.environ.get("MALD_SD2_SHAPED_LDM")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/mald-nerfstudio/sd2-shaped-random-ldm").expanduser()


def is_built(folder: Path) -> bool:
    """Whether ``folder`` holds a finished build of this version."""
    info = folder / BUILD_INFO
    if not info.is_file():
        return False
    try:
        return json.loads(info.read_text()).get("version") == BUILD_VERSION
    except ValueError:
        return False


def build_sd2_shaped_pipeline(folder: Union[str, Path, None] = None, seed: int = 0) -> Path:
    """The folder of the SD2-shaped random inpainting pipeline, built and saved first if it is not there yet."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.tiny_ldm import SD2_DDIM_CONFIG, build_tiny_tokenizer

    folder = Path(folder).expanduser() if folder is not None else default_folder()
    if is_built(folder):
        return folder
    scratch = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer(scratch / "_tokenizer_src")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            **TEXT_ENCODER_CONFIG,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    pipe = StableDiffusionInpaintPipeline(
        vae=AutoencoderKL(**VAE_CONFIG),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**UNET_CONFIG),
        scheduler=DDIMScheduler(**SD2_DDIM_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(scratch))
    shutil.rmtree(scratch / "_tokenizer_src")
    components = {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder}
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in components.items()}
    (scratch / BUILD_INFO).write_text(
        json.dumps({"version": BUILD_VERSION, "seed": seed, "parameters": counts, "random_weights": True}, indent=2)
    )
    del pipe, text_encoder
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch.rename(folder)
    return folder


def parameter_counts(folder: Path) -> dict:
    """Parameters per component of a finished build."""
    return json.loads((folder / BUILD_INFO).read_text())["parameters"]


def main(argv: Optional[list] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    folder = build_sd2_shaped_pipeline(argv[0] if argv else None)
    print(folder)


if __name__ == "__main__":
    main()
