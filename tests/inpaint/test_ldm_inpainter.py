"""The latent-diffusion inpainter and partial DDIM, on a tiny random SD-inpainting pipeline (CPU, no network)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
import torch

from mald_nerfstudio.errors import MaldSetupError
from mald_nerfstudio.inpaint.ldm import LDMInpainter, LDMInpainterConfig
from mald_nerfstudio.inpaint.lora.adapter import build_prompt
from mald_nerfstudio.inpaint.partial_ddim import encode_latents, num_denoising_steps, partial_ddim_inpaint

STEPS = 10


def _inpainter(folder: Path, **overrides) -> LDMInpainter:
    settings = {"model": str(folder), "num_inference_steps": STEPS, "working_size": 64, "guidance_scale": 3.0}
    config = LDMInpainterConfig(**{**settings, **overrides})
    return config.setup(device="cpu")



@pytest.fixture(scope="module")
def inpainter(tiny_ldm_dir) -> LDMInpainter:
    ldm = _inpainter(tiny_ldm_dir)
    ldm.load()
    return ldm


class UNetSpy:
    """Records every U-Net call's input and timestep through a forward pre-hook."""

    def __init__(self, unet):
        self.inputs: List[torch.Tensor] = []
        self.timesteps: List[int] = []
        self._handle = unet.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        self.inputs.append(args[0].detach().clone())
        self.timesteps.append(int(args[1]))

    def close(self):
        self._handle.remove()


class PlacementSpy:
    """Reads, inside forward pre-hooks, where the U-Net's, the VAE's and the text encoder's weights are (device
    type, dtype) and where their input is, each time the real inference calls them."""

    def __init__(self, ldm: LDMInpainter):
        pipe = ldm.pipe
        self.modules = {
            "unet": pipe.unet,
            "vae.encoder": pipe.vae.encoder,
            "vae.decoder": pipe.vae.decoder,
            "text_encoder": pipe.text_encoder,
        }
        self.seen: Dict[str, Set[Tuple[str, torch.dtype, str]]] = {name: set() for name in self.modules}
        self._handles = [
            module.register_forward_pre_hook(self._recorder(name), with_kwargs=True)
            for name, module in self.modules.items()
        ]

    def _recorder(self, name):
        def record(module, args, kwargs):
            first = args[0] if args else next(iter(kwargs.values()))
            for param in module.parameters():
                self.seen[name].add((param.device.type, param.dtype, first.device.type))

        return record

    def placement(self) -> Set[Tuple[str, torch.dtype]]:
        """(device type, dtype) of every parameter of the four modules now."""
        return {(p.device.type, p.dtype) for m in self.modules.values() for p in m.parameters()}

    def close(self):
        for handle in self._handles:
            handle.remove()


def _scene(batch: int = 2, height: int = 64, width: int = 64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, height, width, 3, generator=generator)
    masks = torch.zeros(batch, height, width, dtype=torch.bool)
    masks[:, height // 4 : height // 2, width // 3 : 2 * width // 3] = True
    renders = torch.rand(batch, height, width, 3, generator=generator)
    return images, masks, renders


@pytest.mark.parametrize("strength", [0.3, 0.25, 0.75])
def test_partial_strength_runs_rounded_steps_from_noised_start(inpainter, strength):
    pipe = inpainter.pipe
    images, masks, renders = _scene(batch=2)
    images, renders = images.permute(0, 3, 1, 2), renders.permute(0, 3, 1, 2)
    masks = masks[:, None]
    positive, negative = inpainter.encode_prompts()
    seeds = [11, 12]
    spy = UNetSpy(pipe.unet)
    try:
        partial_ddim_inpaint(
            pipe.vae,
            pipe.unet,
            pipe.scheduler,
            images,
            masks,
            renders,
            positive,
            negative,
            strength=strength,
            num_inference_steps=STEPS,
            guidance_scale=3.0,
            generators=[torch.Generator().manual_seed(s) for s in seeds],
        )
    finally:
        spy.close()

    expected_steps = int(strength * STEPS + 0.5)
    assert num_denoising_steps(strength, STEPS) == expected_steps
    assert len(spy.inputs) == expected_steps  # one (guidance-batched) U-Net call per denoising step
    pipe.scheduler.set_timesteps(STEPS)
    all_timesteps = pipe.scheduler.timesteps.tolist()
    assert spy.timesteps == all_timesteps[STEPS - expected_steps :]

    # The first U-Net input (conditional half, first 4 channels) is add_noise(encode(start)) at the first timestep.
    first = torch.tensor([spy.timesteps[0]] * 2)
    noise = torch.stack([torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(s)) for s in seeds])
    expected_latents = pipe.scheduler.add_noise(encode_latents(pipe.vae, renders), noise, first)
    first_input = spy.inputs[0]
    assert first_input.shape[:2] == (4, 9)  # [uncond, cond] x 2 views; 4 latents + 1 mask + 4 masked latents
    assert torch.allclose(first_input[2:, :4], expected_latents, atol=1e-5)
    assert torch.allclose(first_input[:2, :4], expected_latents, atol=1e-5)


