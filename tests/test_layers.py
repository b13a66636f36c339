"""The import graph, read statically (AST, nothing is imported): layers and no cycles.

Every ``import`` counts, at module level or inside a function (a function-level import still
ties two modules together; hiding a cycle inside a function only defers the failure).
Imports under ``if TYPE_CHECKING:`` are not run and are skipped.

The layers, lowest first; a module may import its own layer and the layers listed for it:

    errors → config, device, io            (files and settings; no models)
           → data, model → checkpoint      (datasets; the networks; save/load of the networks)
           → inference → evaluate → viz    (running a model; scoring it; drawing the results)
           → train → tools → cli           (training and jobs; bench/importer/eval reports; argparse)
    xtask_core/__init__, metrics, losses: the public import paths, re-exports only
    xtask_app (the app's package) → app_pages (the pages) → app.py (the router)
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("xtask_core", "xtask_app", "app_pages")

_BASE = {"errors"}
_IO = _BASE | {"config", "device", "io"}
_NETS = _IO | {"data", "model"}
_CKPT = _NETS | {"checkpoint"}
_INFER = _CKPT | {"inference"}
_EVAL = _INFER | {"evaluate"}
_VIZ = _EVAL | {"viz"}
_TRAIN = _VIZ | {"train"}
_TOOLS = _TRAIN | {"tools"}
CORE = _TOOLS | {"cli", "public"}
# layer → the layers its modules may import (its own layer is always allowed)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": _BASE,
    "device": _BASE,
    "io": _BASE,
    "data": _IO,
    "model": _IO,
    "checkpoint": _NETS,
    "inference": _CKPT,
    "evaluate": _INFER,
    "viz": _EVAL,
    "train": _VIZ,
    "tools": _TRAIN,
    "cli": _TOOLS | {"public"},  # the CLI reads __version__ from the package
    "public": _TRAIN,  # xtask_core/__init__, metrics, losses: re-exports of the layers' names
    "app": CORE,
    "pages": CORE | {"app"},
    "router": CORE | {"app"},
}
_PUBLIC = {"xtask_core", "xtask_core.metrics", "xtask_core.losses"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "xtask_app":
        return "app"
    if parts[0] == "app_pages":
        return "pages"
    if module == "app":
        return "router"
    if module in _PUBLIC:
        return "public"
    if module == "xtask_core.__main__":
        return "cli"
    return parts[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, module: str, is_package: bool):
    """Yield (imported module, line, at_function_level) for every project import in ``tree``."""
    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    yield from visit(sub, in_function)
                continue
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, in_function
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[:len(base) - child.level + 1]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                for alias in child.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{source}.{alias.name}"
                    yield (sub if _exists(sub) else source), child.lineno, in_function
            else:
                yield from visit(child, nested)

    for target, line, in_function in visit(tree, False):
        if target.split(".")[0] in PACKAGES + ("app",) and _exists(target):
            yield target, line, in_function


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, int, bool]]]:
    """(module → modules it imports, [(module, imported, line, function-level)])."""
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))] + [ROOT / "app.py"]
    graph: dict[str, set[str]] = {}
    edges = []
    for path in files:
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph.setdefault(module, set())
        for target, line, in_function in _imports(tree, module, path.name == "__init__.py"):
            if target != module:
                graph[module].add(target)
                edges.append((module, target, line, in_function))
    return graph, edges


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
    return cycles


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_graph_is_read(graph):
    modules, edges = graph
    assert {"xtask_core.checkpoint", "xtask_core.model.encoder", "xtask_app", "app"} <= set(modules)
    assert ("xtask_core.model.encoder", "xtask_core.io.tensorfile") in {(a, b) for a, b, _, _ in edges}
    assert all(layer_of(m) in ALLOWED for m in modules), sorted(m for m in modules if layer_of(m) not in ALLOWED)


def test_no_import_cycles(graph):
    assert find_cycles(graph[0]) == []


def test_cycle_finder_finds_a_cycle_through_a_function_level_import():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_every_import_follows_the_layers(graph):
    bad = [f"{a}:{line} imports {b} ({layer_of(a)} → {layer_of(b)})" for a, b, line, _ in graph[1]
           if layer_of(a) != layer_of(b) and layer_of(b) not in ALLOWED[layer_of(a)]]
    assert bad == []


def test_core_never_imports_the_app_and_the_app_package_never_imports_pages(graph):
    core_up = [(a, b) for a, b, _, _ in graph[1] if a.startswith("xtask_core") and
               b.split(".")[0] in ("xtask_app", "app_pages", "app")]
    app_up = [(a, b) for a, b, _, _ in graph[1] if a.startswith("xtask_app") and
              b.split(".")[0] in ("app_pages", "app")]
    assert core_up == [] and app_up == []


def test_layer_rules_catch_an_upward_import():
    assert "train" not in ALLOWED[layer_of("xtask_core.evaluate.split")]
    assert "app" not in ALLOWED[layer_of("xtask_core.cli")]
    assert layer_of("xtask_core.io.tensorfile") in ALLOWED[layer_of("xtask_core.model.encoder")]


def test_module_and_page_sizes():
    """Modules stay readable: ≤ 600 lines in the library and the app package, ≤ 200 per page."""
    limits = {"xtask_core": 600, "xtask_app": 600, "app_pages": 200}
    too_long = [f"{path.relative_to(ROOT)}: {n} lines > {limit}"
                for pkg, limit in limits.items() for path in sorted((ROOT / pkg).rglob("*.py"))
                if (n := len(path.read_text(encoding="utf-8").splitlines())) > limit]
    assert too_long == []


def test_no_sys_path_changes_in_product_code():
    """The project is installed; nothing outside tests puts folders on ``sys.path``."""
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))] + [ROOT / "app.py"]
    hits = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "path" and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys":
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert hits == []
