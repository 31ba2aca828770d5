"""mald-nerf's default data parser: ``--data scene/`` works for both supported layouts.

A folder holding ``transforms.json`` (or a path to a .json file) is read as a nerfstudio-format capture with
inpainting masks; a folder holding ``poses_bounds.npy`` as a SPIn-NeRF / LLFF scene. The shared options below
are passed on to whichever parser applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Type

from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs

from mald_nerfstudio.data.nerfstudio_inpaint_dataparser import InpaintNerfstudioDataParserConfig
from mald_nerfstudio.data.spinnerf_dataparser import SpinNerfDataParserConfig
from mald_nerfstudio.errors import MaldInputError, install_run_hooks


@dataclass
class MaldDataParserConfig(DataParserConfig):
    """Detects the scene layout (nerfstudio transforms.json or SPIn-NeRF/LLFF poses_bounds.npy)."""

    _target: Type = field(default_factory=lambda: MaldDataParser)
    """Target class to instantiate."""
    data: Path = Path()
    """Scene folder (or transforms.json)."""
    downscale_factor: Optional[int] = None
    """Image downscale factor (reads images_N/); None lets the layout's parser choose."""
    num_test_views: Optional[int] = None
    """SPIn-NeRF layout: the first K images are object-free eval views; None: mald_scene.json, the labels, or 40."""
    mask_dilation_kernel: int = 5
    """Side of the square kernel used to dilate the inpainting masks."""
    mask_dilation_iterations: Optional[int] = None
    """Dilation iterations. None: 5 for SPIn-NeRF scenes (as SPIn-NeRF does), 0 for nerfstudio captures."""
    max_mask_fraction: float = 0.95
    """Reject any training mask covering at least this fraction of its image (after dilation)."""


class MaldDataParser(DataParser):
    """Delegates to the SPIn-NeRF or the nerfstudio inpainting parser."""

    config: MaldDataParserConfig

    def __init__(self, config: MaldDataParserConfig):
        install_run_hooks()  # our errors as paragraphs, our checkpoints on torch's safe loader
        super().__init__(config)
        self.config = config
        self._inner: Optional[DataParser] = None

    def resolved_config(self) -> DataParserConfig:
        """The concrete parser configuration for this scene."""
        data = Path(self.config.data)
        common = dict(
            data=data,
            downscale_factor=self.config.downscale_factor,
            mask_dilation_kernel=self.config.mask_dilation_kernel,
            max_mask_fraction=self.config.max_mask_fraction,
        )
        if data.suffix == ".json" or (data / "transforms.json").is_file():
            iterations = self.config.mask_dilation_iterations
            return InpaintNerfstudioDataParserConfig(mask_dilation_iterations=iterations or 0, **common)
        if (data / "poses_bounds.npy").is_file():
            iterations = self.config.mask_dilation_iterations
            return SpinNerfDataParserConfig(
                num_test_views=self.config.num_test_views,
                mask_dilation_iterations=5 if iterations is None else iterations,
                **common,
            )
        if not data.exists():
            raise MaldInputError("scene folder not found", data, "check the --data path")
        if data.is_file():
            holds = [n for n in ("transforms.json", "poses_bounds.npy") if (data.parent / n).is_file()]
            raise MaldInputError(
                "--data names a file, but it takes a scene folder (or the scene's transforms.json)",
                data,
                f"pass the folder that holds {holds[0]}: --data {data.parent}"
                if holds
                else "point --data at a scene folder in one of the layouts of README.md, 'Data layouts'",
            )
        raise MaldInputError(
            "neither transforms.json (nerfstudio format) nor poses_bounds.npy (SPIn-NeRF / LLFF layout) is in this "
            "folder",
            data,
            "point --data at a scene folder in one of these layouts (see README.md, 'Data layouts'), or generate the "
            "demo scene with `mald-nerf-demo-scene DIR`",
        )

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        if self._inner is None:
            self._inner = self.resolved_config().setup()
        return self._inner.get_dataparser_outputs(split)