def test_full_strength_starts_from_pure_noise(inpainter):
    images, masks, _ = _scene(batch=1)
    spy = UNetSpy(inpainter.unet)
    try:
        inpainter.inpaint(images, masks, strength=1.0, seeds=[5])
    finally:
        spy.close()
    assert len(spy.inputs) == STEPS
    noise = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(spy.inputs[0][-1, :4], noise * inpainter.scheduler.init_noise_sigma, atol=1e-6)


@pytest.mark.parametrize("strength", [0.0, 0.04])  # 0.04 * 10 steps rounds to 0 steps
def test_zero_step_strength_returns_start_without_model_calls(inpainter, strength):
    images, masks, renders = _scene(batch=2)
    spy = UNetSpy(inpainter.unet)
    try:
        out = inpainter.inpaint(images, masks, init=renders, strength=strength)
        direct = partial_ddim_inpaint(
            inpainter.vae,
            inpainter.unet,
            inpainter.scheduler,
            images.permute(0, 3, 1, 2),
            masks[:, None],
            renders.permute(0, 3, 1, 2),
            *inpainter.encode_prompts(),
            strength=strength,
            num_inference_steps=STEPS,
            guidance_scale=3.0,
            generators=[torch.Generator().manual_seed(0) for _ in range(2)],
        )
    finally:
        spy.close()
    assert spy.inputs == []
    assert torch.equal(out[masks], renders[masks])
    assert torch.equal(out[~masks], images[~masks])
    assert torch.equal(direct, renders.permute(0, 3, 1, 2))


def test_pixels_outside_mask_are_bit_exact(inpainter):
    images, masks, renders = _scene(batch=2)
    out = inpainter.inpaint(images, masks, init=renders, strength=0.5)
    assert torch.equal(out[~masks], images[~masks])
    assert not torch.allclose(out[masks], images[masks], atol=1e-3)


def test_same_seed_same_output_and_different_seeds_differ(inpainter):
    images, masks, renders = _scene(batch=1)
    first = inpainter.inpaint(images, masks, init=renders, strength=0.6, seeds=[3])
    again = inpainter.inpaint(images, masks, init=renders, strength=0.6, seeds=[3])
    other = inpainter.inpaint(images, masks, init=renders, strength=0.6, seeds=[4])
    assert torch.equal(first, again)
    assert (first - other)[masks].abs().max() > 1e-3


def test_view_result_does_not_depend_on_batch_companions(inpainter):
    images, masks, renders = _scene(batch=2)
    together = inpainter.inpaint(images, masks, init=renders, strength=0.5, seeds=[7, 8])
    alone = inpainter.inpaint(images[1:], masks[1:], init=renders[1:], strength=0.5, seeds=[8])
    assert torch.allclose(together[1], alone[0], atol=1e-4)


