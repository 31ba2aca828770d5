"""A tiny, randomly initialised Stable-Diffusion inpainting pipeline for tests.

Every component is built from a config (nothing is downloaded): a 9-channel ``UNet2DConditionModel``, an
``AutoencoderKL`` with the SD latent layout (4 channels, spatial factor 8), a 2-layer ``CLIPTextModel`` and a
``CLIPTokenizer`` whose byte-level BPE vocabulary and merges are written here, plus a ``DDIMScheduler`` with
SD2's noise schedule. The pipeline is saved with ``save_pretrained`` so tests exercise the real loading path
(``from_pretrained(local_dir)``). Its outputs are noise-like and never a quality result.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple, Union

import torch

#: DDIM with Stable Diffusion 2's noise schedule (epsilon prediction, as SD-2 inpainting).
SD2_DDIM_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
)
#: Words the tiny tokenizer knows as whole tokens (anything else falls back to single bytes).
TINY_WORDS = ("a", "photo", "of", "scene", "sks", "blurry", "low", "quality", "text", "watermark")


def _bytes_to_unicode() -> Dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _vocab_and_merges(words: Tuple[str, ...] = TINY_WORDS) -> Tuple[Dict[str, int], List[str]]:
    """A byte-level BPE vocabulary with left-to-right merges that spell out each word in ``words``."""
    tokens: List[str] = []
    for char in _bytes_to_unicode().values():
        tokens += [char, char + "</w>"]
    merges: List[str] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merge = f"{current} {piece}"
            current = current + piece
            if merge not in merges:
                merges.append(merge)
                tokens.append(current)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab: Dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def build_tiny_tokenizer(folder: Union[str, Path]):
    """Write a tiny CLIP vocabulary/merges into ``folder`` and load it as a ``CLIPTokenizer``."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    return CLIPTokenizer.from_pretrained(str(folder))


def build_tiny_inpainting_pipeline(folder: Union[str, Path, None] = None, in_channels: int = 9, seed: int = 0) -> Path:
    """Build and save a tiny random SD-inpainting pipeline; return the folder it was saved to.

    Args:
        folder: where to save (created if missing); a fresh temporary folder when None.
        in_channels: U-Net input channels; 9 for an inpainting model, 4 to build a (rejected) text-to-image one.
        seed: seed for the random initialisation, so two builds with the same seed are identical.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="tiny-ldm-"))
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
        sample_size=64,
    )
    tokenizer = build_tiny_tokenizer(folder / "_tokenizer_src")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(**SD2_DDIM_CONFIG)
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))
    for leftover in sorted((folder / "_tokenizer_src").iterdir()):
        leftover.unlink()
    (folder / "_tokenizer_src").rmdir()
    return folder
