"""Per-scene LoRA customisation on a tiny random SD-inpainting pipeline (CPU, no network)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mald_nerfstudio.errors import MaldInputError
from mald_nerfstudio.inpaint.ldm import LDMInpainter, LDMInpainterConfig
from mald_nerfstudio.inpaint.lora.adapter import ADAPTER_WEIGHTS
from mald_nerfstudio.inpaint.lora.cli import CustomizeCommand, read_scene_folders
from mald_nerfstudio.inpaint.lora.data import masked_diffusion_loss, object_latent_mask, training_batch
from mald_nerfstudio.inpaint.lora.training import LoRACustomizationConfig, customize
from mald_nerfstudio.inpaint.partial_ddim import masked_image_condition

TRAIN_STEPS = 60



def _toy_scene(count: int = 4, height: int = 40, width: int = 48):
    """Smooth, slightly different colour fields with an 'object' box in each view."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    images = torch.stack(
        [
            torch.stack([0.5 + 0.4 * torch.sin(6 * xx + i), 0.5 + 0.4 * torch.cos(5 * yy - i), 0.5 * xx * yy + 0.2], -1)
            for i in range(count)
        ]
    )
    masks = torch.zeros(count, height, width, dtype=torch.bool)
    masks[:, 12:24, 16:30] = True
    images[masks] = torch.tensor([1.0, 0.0, 0.0])  # the object: a red box
    return images, masks


def _config(tmp: Path, **overrides) -> LoRACustomizationConfig:
    settings = dict(
        steps=TRAIN_STEPS, resolution=32, batch_size=8, learning_rate=1e-2, rank=4, alpha=4.0, cache_dir=tmp
    )
    settings.update(overrides)
    return LoRACustomizationConfig(**settings)


def _inpainter(folder: Path, **overrides) -> LDMInpainter:
    config = LDMInpainterConfig(model=str(folder), working_size=32, num_inference_steps=4, **overrides)
    ldm = config.setup(device="cpu")
    ldm.load()
    return ldm


def _weights(ldm: LDMInpainter) -> Dict[str, Dict[str, torch.Tensor]]:
    return {
        name: {k: v.detach().clone() for k, v in getattr(ldm.pipe, name).state_dict().items()}
        for name in ("unet", "text_encoder", "vae")
    }


@pytest.fixture(scope="module")
def trained(tiny_ldm_dir, tmp_path_factory):
    """One customisation run (with the default gradient checkpointing) plus a no-learning control run."""
    ldm = _inpainter(tiny_ldm_dir)
    images, masks = _toy_scene()
    before = _weights(ldm)
    losses: List[float] = []
    control: List[float] = []
    cache = tmp_path_factory.mktemp("lora-cache")
    adapter = customize(ldm, images, masks, _config(cache), on_loss=lambda step, loss: losses.append(loss))
    customize(ldm, images, masks, _config(cache, learning_rate=0.0), on_loss=lambda s, loss: control.append(loss))
    return dict(ldm=ldm, images=images, masks=masks, before=before, adapter=adapter, losses=losses, control=control)


def test_only_lora_parameters_change(trained):
    after = _weights(trained["ldm"])
    for name, weights in trained["before"].items():
        assert after[name].keys() == weights.keys(), f"{name} still carries adapter layers"
        for key, value in weights.items():
            assert torch.equal(after[name][key], value), f"base weight {name}.{key} changed"
    saved = load_file(str(trained["adapter"] / ADAPTER_WEIGHTS))
    ups = {k: v for k, v in saved.items() if ".up." in k or "lora_B" in k}
    assert any(k.startswith("unet.") for k in ups) and any(k.startswith("text_encoder.") for k in ups)
    # LoRA B starts at zero, so every trained (gradient-receiving) adapter has moved away from it.
    assert all(v.abs().max() > 0 for v in ups.values())


def test_training_loss_falls(trained):
    losses, control = np.array(trained["losses"]), np.array(trained["control"])
    assert len(losses) == len(control) == TRAIN_STEPS
    assert losses[0] == pytest.approx(control[0])  # same batches; the adapter starts as a no-op
    assert losses[-10:].mean() < losses[:10].mean()
    # On the very same batches, the trained adapter beats the untrained one by the end.
    assert (losses[-20:] - control[-20:]).mean() < -0.02


