"""The layout's rules that hold today, checked on the source so a regression fails (imports, sizes, stages).

Import circles are found in the module-level imports (``if TYPE_CHECKING:`` blocks included:
they are circles a type checker walks too), and again with the imports inside functions, so
that a function-level import cannot hide one.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "transforms")
PIPELINE_TOP_LEVEL_MAX = 8
BEAM_BASES = {"DoFn", "PTransform"}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _top_level_imports(tree: ast.Module, name: str, is_package: bool, *, in_functions: bool = False) -> list[str]:
    """Dotted names imported by code that runs at import time (and, with `in_functions`, inside functions)."""
    out: list[str] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not in_functions:
            continue
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            out.append(base)
            out.extend(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _graph(*, in_functions: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for imported in _top_level_imports(tree, name, path.name == "__init__.py", in_functions=in_functions):
            # `import a.b.c` runs a, a.b and a.b.c; `from a.b import c` names a module or an attribute.
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in modules and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_project_imports():
    # Guards the checker itself: if it stopped resolving imports, "no cycle" would pass vacuously.
    graph = _graph()
    assert "pipeline.fetch.ytdlp" in graph["pipeline.fetch.clips"]
    assert "pipeline.read.annotations" in graph["transforms.decode"]
    assert "transforms.support.fetch_rows" in graph["transforms.fetch"]
    assert "pipeline.features.audio" not in graph["transforms.decode"]  # imported in a function only
    assert "pipeline.features.audio" in _graph(in_functions=True)["transforms.decode"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_project_modules():
    assert _cycles(_graph()) == []


def test_no_import_inside_a_function_dodges_a_cycle():
    # Imports inside functions are fine for start-up cost, but not as a way around a circle.
    assert _cycles(_graph(in_functions=True)) == []


def test_pipeline_top_level_holds_at_most_eight_modules():
    top = sorted(p.name for p in (ROOT / "pipeline").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= PIPELINE_TOP_LEVEL_MAX, top


def test_transforms_top_level_holds_only_beam_stages():
    not_stages = []
    for path in sorted((ROOT / "transforms").glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        bases = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", None)
                 for node in tree.body if isinstance(node, ast.ClassDef) for b in node.bases}
        if not bases & BEAM_BASES:
            not_stages.append(path.name)
    assert not_stages == [], f"not a Beam stage (move it to transforms/support/): {not_stages}"


def _hand_built_failure_lines(tree: ast.AST) -> list[int]:
    """Lines of dict displays or dict(...) calls that carry both a "reason" and a "stage"."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            keys = {k.arg for k in node.keywords}
        else:
            continue
        if {"reason", "stage"} <= keys:
            lines.append(node.lineno)
    return lines


def test_failure_lines_are_built_by_one_constructor():
    # elements.Failure.of redacts credentials; a line built by hand elsewhere would skip that.
    sample = 'x = {"id": 1, "stage": "s", "reason": "r"}\ny = dict(stage=1, reason=2)'
    assert _hand_built_failure_lines(ast.parse(sample)) == [1, 2]
    found = {}
    for name, path in _modules().items():
        if name != "pipeline.elements":
            lines = _hand_built_failure_lines(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
            if lines:
                found[name] = lines
    assert found == {}, f"failure lines built by hand (use pipeline.elements.Failure.of): {found}"


MODULE_MAX_LINES = 500
FUNCTION_MAX_LINES = 80


def test_no_module_over_500_lines_and_no_function_over_80():
    long_modules, long_functions = [], []
    for name, path in _modules().items():
        text = path.read_text()
        if text.count("\n") > MODULE_MAX_LINES:
            long_modules.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_MAX_LINES:
                    long_functions.append(f"{name}.{node.name}: {length} lines")
    assert long_modules == [] and long_functions == [], (long_modules, long_functions)
