"""The SDK surface: ``import annoloop`` gives one function per user action, loaded lazily."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid

import pytest

import annoloop
from annoloop.core.names import FROZEN_SPLIT_TAGS
from annoloop.core.views import tagged_groups


@pytest.mark.parametrize("name", sorted(annoloop._SDK))
def test_each_sdk_name_is_its_documented_implementation(name):
    module, attribute = annoloop._SDK[name]
    implementation = getattr(importlib.import_module(f"annoloop.{module}"), attribute)
    assert getattr(annoloop, name) is implementation
    assert "Parameters" in (implementation.__doc__ or "") or isinstance(implementation, type)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'plan_batches'"):
        annoloop.plan_batches  # noqa: B018


def test_importing_the_package_loads_no_implementation_until_a_name_is_used():
    code = (
        "import sys, annoloop\n"
        "print('annoloop.selection.batches' in sys.modules)\n"
        "annoloop.plan_batch\n"
        "print('annoloop.selection.batches' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.stdout.split() == ["False", "True"]


def test_the_readme_flow_plans_a_batch_outside_the_frozen_splits():
    dataset = annoloop.load_demo_dataset(f"sdk-{uuid.uuid4().hex[:8]}", num_scenes=16, seed=3)
    try:
        annoloop.compute_embeddings(dataset)
        annoloop.compute_zcore(dataset, params=annoloop.ZCoreParams(n_sample=2000, redund_nn=5))
        annoloop.create_splits(dataset, test=4, golden=2, mining=2)
        plan = annoloop.plan_batch(dataset, 4, embeddings_field="group_embedding")
        frozen = set(tagged_groups(dataset, FROZEN_SPLIT_TAGS))
        assert frozen and len(plan["ids"]) == 4
        assert not frozen & set(plan["ids"])
    finally:
        dataset.delete()
