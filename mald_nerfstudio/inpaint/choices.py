"""The 2D inpainters a run can choose from, as a tyro subcommand union (like nerfstudio's data parsers).

On the command line: ``ns-train mald-nerf pipeline.inpainter:exemplar --pipeline.inpainter.context-margin 0.5 1``;
each method's default is its own configured inpainter.
"""

from __future__ import annotations

from typing import Dict

import tyro

from mald_nerfstudio.inpaint.base import InpainterConfig, NoInpainterConfig
from mald_nerfstudio.inpaint.exemplar import ExemplarInpainterConfig
from mald_nerfstudio.inpaint.ldm import LDMInpainterConfig
from mald_nerfstudio.inpaint.telea import TeleaInpainterConfig

inpainter_configs: Dict[str, InpainterConfig] = {
    "ldm": LDMInpainterConfig(),
    "exemplar": ExemplarInpainterConfig(),
    "telea": TeleaInpainterConfig(),
    "none": NoInpainterConfig(),
}
"""Latent diffusion (the paper's), exemplar (offline, sharp and view-varying), telea (offline, smooth), none."""

AnnotatedInpainterUnion = tyro.extras.subcommand_type_from_defaults(inpainter_configs)
"""Union of the inpainter configs; tyro turns it into the ``pipeline.inpainter:<name>`` subcommands."""
