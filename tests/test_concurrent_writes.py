"""Two processes writing one dataset at the same instant leave it consistent."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

import annoloop
from annoloop.core.names import (
    BATCH_TAG_PREFIX,
    GOLDEN_SPLIT_TAG,
    MINING_SPLIT_TAG,
    TEST_SPLIT_TAG,
)
from annoloop.core.views import tagged_groups
from fo_helpers import python_process


@pytest.fixture(scope="module")
def embedded():
    dataset = annoloop.load_demo_dataset(f"race-{uuid.uuid4().hex[:8]}", num_scenes=24, seed=5)
    annoloop.compute_embeddings(dataset)
    yield dataset
    dataset.delete()


def in_parallel(setup: str, action: str, tmp_path, n: int = 2) -> list[str]:
    """Run ``action`` in ``n`` processes released together once each has run ``setup``;
    their last stdout lines."""
    go = tmp_path / "go"
    code = "\n".join(
        [
            "import os, sys, time",
            textwrap.dedent(setup),
            "print('ready', flush=True)",
            f"while not os.path.exists({str(go)!r}):",
            "    time.sleep(0.005)",
            textwrap.dedent(action),
        ]
    )
    procs = [python_process(code, "ready") for _ in range(n)]
    go.touch()
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * n
    return [out.strip().splitlines()[-1] for out in outputs]


@pytest.fixture
def fresh():
    dataset = annoloop.load_demo_dataset(f"race-{uuid.uuid4().hex[:8]}", num_scenes=24, seed=6)
    yield dataset
    dataset.delete()


def test_two_planners_at_once_claim_two_batches_with_disjoint_scenes(embedded, tmp_path):
    setup = f"""
        import json, annoloop, fiftyone as fo
        dataset = fo.load_dataset({embedded.name!r})
        annoloop.plan_batch  # imported before the race starts
        """
    action = """
        plan = annoloop.plan_batch(dataset, 3, embeddings_field="group_embedding")
        print(json.dumps([plan["batch"], plan["ids"]]))
        """
    plans = [json.loads(line) for line in in_parallel(setup, action, tmp_path)]
    names = sorted(name for name, _ in plans)
    assert names == [f"{BATCH_TAG_PREFIX}v1", f"{BATCH_TAG_PREFIX}v2"]
    first, second = (set(ids) for _, ids in plans)
    assert len(first) == len(second) == 3 and not first & second
    embedded.reload()
    for name, ids in plans:
        assert set(tagged_groups(embedded, [name])) == set(ids)


def test_two_split_draws_at_once_freeze_one_draw_and_refuse_the_other(fresh, tmp_path):
    setup = f"""
        import annoloop, fiftyone as fo
        dataset = fo.load_dataset({fresh.name!r})
        annoloop.create_splits  # imported before the race starts
        """
    action = """
        try:
            annoloop.create_splits(dataset, test=4, golden=2, mining=2)
            print("frozen")
        except ValueError as error:
            print("refused" if "already has frozen splits" in str(error) else repr(error))
        """
    assert sorted(in_parallel(setup, action, tmp_path)) == ["frozen", "refused"]
    fresh.reload()
    tags = (TEST_SPLIT_TAG, MINING_SPLIT_TAG, GOLDEN_SPLIT_TAG)
    splits = [set(tagged_groups(fresh, [tag])) for tag in tags]
    assert all(splits) and sum(map(len, splits)) == len(set().union(*splits))
