"""The README's main job: the whole loop, through the operators, on a tiny demo."""

from __future__ import annotations

import fiftyone as fo
import pytest

from annoloop.loop.demo_loop import LoopConfig, run_demo_loop
from annoloop.loop.report import comparison_table, ledger_table, write_report
from annoloop.selection.failures import evaluated_test_samples
from annoloop.selection.algorithms.planner import DEFAULT_COVERAGE_METHOD
from annoloop.selection.plan_record import plan_record
from annoloop.core.names import (
    BASELINE_LEDGER_INFO_KEY,
    LEDGER_INFO_KEY,
    MINING_EVAL_KEY,
    MINING_SPLIT_TAG,
    TEST_SPLIT_TAG,
)

from fo_helpers import unique_name

STRATEGIES = ("annoloop", "random", "uncertainty")


@pytest.fixture(scope="module")
def loop_run():
    config = LoopConfig(
        name=unique_name("loop"), scenes=30, rounds=2, budget=4, steps=2, imgsz=64,
        golden_scenes=3, zcore_samples=2_000, strategies=STRATEGIES, coverage_method="kcenter",
    )
    result = run_demo_loop(config, log=lambda *_: None)
    datasets = {
        s: fo.load_dataset(config.name if s == STRATEGIES[0] else f"{config.name}-{s}")
        for s in STRATEGIES
    }
    yield config, result, datasets
    for dataset in datasets.values():
        dataset.delete()


@pytest.mark.slow
def test_the_demo_loop_runs_every_round_of_every_strategy_and_writes_its_report(loop_run, tmp_path):
    config, result, datasets = loop_run
    for strategy in STRATEGIES:
        rounds = result["strategies"][strategy]["rounds"]
        assert [r["round"] for r in rounds] == [1, 2]
        assert [r["labels"] for r in rounds] == [config.budget, 2 * config.budget]
        assert all(r["n_coverage"] + r["n_targeting"] == config.budget for r in rounds)
    annoloop = datasets["annoloop"]
    assert len(annoloop.info[LEDGER_INFO_KEY]) == 2
    assert len(annoloop.info[BASELINE_LEDGER_INFO_KEY]) == 2
    assert "| random | 2 |" in ledger_table(result)
    assert "| uncertainty | 8 |" in comparison_table(result)
    written = write_report(result, str(tmp_path))
    assert all((tmp_path / name).is_file() for name in ("result.json", "map_vs_labels.png"))
    assert len(written) == 4


@pytest.mark.slow
def test_no_selection_input_of_any_strategy_is_computed_on_the_test_split(loop_run):
    _, result, datasets = loop_run
    for strategy, dataset in datasets.items():
        frozen = dataset.select_group_slices("left").match_tags([TEST_SPLIT_TAG, MINING_SPLIT_TAG])
        assert not any(t.startswith("batch:") for tags in frozen.values("tags") for t in tags)
        for r in result["strategies"][strategy]["rounds"]:
            params = plan_record(dataset, r["batch"])["params"]
            if params["eval_key"] is not None:
                assert params["eval_key"] == MINING_EVAL_KEY
                assert evaluated_test_samples(dataset, params["eval_key"]) == 0
    # The second round of the failure-targeting strategy used the mining split's evaluation;
    # the uncertainty strategy used the pool's predictions and no evaluation at all.
    annoloop_second = plan_record(datasets["annoloop"], "batch:v2")["params"]
    assert annoloop_second["eval_key"] == MINING_EVAL_KEY
    uncertainty_second = plan_record(datasets["uncertainty"], "batch:v2")["params"]
    assert uncertainty_second["targeting_source"] == "uncertainty"
    assert uncertainty_second["eval_key"] is None


def test_the_configured_coverage_method_reaches_every_plan_but_randoms(loop_run):
    _, _, datasets = loop_run
    for strategy, expected in (("annoloop", "kcenter"), ("uncertainty", "kcenter"), ("random", "random")):
        for batch in ("batch:v1", "batch:v2"):
            assert plan_record(datasets[strategy], batch)["params"]["coverage_method"] == expected


def test_the_loop_covers_as_plan_batch_does_unless_told_otherwise():
    assert LoopConfig().coverage_method == DEFAULT_COVERAGE_METHOD


def test_an_unknown_coverage_method_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="coverage_method must be one of"):
        LoopConfig(coverage_method="farthest")
