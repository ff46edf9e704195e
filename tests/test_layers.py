"""The package's shape: imports only point down, and data flows one way (suite -> encoder -> engine -> result ->
report). Read from the source (every import, function-level ones included), so an upward import added anywhere
fails here rather than as a cycle found by a user's import order."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xlir_bench"

# Each unit (a top-level module or subpackage of xlir_bench) may import only units listed before it.
ORDER = [
    "errors", "fileio", "readahead", "distributed", "provenance", "progress",  # leaves: no domain knowledge
    "suites", "plugins", "shards", "metrics",  # the data, the plugin protocols, the store, the measures
    "models",  # encoders: see suites and plugins' protocols, never the engine
    "engine",  # the one evaluation engine: sees models only through plugins
    "results", "cache", "measures", "compare", "runner",  # result documents and what reads them
    "report", "readme",  # renderings
    "api", "__init__", "training", "cli",  # entry points
]  # fmt: skip


def _unit(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__version__":
        return "__init__"
    return parts[1]


def _targets(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("xlir_bench.")]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    elif node.module and node.module.split(".")[0] == "xlir_bench":
        module = node.module
    else:
        return []
    if module == "xlir_bench" or not node.module:  # `from .. import x`: x is a unit (or the package's own name)
        return [f"{module}.{a.name}" for a in node.names]
    return [module]


def import_edges() -> dict[str, set[tuple[str, str]]]:
    """unit -> {(imported unit, file that imports it)} for every xlir_bench import between different units."""
    edges: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        source = _unit(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _targets(node, package):
                if _unit(target) != source:
                    edges[source].add((_unit(target), str(path.relative_to(PACKAGE.parent))))
    return edges


def test_every_unit_is_placed_in_the_order():
    units = {_unit(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in PACKAGE.glob("*.py")}
    units |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert units - {"__main__"} <= set(ORDER), sorted(units - set(ORDER))


def test_imports_only_point_down():
    rank = {unit: i for i, unit in enumerate(ORDER)}
    upward = sorted(
        f"{where} imports {target}: {source} may import only what ORDER lists before it"
        for source, targets in import_edges().items()
        for target, where in targets
        if rank.get(target, len(ORDER)) >= rank.get(source, len(ORDER))
    )
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The reader finds relative, absolute and function-level imports (so the test above can fail)."""
    fake = tmp_path / "xlir_bench"
    (fake / "engine").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "engine" / "__init__.py").write_text("from ..errors import XlirError\n")
    (fake / "engine" / "core.py").write_text("def f():\n    from ..report import html\n    import xlir_bench.cli\n")
    (fake / "errors.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    edges = import_edges()
    assert {target for target, _ in edges["engine"]} == {"errors", "report", "cli"}
