"""The project's import graph (avkd/, trackers/, reports/), read with `ast`: no import circles, and
the core does not reach into tracking or reporting.

Every import counts, wherever it stands: at the top, inside a function (a "lazy" import still ties
the two modules together) and under `if TYPE_CHECKING:` (a circle of types is still a circle of design).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("avkd", "trackers", "reports")
# The core computes; only orchestration (avkd/sweep, the CLI) talks to MLflow or builds reports.
CORE = (
    "avkd.data",
    "avkd.features",
    "avkd.models",
    "avkd.training",
    "avkd.methods",
    "avkd.evaluation",
    "avkd.config",
    "avkd.errors",
    "avkd.runtime",
)
CORE_MAY_IMPORT = ("trackers", "trackers.schema")  # the names of the MLflow schema, nothing that logs
# Known exceptions, each with who removes it; the tests fail when one is no longer true, so the list
# only shrinks.
KNOWN_CIRCLES: set[frozenset[str]] = set()
KNOWN_CORE_IMPORTS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(p): p
        for pkg in PACKAGES
        for p in sorted((REPO / pkg).rglob("*.py"))
        if "out" not in p.relative_to(REPO).parts
    }


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (a package's own __init__ is not counted for its submodules)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a non-module name: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. the import circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_real_imports():
    graph = import_graph()
    assert {"avkd.sweep.driver", "reports.build", "reports.model", "trackers.schema"} <= set(graph)
    assert "trackers.schema" in graph["avkd.evaluation.score"]  # from trackers.schema import ...
    assert "reports.render" in graph["reports.build"]  # a lazy import inside build_report
    assert "avkd.data.load" in graph["avkd.sweep.driver"]  # a lazy import inside _load_dataset


def test_circle_finder_finds_circles():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    found = set(circles(import_graph()))
    new = [" -> ".join(sorted(c)) for c in found - KNOWN_CIRCLES]
    assert not new, f"import circles: {new}"
    gone = [" -> ".join(sorted(c)) for c in KNOWN_CIRCLES - found]
    assert not gone, f"no longer circles, remove them from KNOWN_CIRCLES: {gone}"


def test_core_does_not_import_tracking_or_reports():
    graph = import_graph()
    found = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith(CORE)
        for target in targets
        if target.startswith(("trackers", "reports")) and target not in CORE_MAY_IMPORT
    }
    assert not sorted(found - KNOWN_CORE_IMPORTS), "core modules importing trackers/reports beyond trackers.schema"
    assert not sorted(KNOWN_CORE_IMPORTS - found), "fixed: remove them from KNOWN_CORE_IMPORTS"
