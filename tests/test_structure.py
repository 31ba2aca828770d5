"""The package's shape: control runs one way (no module imports one that imports it back) and every config field
has the one-line docstring that ``ns-train --help`` prints."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mald_nerfstudio"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(path: Path, modules: Set[str]) -> Set[str]:
    """Package modules ``path`` imports anywhere (module level or inside functions), except under TYPE_CHECKING."""
    found: Set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
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
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: _runtime_imports(path, set(files)) - {name} for name, path in files.items()}


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


def test_the_import_check_sees_an_import_inside_a_function_and_the_cycle_it_closes(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import b\n")
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import c\ndef f():\n    from a import x\n")
    graph = {"a": _runtime_imports(a, {"a", "b", "c"}), "b": _runtime_imports(b, {"a", "b", "c"})}
    assert graph == {"a": {"b"}, "b": {"a"}}
    assert _cycles(graph) == ["a -> b -> a", "b -> a -> b"]


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