def test_loss_has_zero_gradient_inside_object():
    factor = 8
    object_mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    object_mask[..., 9:17, 20:23] = True  # rows 9..16 touch latent rows 1 and 2; cols 20..22 latent col 2
    object_latents = object_latent_mask(object_mask, factor)
    assert object_latents[0, 0, 1:3, 2].eq(1).all() and object_latents.sum() == 2

    prediction = torch.randn(1, 4, 4, 4, requires_grad=True)
    loss = masked_diffusion_loss(prediction, torch.randn(1, 4, 4, 4), object_latents)
    (grad,) = torch.autograd.grad(loss, prediction)
    inside = object_latents.bool().expand_as(grad)
    assert torch.all(grad[inside] == 0)
    assert torch.all(grad[~inside] != 0)


def test_object_is_hidden_from_conditioning(tmp_path):
    images, masks = _toy_scene()
    chw, object_masks = images.permute(0, 3, 1, 2), masks[:, None]
    config = _config(tmp_path, batch_size=4)
    crops, inpaint_masks, objects = training_batch(chw, object_masks, config, torch.Generator().manual_seed(1))
    assert objects.any()
    assert torch.all(inpaint_masks[objects])  # the object is always part of the inpainting mask
    condition = masked_image_condition(crops, inpaint_masks)
    assert torch.all(condition.permute(1, 0, 2, 3)[:, objects[:, 0]] == 0.5)


def test_second_run_hits_cache_and_changed_mask_misses(tiny_ldm_dir, tmp_path):
    ldm = _inpainter(tiny_ldm_dir)
    images, masks = _toy_scene(count=2)
    config = _config(tmp_path, steps=2, batch_size=2)
    calls: List[int] = []
    first = customize(ldm, images, masks, config, on_loss=lambda step, loss: calls.append(step), show_progress=False)
    assert calls == [0, 1]
    again = customize(ldm, images, masks, config, on_loss=lambda step, loss: calls.append(step), show_progress=False)
    assert again == first and calls == [0, 1]  # nothing trained the second time

    changed = masks.clone()
    changed[1, 0, 0] = True
    other = customize(ldm, images, changed, config, on_loss=lambda step, loss: calls.append(step), show_progress=False)
    assert other != first and calls == [0, 1, 0, 1]
    assert json.loads((first / "customization.json").read_text())["scene_token"] == ldm.config.scene_token


def test_saved_adapter_reloads_and_changes_output(tiny_ldm_dir, trained):
    ldm = _inpainter(tiny_ldm_dir, scene_token="sks", guidance_scale=1.0)
    images, masks = trained["images"][:1], trained["masks"][:1]
    base = ldm.inpaint(images, masks, seeds=[0])
    ldm.load_adapter(trained["adapter"])
    assert ldm.prompt == "a photo of sks scene"
    customised = ldm.inpaint(images, masks, seeds=[0])
    assert (customised - base)[masks].abs().max() > 1e-3
    ldm.unload_lora()
    assert torch.equal(ldm.inpaint(images, masks, seeds=[0]), base)


def _write_scene(root: Path, images: torch.Tensor, masks: torch.Tensor) -> None:
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray((image.numpy() * 255).round().astype(np.uint8)).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(mask.numpy().astype(np.uint8)).save(root / "masks" / f"{i:03d}.png")  # values 0/1


def test_scene_folders_are_read_with_nonzero_mask_as_object(tmp_path):
    images, masks = _toy_scene(count=2)
    _write_scene(tmp_path, images, masks)
    read_images, read_masks, names = read_scene_folders(tmp_path / "images", tmp_path / "masks")
    assert names == ["000.png", "001.png"]
    assert torch.equal(read_masks, masks)
    assert torch.allclose(read_images, images, atol=1 / 255)

    (tmp_path / "masks" / "001.png").unlink()
    with pytest.raises(MaldInputError, match="001.png has no mask"):
        read_scene_folders(tmp_path / "images", tmp_path / "masks")


def test_command_line_writes_adapter(tiny_ldm_dir, tmp_path, capsys):
    import tyro

    images, masks = _toy_scene(count=2)
    _write_scene(tmp_path, images, masks)
    args = [
        "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
        "--ldm.model", str(tiny_ldm_dir), "--device", "cpu", "--ldm.customization.cache-dir", str(tmp_path / "c"),
        "--ldm.customization.steps", "1", "--ldm.customization.resolution", "32",
        "--ldm.customization.batch-size", "1",
    ]  # fmt: skip
    command = tyro.cli(CustomizeCommand, args=args)
    adapter = command.main()
    assert str(adapter) in capsys.readouterr().out
    assert (adapter / ADAPTER_WEIGHTS).is_file() and adapter.parent == tmp_path / "c"


