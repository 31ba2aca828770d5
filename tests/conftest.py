"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_ldm_dir(tmp_path_factory) -> Path:
    """Folder of a tiny random 9-channel SD-inpainting pipeline saved with ``save_pretrained`` (built once)."""
    from tests.tiny_ldm import build_tiny_inpainting_pipeline

    return build_tiny_inpainting_pipeline(tmp_path_factory.mktemp("tiny-ldm"))
