"""House rules that keep the plugin light and its algorithms testable on plain arrays."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ultralytics", "transformers", "open3d")

# Pure cores: numpy in, numpy/dataclasses out; no FiftyOne, no deep-learning framework.
PURE_MODULES = sorted(
    str(p.relative_to(REPO_ROOT))
    for pattern in (
        "quality/iou.py",
        "quality/matching.py",
        "quality/metrics.py",
        "quality/drift.py",
        "quality/schema_rules.py",
        "quality/splits.py",
        "selection/kcenter.py",
        "selection/zcore.py",
        "selection/zcore_reference.py",
        "selection/planner.py",
        "selection/targeting.py",
        "selection/split_schedule.py",
        "selection/embeddings/image_baseline.py",
        "demo/scenes.py",
        "demo/camera.py",
        "demo/render.py",
        "demo/pointcloud.py",
        "demo/annotator.py",
        "training/ledger.py",
        "loop/efficiency.py",
        "selection/uncertainty.py",
    )
    for p in REPO_ROOT.glob(pattern)
)


def top_level_imports(path: Path) -> set[str]:
    """Root package names imported at module level (imports inside functions are allowed)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_core_module_imports_neither_fiftyone_nor_torch(module):
    forbidden = top_level_imports(REPO_ROOT / module) & {"fiftyone", *HEAVY}
    assert not forbidden, f"{module} imports {sorted(forbidden)}"


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
