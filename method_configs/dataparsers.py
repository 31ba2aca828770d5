"""Data parsers registered with nerfstudio (entry point group ``nerfstudio.dataparser_configs``)."""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from mald_nerfstudio.data.auto_dataparser import MaldDataParserConfig
from mald_nerfstudio.data.spinnerf_dataparser import SpinNerfDataParserConfig

spinnerf_data = DataParserSpecification(
    config=SpinNerfDataParserConfig(),
    description="SPIn-NeRF / LLFF scene folder: poses_bounds.npy, images_N/, masks in images_N/label/",
)

mald_data = DataParserSpecification(
    config=MaldDataParserConfig(),
    description="mald-nerf default: detects a nerfstudio (transforms.json) or SPIn-NeRF (poses_bounds.npy) scene",
)
