"""The bundle loads through FiftyOne's own plugin loader and its operators run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.executor import ExecutionError, ExecutionRunState

from fo_helpers import PLUGIN, queue_operator, run_on_worker, run_operator, unique_name, uri

REPO_ROOT = Path(__file__).resolve().parents[1]


def manifest() -> dict:
    return yaml.safe_load((REPO_ROOT / "fiftyone.yml").read_text())


def test_plugin_loads_without_errors():
    assert foo.OperatorRegistry().list_errors() == []


def test_every_operator_in_the_manifest_is_registered():
    registered = {op.uri for op in foo.list_operators(enabled=True)}
    listed = {uri(name) for name in manifest()["operators"]}
    assert listed, "the manifest lists no operators"
    assert listed <= registered, f"not registered: {sorted(listed - registered)}"


def test_every_registered_annoloop_operator_and_panel_is_in_the_manifest():
    # Panels are operators to FiftyOne's registry.
    registered = {op.name for op in foo.list_operators(enabled=True) if op.plugin_name == PLUGIN}
    assert registered == set(manifest()["operators"]) | set(manifest()["panels"] or [])


def test_load_demo_dataset_runs_through_the_executor():
    name = unique_name("demo")
    result = run_operator("load_demo_dataset", {"name": name, "num_scenes": 6, "seed": 3})
    assert result.result["dataset"] == name
    assert result.result["num_groups"] == 6
    dataset = fo.load_dataset(name)
    assert dataset.persistent
    assert sorted(dataset.group_slices) == ["left", "pcd", "right"]
    dataset.delete()


@pytest.mark.parametrize("num_scenes", [0, -4])
def test_load_demo_dataset_rejects_non_positive_scene_counts(num_scenes):
    name = unique_name("demo")
    with pytest.raises(ExecutionError, match="num_scenes"):
        run_operator("load_demo_dataset", {"name": name, "num_scenes": num_scenes})
    assert not fo.dataset_exists(name)


def test_load_demo_dataset_keeps_an_existing_dataset_without_overwrite():
    name = unique_name("demo")
    run_operator("load_demo_dataset", {"name": name, "num_scenes": 3})
    before = fo.load_dataset(name)
    ids = set(before.select_group_slices(_allow_mixed=True).values("id"))
    with pytest.raises(ExecutionError, match="overwrite"):
        run_operator("load_demo_dataset", {"name": name, "num_scenes": 5})
    after = fo.load_dataset(name)
    assert set(after.select_group_slices(_allow_mixed=True).values("id")) == ids
    after.delete()


@pytest.mark.slow
def test_load_demo_dataset_completes_on_a_delegated_worker():
    name = unique_name("demo-delegated")
    op_id = queue_operator("load_demo_dataset", {"name": name, "num_scenes": 4, "seed": 9})
    doc = run_on_worker(op_id)
    assert doc.run_state == ExecutionRunState.COMPLETED, doc.result
    dataset = fo.load_dataset(name)
    assert len(dataset.distinct("group.id")) == 4
    dataset.delete()


def test_simulate_annotation_labels_every_slice_of_the_view_through_the_executor():
    name = unique_name("demo")
    run_operator("load_demo_dataset", {"name": name, "num_scenes": 4, "seed": 5})
    dataset = fo.load_dataset(name)
    result = run_operator("simulate_annotation", {"batch": "batch:v1", "seed": 1}, dataset=dataset)
    assert result.result["num_samples"] == 12
    for slice_name in dataset.group_slices:
        labeled = dataset.select_group_slices(slice_name).exists("ground_truth")
        assert len(labeled) == 4, slice_name
    dataset.delete()


@pytest.mark.slow
def test_a_wheel_install_is_a_complete_package_and_a_loadable_plugin(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "wheel"), str(REPO_ROOT)],
        check=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("annoloop-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
    )
    assert (site / "annoloop" / "fiftyone.yml").is_file()
    # A fresh interpreter that sees only the installed copy, as a user's would.
    probe = (
        "import json, fiftyone.operators as foo, annoloop, annoloop.selection.algorithms.planner;"
        "assert annoloop.__file__.startswith(%r), annoloop.__file__;"
        "print(json.dumps(foo.OperatorRegistry().list_errors()));"
        "print(json.dumps([o.name for o in foo.list_operators() if o.plugin_name == %r]))"
    ) % (str(site), PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(site), "FIFTYONE_PLUGINS_DIR": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert json.loads(out[-2]) == []
    assert set(json.loads(out[-1])) == set(manifest()["operators"]) | set(manifest()["panels"])
