"""The package is a stack of layers (docs/architecture.md, "Map"): each module imports only its
own layer and those below, never one above, not even lazily inside a function or under
`TYPE_CHECKING`, and no import cycle exists. The graph is read from the source with `ast`, so
it sees every import statement, wherever it stands.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.quick

PACKAGE = Path(__file__).resolve().parents[1] / "sweepjax"

# Lowest first. A module's layer is its package; the modules at the top level sit on top, but
# for the common ones every layer uses: the failure kinds and files written whole.
LAYERS = ["common", "search", "engine", "sweep", "integrations", "report", "runner", "command"]
COMMON = ("sweepjax.errors", "sweepjax.files")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS[1:-1]):
        return parts[1]
    return "common" if module in COMMON else "command"


def imported_modules(module: str) -> set[str]:
    """Every sweepjax module `module` imports, at any depth of its source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("sweepjax") and target != module:
                found.add(target)
    return found - _packages_of(module)


def _packages_of(module: str) -> set[str]:
    """A module's enclosing packages: importing `a.b.c` runs `a/__init__` and `a/b/__init__`."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


GRAPH = {module: imported_modules(module) for module in MODULES}


def test_the_graph_sees_lazy_and_type_checking_imports():
    """The reader itself, on a module written for it: imports in a function, under
    `TYPE_CHECKING`, relative ones and `import a.b` forms all count."""
    source = PACKAGE / "engine" / "_probe_for_test.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from sweepjax.sweep.config import Config\n"
        "def f():\n    import sweepjax.report.read\n    from ..runner import training\n"
        "    from . import data\n"
    )
    try:
        MODULES["sweepjax.engine._probe_for_test"] = source
        found = imported_modules("sweepjax.engine._probe_for_test")
    finally:
        del MODULES["sweepjax.engine._probe_for_test"]
        source.unlink()
    assert found == {
        "sweepjax.sweep.config",
        "sweepjax.report.read",
        "sweepjax.runner",
        "sweepjax.runner.training",
        "sweepjax.engine.data",
    }


def test_every_module_belongs_to_a_known_layer():
    assert len(MODULES) > 60
    packages = {m.split(".")[1] for m in MODULES if m.count(".") >= 2}
    assert packages <= set(LAYERS), packages - set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_its_own(module):
    rank = LAYERS.index(layer_of(module))
    upward = sorted(t for t in GRAPH[module] if LAYERS.index(layer_of(t)) > rank)
    assert not upward, f"{module} ({layer_of(module)}) imports {upward} from a layer above"


def test_the_import_graph_has_no_cycle():
    """Depth-first search with colours: meeting a grey module again closes a cycle."""
    colour = dict.fromkeys(GRAPH, "white")
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        colour[module] = "grey"
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if colour[target] == "grey":
                return stack[stack.index(target) :] + [target]
            if colour[target] == "white" and (cycle := visit(target)):
                return cycle
        stack.pop()
        colour[module] = "black"
        return None

    for module in sorted(GRAPH):
        if colour[module] == "white" and (cycle := visit(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_layer_map_in_the_docs_matches_the_packages():
    """docs/architecture.md names every package of the map, in the layers' order."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    positions = [text.find(f"`sweepjax/{layer}/`") for layer in LAYERS[1:-1]]
    assert -1 not in positions and positions == sorted(positions), positions


def test_the_map_names_every_module():
    """A reader finds any concept from the map: every module file is named in it."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    text = text[: text.index("## Invariants")]
    missing = [
        m for m, p in MODULES.items() if p.name != "__init__.py" and f"`{p.name}`" not in text
    ]
    assert not missing, missing
