"""The plugin as nerfstudio sees it: cheap safe import, registered methods, documented config fields."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import subprocess
import sys

import mald_nerfstudio


def test_import_registers_methods_without_loading_heavy_optional_libraries():
    code = (
        "import sys\n"
        "from nerfstudio.configs.method_configs import all_methods\n"
        "assert {'mald-nerf', 'mald-nerf-tiny', 'nerfacto-masked', 'spinnerf-style'} <= set(all_methods)\n"
        "from nerfstudio.configs.dataparser_configs import all_dataparsers\n"
        "assert {'spinnerf-data', 'mald-data'} <= set(all_dataparsers)\n"
        "heavy = [m for m in ('diffusers', 'peft', 'lpips') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _config_dataclasses():
    for info in pkgutil.walk_packages(mald_nerfstudio.__path__, "mald_nerfstudio."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and dataclasses.is_dataclass(cls) and cls.__name__.endswith("Config"):
                yield cls


def _undocumented_fields(cls) -> list:
    tree = ast.parse(inspect.getsource(cls).lstrip())
    body = tree.body[0].body  # type: ignore[attr-defined]
    missing = []
    for index, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            following = body[index + 1] if index + 1 < len(body) else None
            documented = (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                          and isinstance(following.value.value, str) and following.value.value.strip())
            if not documented:
                missing.append(node.target.id)
    return missing


def test_every_config_field_has_a_docstring():
    classes = list(_config_dataclasses())
    assert len(classes) >= 12, [c.__name__ for c in classes]
    missing = {cls.__qualname__: _undocumented_fields(cls) for cls in classes}
    assert not {name: fields for name, fields in missing.items() if fields}


def test_checkpoint_allow_list_admits_nerfstudio_numpy_learning_rates(tmp_path):
    """What our trainer, pipeline, data parsers and commands install when they start (and read_checkpoint
    before it loads): torch's safe loader then reads nerfstudio's numpy learning rates."""
    import numpy as np
    import torch

    from mald_nerfstudio.errors import install_run_hooks

    install_run_hooks()
    path = tmp_path / "ckpt.pt"
    torch.save({"lr": np.float64(0.01), "dtype": np.dtype("float64")}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["lr"] == 0.01