def test_empty_mask_returns_original_without_model_calls(inpainter):
    images, _, renders = _scene(batch=2)
    masks = torch.zeros(images.shape[:3], dtype=torch.bool)
    spy = UNetSpy(inpainter.unet)
    try:
        out = inpainter.inpaint(images, masks, init=renders, strength=0.5)
    finally:
        spy.close()
    assert spy.inputs == []
    assert torch.equal(out, images)


def test_large_image_is_inpainted_in_a_crop_at_working_size(inpainter):
    images, masks, renders = _scene(batch=1, height=96, width=200)
    masks[:] = False
    masks[:, 80:90, 185:195] = True  # small hole near the bottom-right corner
    spy = UNetSpy(inpainter.unet)
    try:
        out = inpainter.inpaint(images, masks, init=renders, strength=0.4)
    finally:
        spy.close()
    assert spy.inputs[0].shape[-2:] == (64 // 8, 64 // 8)  # a 64 x 64 crop, not the whole 96 x 200 image
    assert torch.equal(out[~masks], images[~masks])
    assert not torch.allclose(out[masks], images[masks], atol=1e-3)


def test_construction_is_lazy(tmp_path):
    ldm = LDMInpainterConfig(model=str(tmp_path / "not-there")).setup(device="cpu")
    assert not ldm.loaded


def test_missing_local_folder_gives_setup_error(tmp_path):
    ldm = _inpainter(tmp_path / "no" / "such" / "folder")
    with pytest.raises(MaldSetupError) as info:
        ldm.check_available()
    message = str(info.value)
    assert str(tmp_path / "no" / "such" / "folder") in message
    assert "--pipeline.inpainter.model" in message and "pipeline.inpainter:exemplar" in message


def test_uncached_hub_id_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ldm = LDMInpainterConfig(model="someone/uncached-inpainting-model", cache_dir=tmp_path).setup(device="cpu")
    began = time.perf_counter()
    with pytest.raises(MaldSetupError) as info:
        ldm.load()
    assert time.perf_counter() - began < 10.0
    message = str(info.value)
    assert "someone/uncached-inpainting-model" in message and "HF_HUB_OFFLINE" in message
    assert "--pipeline.inpainter.model" in message and "telea" in message


def test_network_error_becomes_setup_error(tmp_path, monkeypatch):
    import httpx
    from diffusers import DiffusionPipeline

    real_download = DiffusionPipeline.download.__func__
    online_calls = []

    def no_network(cls, name, **kwargs):
        if kwargs.get("local_files_only"):
            return real_download(cls, name, **kwargs)
        online_calls.append(name)
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(DiffusionPipeline, "download", classmethod(no_network))
    ldm = LDMInpainterConfig(model="someone/uncached-inpainting-model", cache_dir=tmp_path).setup(device="cpu")
    with pytest.raises(MaldSetupError) as info:
        ldm.check_available()
    assert online_calls == ["someone/uncached-inpainting-model"]
    assert "ConnectError" in str(info.value) and "--pipeline.inpainter" in str(info.value)


def test_local_files_only_never_goes_online(tmp_path, monkeypatch):
    from diffusers import DiffusionPipeline

    real_download = DiffusionPipeline.download.__func__
    online_calls = []

    def record(cls, name, **kwargs):
        if not kwargs.get("local_files_only"):
            online_calls.append(name)
        return real_download(
            cls, name, local_files_only=True, **{k: v for k, v in kwargs.items() if k != "local_files_only"}
        )

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(DiffusionPipeline, "download", classmethod(record))
    config = LDMInpainterConfig(model="someone/uncached-inpainting-model", cache_dir=tmp_path, local_files_only=True)
    with pytest.raises(MaldSetupError, match="local_files_only"):
        config.setup(device="cpu").check_available()
    assert online_calls == []


def test_cached_hub_id_loads_offline_without_network(tiny_ldm_dir, tmp_path, monkeypatch):
    import shutil

    from diffusers import DiffusionPipeline

    # The hub cache layout: refs/main names the snapshot folder holding the repository's files.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--someone--tiny-inpainting"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_ldm_dir, repo / "snapshots" / commit)

    real_download = DiffusionPipeline.download.__func__
    online_calls = []

    def local_only(cls, name, **kwargs):
        if not kwargs.get("local_files_only"):
            online_calls.append(name)
        return real_download(cls, name, **kwargs)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(DiffusionPipeline, "download", classmethod(local_only))
    ldm = LDMInpainterConfig(model="someone/tiny-inpainting", cache_dir=tmp_path).setup(device="cpu")
    assert ldm.check_available() == repo / "snapshots" / commit
    assert ldm.load().unet.config.in_channels == 9
    assert online_calls == []


def test_non_inpainting_unet_is_rejected(tmp_path):
    from tests.tiny_ldm import build_tiny_inpainting_pipeline

    folder = build_tiny_inpainting_pipeline(tmp_path / "text-to-image", in_channels=4)
    with pytest.raises(MaldSetupError, match="in_channels=4") as info:
        _inpainter(folder).load()
    assert "not an inpainting model" in str(info.value)


def test_folder_without_pipeline_is_rejected(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(MaldSetupError, match="model_index.json"):
        _inpainter(tmp_path).check_available()


def test_scene_token_is_inserted_in_prompt():
    assert build_prompt("a photo of a scene", "a photo of {token} scene", None) == "a photo of a scene"
    assert build_prompt("a photo of a scene", "a photo of {token} scene", "sks") == "a photo of sks scene"
    assert LDMInpainterConfig(scene_token="sks").setup(device="cpu").prompt == "a photo of a scene"  # no adapter


def test_a_session_moves_the_model_once_for_many_inpaint_calls(inpainter, monkeypatch):
    """Inside session() the LDM goes to its device once and is offloaded once, however many views are inpainted;
    an inpaint call outside a session still places and offloads the model itself."""
    moves: List[str] = []
    monkeypatch.setattr(inpainter, "to_device", lambda: moves.append("to_device"))
    monkeypatch.setattr(inpainter, "offload", lambda: moves.append("offload"))
    images, masks, _ = _scene(batch=1)
    with inpainter.session():
        for seed in range(3):
            inpainter.inpaint(images, masks, seeds=[seed])
    assert moves == ["to_device", "offload"]
    moves.clear()
    inpainter.inpaint(images, masks, seeds=[0])
    assert moves == ["to_device", "offload"]


def test_crop_up_to_max_working_size_is_filled_at_its_own_resolution(tiny_ldm_dir, capsys):
    """A 59 x 75 crop (working size 32, limit 96) reaches the VAE unresampled, padded to 64 x 80 (latents 8 x 10);
    a 70 x 110 crop is shrunk to the limit, 64 x 96 (latents 8 x 12), and that is said on the console once."""
    ldm = _inpainter(tiny_ldm_dir, working_size=32, max_working_size=96, context_margin=0.0)
    images, masks, renders = _scene(batch=1, height=80, width=120)
    vae_sizes: List[Tuple[int, int]] = []
    hook = ldm.vae.encoder.register_forward_pre_hook(lambda m, args: vae_sizes.append(tuple(args[0].shape[-2:])))
    spy = UNetSpy(ldm.unet)
    try:
        masks[:] = False
        masks[:, 10:69, 20:95] = True
        out = ldm.inpaint(images, masks, init=renders, strength=0.5)
        assert {tuple(x.shape[-2:]) for x in spy.inputs} == {(8, 10)}
        assert set(vae_sizes) == {(64, 80)}
        assert torch.equal(out[~masks], images[~masks]) and not torch.allclose(out[masks], images[masks], atol=1e-3)
        assert "max_working_size" not in capsys.readouterr().out

        spy.inputs.clear()
        vae_sizes.clear()
        masks[:] = False
        masks[:, 5:75, 5:115] = True
        ldm.inpaint(images, masks, init=renders, strength=0.5)
        assert {tuple(x.shape[-2:]) for x in spy.inputs} == {(8, 12)}
        assert set(vae_sizes) == {(64, 96)}
        note = capsys.readouterr().out
        assert "70x110 crop is longer than max_working_size 96" in note and "shrunk to 64x96" in note
        ldm.inpaint(images, masks, init=renders, strength=0.5)
        assert "max_working_size" not in capsys.readouterr().out  # noted once, not at every update
    finally:
        hook.remove()
        spy.close()


def test_larger_crops_go_fewer_views_per_call(tiny_ldm_dir):
    """batch_size views per call at working size; crops with twice its side go one per call (same pixel budget)."""
    ldm = _inpainter(tiny_ldm_dir, working_size=32, max_working_size=64, batch_size=4, context_margin=0.0)
    images, masks, _ = _scene(batch=3, height=64, width=64)
    spy = UNetSpy(ldm.unet)
    try:
        ldm.inpaint(images, masks, seeds=[1, 2, 3])  # 16 x 22 holes: 32 x 32 crops, all three in one call
        assert {x.shape[0] for x in spy.inputs} == {2 * 3} and len(spy.inputs) == STEPS
        spy.inputs.clear()
        masks[:, 4:60, 4:60] = True  # 56 x 56 crops, filled at 56 x 56: 3 pixels of 32 x 32 each, so one per call
        ldm.inpaint(images, masks, seeds=[1, 2, 3])
        assert {tuple(x.shape[-2:]) for x in spy.inputs} == {(7, 7)}
        assert {x.shape[0] for x in spy.inputs} == {2 * 1} and len(spy.inputs) == 3 * STEPS
    finally:
        spy.close()


def test_weights_are_where_the_config_says_during_inference_on_cpu(tiny_ldm_dir):
    """Read inside the real calls: on a CPU every component computes in fp32 on the CPU (``fp16`` applies to CUDA
    only), the text encoder included, and the weights are still there after the pass."""
    ldm = _inpainter(tiny_ldm_dir, fp16=True, offload_to_cpu=True)
    ldm.load()
    spy = PlacementSpy(ldm)
    try:
        images, masks, renders = _scene(batch=2)
        ldm.inpaint(images, masks, init=renders, strength=0.5)
    finally:
        spy.close()
    for name, seen in spy.seen.items():
        assert seen == {("cpu", torch.float32, "cpu")}, name  # empty when the module never ran
    assert spy.placement() == {("cpu", torch.float32)}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="offloading moves weights between a GPU and the CPU")
@pytest.mark.parametrize("offload", [True, False])
def test_weights_are_on_the_gpu_during_inference_and_offloaded_as_configured(tiny_ldm_dir, offload):
    """With ``offload_to_cpu`` the weights wait in CPU memory until used, are on the GPU in fp16 during every call
    of the pass (the text encoder's too), stay there between the calls of a session and go back to the CPU at its
    end; without it they stay on the GPU."""
    ldm = _inpainter(tiny_ldm_dir, device="cuda", fp16=True, offload_to_cpu=offload)
    ldm.load()
    spy = PlacementSpy(ldm)
    idle = {("cpu" if offload else "cuda", torch.float16)}
    try:
        assert spy.placement() == idle
        images, masks, renders = _scene(batch=2)
        ldm.inpaint(images, masks, init=renders, strength=0.5)
        for name, seen in spy.seen.items():
            assert seen == {("cuda", torch.float16, "cuda")}, name
        assert spy.placement() == idle
        with ldm.session():
            ldm.inpaint(images, masks, init=renders, strength=0.5)
            assert spy.placement() == {("cuda", torch.float16)}  # not offloaded between the calls of a session
            ldm.inpaint(images, masks, init=renders, strength=0.5)
        assert spy.placement() == idle
    finally:
        spy.close()
