"""Shared pytest fixtures and settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Unit tests run tiny models whose cost is dominated by thread hand-offs: one thread is faster on 2 cores
    (and far faster when the machine is busy). End-to-end tests run ns-train in subprocesses with torch's default."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_ldm_dir(tmp_path_factory) -> Path:
    """Folder of a tiny random 9-channel SD-inpainting pipeline saved with ``save_pretrained`` (built once)."""
    from tests.tiny_ldm import build_tiny_inpainting_pipeline

    return build_tiny_inpainting_pipeline(tmp_path_factory.mktemp("tiny-ldm"))


@pytest.fixture(scope="session")
def demo_scene(tmp_path_factory) -> Path:
    """The built-in demo scene (SPIn-NeRF layout), generated once per test session at a small size."""
    from mald_nerfstudio.data.demo_scene import DemoSceneConfig, generate_demo_scene

    out = tmp_path_factory.mktemp("demo") / "scene"
    return generate_demo_scene(out, DemoSceneConfig(num_train_views=8, num_test_views=3, width=96, height=72))