def test_adapter_in_config_is_loaded_with_its_scene_token(tiny_ldm_dir, trained):
    ldm = _inpainter(tiny_ldm_dir, lora_adapter=trained["adapter"])
    assert ldm.prompt == "a photo of sks scene"
    assert ldm.config.scene_token == "sks"  # the config is left as it was
    assert ldm.pipe.get_list_adapters() == {"unet": ["scene"], "text_encoder": ["scene"]}


def test_cuda_grad_scaler_is_found_on_old_and_new_torch(monkeypatch):
    """torch.amp.GradScaler("cuda") exists from torch 2.3 on; before, the scaler is torch.cuda.amp.GradScaler."""
    from mald_nerfstudio.inpaint.lora.training import cuda_grad_scaler

    assert isinstance(cuda_grad_scaler(enabled=False), torch.amp.GradScaler)
    monkeypatch.delattr(torch.amp, "GradScaler")
    old = cuda_grad_scaler(enabled=False)
    assert isinstance(old, torch.cuda.amp.GradScaler) and not old.is_enabled()


def _save_without_metadata(self, save_directory, unet_lora_layers=None, text_encoder_lora_layers=None,
                           is_main_process=True, weight_name=None, save_function=None, safe_serialization=True):
    """diffusers < 0.34's signature of save_lora_weights (no adapter metadata)."""
    raise AssertionError("training should have been refused before saving")


def test_adapter_metadata_is_passed_only_where_diffusers_accepts_it(tiny_ldm_dir, tmp_path, monkeypatch):
    """diffusers < 0.34 has no adapter-metadata arguments: they are left out (alpha = rank loads the same adapter),
    and an alpha that differs from the rank is refused before training instead of a TypeError after it."""
    from diffusers import StableDiffusionInpaintPipeline
    from peft import LoraConfig

    from mald_nerfstudio.errors import MaldSetupError
    from mald_nerfstudio.inpaint.lora.adapter import adapter_metadata_kwargs

    lora = LoraConfig(r=4, lora_alpha=4.0, target_modules=["to_q"])
    current = adapter_metadata_kwargs(StableDiffusionInpaintPipeline.save_lora_weights, lora, None)
    assert current["unet_lora_adapter_metadata"]["r"] == 4 and current["text_encoder_lora_adapter_metadata"] is None
    assert adapter_metadata_kwargs(_save_without_metadata, lora, None) == {}

    monkeypatch.setattr(StableDiffusionInpaintPipeline, "save_lora_weights", _save_without_metadata)
    ldm = _inpainter(tiny_ldm_dir)
    images, masks = _toy_scene()
    with pytest.raises(MaldSetupError, match="alpha"):
        customize(ldm, images, masks, _config(tmp_path, steps=1, alpha=8.0), show_progress=False)


def test_loaded_adapter_prompts_with_its_token_and_leaves_the_config(tiny_ldm_dir, trained):
    """An adapter's own scene token and prompt are used by the inpainter without rewriting its config; unloading
    the adapter goes back to the base model's prompt (the token means nothing to the base model)."""
    ldm = _inpainter(tiny_ldm_dir, scene_token="other", scene_prompt="{token} room")
    assert ldm.prompt == "a photo of a scene"
    ldm.load_adapter(trained["adapter"])
    assert ldm.prompt == "a photo of sks scene"
    assert (ldm.config.scene_token, ldm.config.scene_prompt) == ("other", "{token} room")
    ldm.unload_lora()
    assert ldm.prompt == "a photo of a scene"


def test_loading_a_folder_that_is_no_adapter_is_refused(tiny_ldm_dir, tmp_path):
    from mald_nerfstudio.errors import MaldSetupError

    ldm = LDMInpainterConfig(model=str(tiny_ldm_dir)).setup(device="cpu")
    with pytest.raises(MaldSetupError, match="not a LoRA adapter folder"):
        ldm.load_adapter(tmp_path)


def test_adapter_module_does_not_import_the_inpainter():
    """ldm.py imports lora/adapter.py to load adapters, so adapter.py (and the package) must not import ldm.py."""
    code = (
        "import sys\n"
        "import mald_nerfstudio.inpaint.lora.adapter\n"
        "assert 'mald_nerfstudio.inpaint.ldm' not in sys.modules, 'adapter imported ldm'\n"
        "import mald_nerfstudio.inpaint.ldm\n"
        "assert 'mald_nerfstudio.inpaint.lora.training' not in sys.modules, 'ldm imported the training'\n"
        "import mald_nerfstudio.inpaint.lora.training\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
