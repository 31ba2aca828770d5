"""The package's shape: control runs one way (the layers of docs/architecture.md: no import, type-only included,
goes to a higher layer or back to a module that imports it) and every config field has the one-line docstring that
``ns-train --help`` prints."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mald_nerfstudio"
METHOD_CONFIGS = REPO / "method_configs"
ARCHITECTURE = REPO / "docs" / "architecture.md"


def _relative(path: Path) -> str:
    """A file's path as docs/architecture.md writes it: relative to mald_nerfstudio/ (method_configs/ as is)."""
    if path.is_relative_to(METHOD_CONFIGS):
        return path.relative_to(REPO).as_posix()
    return path.relative_to(PACKAGE).as_posix()


def _module_name(path: Path) -> str:
    if path.is_relative_to(METHOD_CONFIGS):  # installed as mald_nerfstudio.method_configs
        parts = ["mald_nerfstudio", *path.relative_to(REPO).with_suffix("").parts]
    else:
        parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _files() -> Dict[str, Path]:
    return {_module_name(path): path for path in [*PACKAGE.rglob("*.py"), *METHOD_CONFIGS.rglob("*.py")]}


def _imports(path: Path, modules: Set[str]) -> Set[str]:
    """Package modules ``path`` imports anywhere: module level, inside functions, and under TYPE_CHECKING."""
    found: Set[str] = set()

    def visit(node: ast.AST) -> None:
        names: List[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name for name in names if name in modules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _import_graph() -> Dict[str, Set[str]]:
    files = _files()
    return {name: _imports(path, set(files)) - {name} for name, path in files.items()}


def _cycles(graph: Dict[str, Set[str]]) -> List[str]:
    """Every chain of imports that leads from a module back to itself."""
    cycles = set()
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.add(" -> ".join(trail + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
    return sorted(cycles)


def test_no_module_of_the_package_imports_one_that_imports_it_back():
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_import_check_sees_imports_inside_functions_and_under_type_checking(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import c\n")
    b.write_text("def f():\n    from a import x\n")
    graph = {"a": _imports(a, {"a", "b", "c"}), "b": _imports(b, {"a", "b", "c"}), "c": {"b"}}
    assert graph == {"a": {"c"}, "b": {"a"}, "c": {"b"}}
    assert _cycles(graph) == ["a -> c -> b -> a", "b -> a -> c -> b", "c -> b -> a -> c"]


def _layers() -> List[List[str]]:
    """The file patterns of each layer of docs/architecture.md's table, lowest first."""
    text = ARCHITECTURE.read_text()
    table = text[text.index("## Layers"):]
    rows = re.findall(r"^\| (\d+) \| (.+?) \| .+ \|$", table, flags=re.MULTILINE)
    assert [int(number) for number, _ in rows] == list(range(1, len(rows) + 1)), rows
    return [re.findall(r"`([^`]+)`", files) for _, files in rows]


def _layer_of(layers: List[List[str]]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for name, path in _files().items():
        found = [k for k, patterns in enumerate(layers) if any(fnmatch.fnmatch(_relative(path), p) for p in patterns)]
        assert len(found) == 1, f"{_relative(path)} is in layers {[k + 1 for k in found]} of docs/architecture.md"
        out[name] = found[0]
    return out


def test_every_file_is_in_one_layer_and_every_layer_pattern_names_a_file():
    layers = _layers()
    _layer_of(layers)
    relative = [_relative(path) for path in _files().values()]
    for patterns in layers:
        for pattern in patterns:
            assert any(fnmatch.fnmatch(r, pattern) for r in relative), f"{pattern} names no file"


def test_no_import_goes_to_a_higher_layer():
    layer = _layer_of(_layers())
    upward = [f"{a} (layer {layer[a] + 1}) imports {b} (layer {layer[b] + 1})"
              for a, targets in _import_graph().items() for b in targets if layer[b] > layer[a]]
    assert not upward, "imports against docs/architecture.md's layers:\n" + "\n".join(sorted(upward))


def test_the_file_names_in_architecture_md_exist():
    text = ARCHITECTURE.read_text()
    names = set(re.findall(r"\b((?:[a-z_]+/)+[a-z_]+\.py)\b", text))
    missing = [n for n in names if not ((PACKAGE / n).is_file() or (REPO / n).is_file())]
    assert names and not missing, missing


def _dataclass_fields_without_one_line_docstring() -> List[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")) + sorted((REPO / "method_configs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef) or not any(
                (isinstance(d, ast.Name) and d.id == "dataclass")
                or (isinstance(d, ast.Call) and getattr(d.func, "id", "") == "dataclass")
                for d in node.decorator_list
            ):
                continue
            for index, statement in enumerate(node.body):
                if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                    continue
                following = node.body[index + 1] if index + 1 < len(node.body) else None
                where = f"{path.relative_to(REPO)}:{statement.lineno} {node.name}.{statement.target.id}"
                if not (
                    isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)
                ):
                    problems.append(f"{where}: no docstring")
                elif "\n" in following.value.value.strip():
                    problems.append(f"{where}: docstring of more than one line")
    return problems


def test_every_dataclass_field_has_a_one_line_docstring():
    problems = _dataclass_fields_without_one_line_docstring()
    assert not problems, "\n".join(problems)


def test_importing_the_plugin_changes_nothing_global():
    """nerfstudio imports every plugin before any ns-* command: importing ours (package, method configs, every
    module) must leave sys.excepthook, torch's safe-load allow-list (numpy scalars) and torch.hub as they were
    (other libraries we import may add their own classes to the allow-list); our commands,
    trainer, pipeline and data parsers install the hooks when they start."""
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, torch, numpy as np\n"
        "hook, download = sys.excepthook, torch.hub.download_url_to_file\n"
        "ours = lambda: [g for g in torch.serialization.get_safe_globals() if g is np._core.multiarray.scalar or "
        "(isinstance(g, tuple) and g[0] is np._core.multiarray.scalar)]\n"
        "import mald_nerfstudio, mald_nerfstudio.method_configs\n"
        "for m in pkgutil.walk_packages(mald_nerfstudio.__path__, 'mald_nerfstudio.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert sys.excepthook is hook, 'excepthook replaced'\n"
        "assert not ours(), 'numpy scalars allow-listed on import'\n"
        "assert torch.hub.download_url_to_file is download, 'torch.hub patched'\n"
        "from mald_nerfstudio.errors import install_run_hooks\n"
        "install_run_hooks()\n"
        "assert sys.excepthook is not hook and ours()\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
