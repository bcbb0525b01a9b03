"""Layers point one way: no import cycle between the top-level areas of snnctl/ (artifact, training,
lm, conversion, ...), counting imports inside functions and relative imports too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "snnctl"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every module an AST imports (absolute, or relative resolved against `module`)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.append(target)
            found.extend(f"{target}.{alias.name}" for alias in node.names)  # `from snnctl import lm`
    return found


def area(module: str, top: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == top else None


def area_graph(root: Path) -> dict[str, set[str]]:
    """Edges between areas (the first name below the package) from every module's imports."""
    top = root.name
    edges: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        me = area(module, top)
        if me is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target in imported_modules(tree, module, path.name == "__init__.py"):
            other = area(target, top)
            if other is not None and other != me and ((root / other).exists() or (root / f"{other}.py").exists()):
                edges.setdefault(me, set()).add(other)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    done: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in stack:
            return [*stack[stack.index(node):], node]
        if node in done:
            return None
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        stack.pop()
        done.add(node)
        return None

    for start in sorted(edges):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_cycles_and_only_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"x": {"y"}, "y": {"y2"}, "y2": {"y"}}) == ["y", "y2", "y"]


def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "fake"
    for name in ("alpha", "beta", "gamma"):
        (pkg / name).mkdir(parents=True)
        (pkg / name / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "alpha" / "mod.py").write_text("def f():\n    from fake.beta import thing\n")
    (pkg / "beta" / "mod.py").write_text("from ..gamma import other\n")
    (pkg / "gamma" / "__init__.py").write_text("from . import local\nimport fake.alpha.mod\n")
    edges = area_graph(pkg)
    assert edges == {"alpha": {"beta"}, "beta": {"gamma"}, "gamma": {"alpha"}}
    assert find_cycle(edges) == ["alpha", "beta", "gamma", "alpha"]


def test_no_import_cycle_between_areas() -> None:
    cycle = find_cycle(area_graph(PACKAGE))
    assert cycle is None, "import cycle between areas of snnctl/: " + " -> ".join(cycle or [])


def test_artifact_imports_nothing_above_the_zoo() -> None:
    edges = area_graph(PACKAGE)
    above = {"conversion", "robust", "lm", "training", "backends", "metrics"}
    assert not edges.get("artifact", set()) & above
    assert not edges.get("manifest", set()) & above
