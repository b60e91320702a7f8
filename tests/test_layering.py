"""Package layering: generator < simulator < evaluation < cluster < trainer < inference, and no import cycle between modules.

Every import statement of every package module counts, also those inside functions (they run when
the function is called). Only ``if __name__ == "__main__":`` blocks are left out: they run when the
file is executed as ``__main__``, a module nothing imports. ``crystalstream_conf`` (conf/) is data.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("generator", "simulator", "evaluation", "cluster", "trainer", "inference")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_main_guard(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    t = node.test
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in t.comparators))


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Package modules imported by the file at ``path`` (resolved to the longest existing module name)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()

    def resolve(target: str) -> None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    def visit(node: ast.AST) -> None:
        if _is_main_guard(node):
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                resolve(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:   # "from pkg import module" imports pkg.module
                full = f"{base}.{a.name}"
                resolve(full if full in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph() -> dict[str, set[str]]:
    files = [f for layer in LAYERS for f in sorted((ROOT / layer).rglob("*.py"))]
    modules = {_module_name(f): f for f in files}
    return {m: _imports(f, set(modules)) for m, f in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(graph):
            if v not in index:
                strong(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert len(graph) > 40
    # inference.evaluate imports evaluation.metrics inside a function
    assert "evaluation.metrics" in graph["inference.evaluate"]
    assert "generator.statistics" in graph["generator.pipeline"]


def test_no_import_cycle():
    cycles = _cycles(import_graph())
    assert cycles == [], "import cycles between modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer", LAYERS)
def test_no_package_imports_one_above_it(layer):
    rank = {p: i for i, p in enumerate(LAYERS)}
    upward = sorted(f"{m} -> {t}" for m, targets in import_graph().items() if m.split(".")[0] == layer
                    for t in targets if rank[t.split(".")[0]] > rank[layer])
    assert upward == [], f"{layer} imports a package above it: {upward}"
