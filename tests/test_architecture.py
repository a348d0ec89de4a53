"""House rules that keep the plugin light, its layers one-way and its algorithms pure.

The layering is the README's "Layout" section: each package may import only packages in
layers below it (or its own), and every folder named ``algorithms`` is pure — numpy in,
numpy/dataclasses out — with no FiftyOne or deep-learning import anywhere in it, nor in
anything it imports.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "ultralytics", "transformers", "open3d")
NOT_PRODUCT = {"tests", "benchmarks", "scripts", "build", "docs", ".ci", ".git"}

# Bottom to top; a package may import its own layer's package or any package lower down,
# but not a peer in the same layer.
LAYERS = [
    {"core"},
    {"quality"},
    {"selection", "training", "demo"},
    {"loop", "annotation"},
    {"operators"},
    {"panels"},
    {"__init__", "cli"},
]
LAYER_OF = {package: i for i, layer in enumerate(LAYERS) for package in layer}


def product_modules() -> dict[str, Path]:
    modules = {}
    for path in REPO_ROOT.rglob("*.py"):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[0] in NOT_PRODUCT or "__pycache__" in rel.parts:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = product_modules()


@cache
def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(third-party roots, in-package modules) that ``module`` imports, at any depth of its code."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if module == "__init__":
        package = []
    external, internal = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            external.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            external.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)]
            target = ".".join([*base, *([node.module] if node.module else [])])
            candidates = [f"{target}.{a.name}".strip(".") for a in node.names] + [target]
            internal.update(c for c in candidates if c in MODULES)
    return external, internal


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(imports_of(current)[1])
    return seen


PURE = sorted(m for m in MODULES if "algorithms" in m.split("."))


def test_every_stage_has_a_pure_algorithms_folder():
    assert {m.split(".")[0] for m in PURE} >= {"selection", "quality", "training", "demo", "loop"}


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_neither_fiftyone_nor_a_framework_at_any_depth(module):
    offenders = {
        reached: sorted(imports_of(reached)[0] & {"fiftyone", *HEAVY})
        for reached in reachable(module)
    }
    assert not {m: f for m, f in offenders.items() if f}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_its_own_package_or_lower_layers(module):
    own = module.split(".")[0]
    upward = sorted(
        target
        for target in imports_of(module)[1]
        if target.split(".")[0] != own and LAYER_OF[target.split(".")[0]] >= LAYER_OF[own]
    )
    assert not upward, f"{module} imports {upward}: same layer or above (see README, Layout)"


def test_every_product_package_has_a_layer():
    assert {m.split(".")[0] for m in MODULES} <= set(LAYER_OF)


def test_there_are_no_import_cycles():
    graph = {m: imports_of(m)[1] - {m} for m in MODULES}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in graph[node]:
            # A package's __init__ importing its own submodules is not a cycle of concepts.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycle.extend([*stack, node, nxt])
                return True
            if nxt not in state and visit(nxt, [*stack, node]):
                return True
        state[node] = 2
        return False

    for module in sorted(graph):
        if module not in state and visit(module, []):
            break
    assert not cycle, " -> ".join(cycle)


def test_registering_the_plugin_imports_no_deep_learning_framework():
    # FiftyOne re-imports the plugin for every operator call: it must stay cheap.
    code = (
        "import sys, annoloop\n"
        "class P:\n"
        "    def register(self, cls): pass\n"
        "annoloop.register(P())\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.stdout.strip() == ""


def test_the_wheel_lists_every_package_of_the_plugin():
    import tomllib

    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [m for m, path in MODULES.items() if path.name == "__init__.py" and m != "__init__"]
    assert set(setuptools["packages"]) == {"annoloop", *(f"annoloop.{m}" for m in packages)}
