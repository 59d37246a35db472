"""The import graph: no cycles anywhere, and no import that runs back up the layering.

Every import is counted, including those inside functions (they are how the code keeps DAG
parsing light, not a licence to loop); ``if TYPE_CHECKING:`` imports are not (they never run).
The layers, bottom to top:

1. the job (``batch_inference``): runs on the EMR nodes; imports nothing of ours but itself;
2. the Airflow package's core (``emr_inference``'s modules outside the folders below);
3. the shared operators (``emr_inference.operators``);
4. the backends (``emr_inference.emr``, ``emr_inference.local``): each knows only itself and the
   layers below, never the other backend; the core reaches them only through the registry
   (``emr_inference.backends``, by name);
5. the DAG builders (``emr_inference.factory``, ``emr_inference.sweeper_dag``);
6. ``dags/``, ``emr_inference_tools/``, ``bench/`` and the tests.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

#: import roots: the folder each top-level package of ours is imported from
ROOTS = {
    "batch_inference": REPO_ROOT / "spark_jobs",
    "emr_inference": REPO_ROOT / "plugins",
    "emr_inference_tools": REPO_ROOT,
    "bench": REPO_ROOT,
}
BACKENDS = ("emr_inference.emr", "emr_inference.local")
BUILDERS = ("emr_inference.factory", "emr_inference.sweeper_dag")
#: imports that cross the layering on purpose, each with its reason
ALLOWED = {
    ("emr_inference.artifacts", "emr_inference.emr.releases"): (
        "stage_job_artifacts stages the bootstrap files of the request's EMR release for every "
        "backend (a local rehearsal stages what EMR would get)"
    ),
    ("emr_inference.local.operators", "emr_inference.emr.sizing"): (
        "the local backend emulates an EMR cluster's Spark settings (local.emulate_cluster)"
    ),
}


def module_name(path: Path) -> str:
    """``emr_inference.emr.backend`` for plugins/emr_inference/emr/backend.py."""
    for package, root in ROOTS.items():
        if path.is_relative_to(root / package):
            parts = path.relative_to(root).with_suffix("").parts
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def modules() -> dict[str, Path]:
    """Every module of ours, by name."""
    found = {}
    for package, root in ROOTS.items():
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[module_name(path)] = path
    return found


MODULES = modules()


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except what sits under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_of(name: str) -> set[str]:
    """The modules of ours that ``name`` imports (``from a.b import c``: ``a.b.c`` when that is a
    module of ours, else ``a.b``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
                base = f"{base}.{node.module}" if node.module else base
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            if target in MODULES and target != name:
                found.add(target)
                break
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(name: str) -> int:
    """The layer of a module (see the module doc)."""
    package = name.split(".")[0]
    if package == "batch_inference":
        return 1
    if package != "emr_inference":
        return 6
    if name.startswith(BUILDERS):
        return 5
    if name.startswith(BACKENDS):
        return 4
    if name.startswith("emr_inference.operators"):
        return 3
    return 2


def backend_of(name: str) -> str | None:
    return next((backend for backend in BACKENDS if name.startswith(backend + ".")), None)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs back up the layering, or across from one backend to another."""
    problems = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            if (name, target) in ALLOWED:
                continue
            crosses = backend_of(name) and backend_of(target) not in (None, backend_of(name))
            if layer(target) > layer(name) or crosses:
                problems.append(f"{name} -> {target}")
    return problems


def test_the_graph_sees_our_packages_and_function_level_imports():
    assert "emr_inference.emr.operators" in GRAPH["emr_inference.emr.backend"]  # in a method
    assert "emr_inference.backend" in GRAPH["emr_inference.plan"]
    assert "emr_inference.resolved" not in GRAPH["emr_inference.backend"]  # TYPE_CHECKING only
    assert len(MODULES) > 100


def test_there_is_no_import_cycle():
    assert cycles(GRAPH) == []


def test_a_cycle_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_runs_back_up_the_layering():
    assert upward_imports(GRAPH) == []


@pytest.mark.parametrize(
    "edge",
    [
        ("batch_inference.job", "emr_inference.s3"),
        ("emr_inference.plan", "emr_inference.emr.prices"),
        ("emr_inference.s3", "emr_inference.operators.base"),
        ("emr_inference.local.cluster", "emr_inference.emr.cluster"),
        ("emr_inference.emr.operators", "emr_inference.factory"),
        ("emr_inference.config", "emr_inference_tools.plan"),
    ],
)
def test_an_upward_import_is_found(edge):
    name, target = edge
    assert upward_imports({name: {target}}) == [f"{name} -> {target}"]


def test_every_allowed_crossing_still_exists():
    assert [edge for edge in ALLOWED if edge[1] not in GRAPH[edge[0]]] == []
