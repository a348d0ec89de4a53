"""The README's main job: the whole loop, through the operators, on a tiny demo."""

from __future__ import annotations

import fiftyone as fo
import pytest

from annoloop.loop.demo_loop import LoopConfig, run_demo_loop
from annoloop.loop.report import ledger_table, write_report
from annoloop.training.constants import BASELINE_LEDGER_INFO_KEY, LEDGER_INFO_KEY, TEST_SPLIT_TAG

from fo_helpers import unique_name


@pytest.mark.slow
def test_the_demo_loop_runs_every_round_for_both_strategies_and_writes_its_report(tmp_path):
    config = LoopConfig(
        name=unique_name("loop"), scenes=24, rounds=2, budget=4, epochs=1, imgsz=64,
        golden_scenes=3, zcore_samples=2_000,
    )
    result = run_demo_loop(config, log=lambda *_: None)

    for strategy in ("annoloop", "random"):
        rounds = result["strategies"][strategy]["rounds"]
        assert [r["round"] for r in rounds] == [1, 2]
        assert all(r["n_coverage"] + r["n_targeting"] == config.budget for r in rounds)
    annoloop = fo.load_dataset(config.name)
    assert len(annoloop.info[LEDGER_INFO_KEY]) == 2
    assert len(annoloop.info[BASELINE_LEDGER_INFO_KEY]) == 2
    # The frozen test set never received a batch tag.
    test = annoloop.select_group_slices("left").match_tags(TEST_SPLIT_TAG)
    assert not any(t.startswith("batch:") for tags in test.values("tags") for t in tags)
    assert "| random | 2 |" in ledger_table(result)
    written = write_report(result, str(tmp_path))
    assert all((tmp_path / name).is_file() for name in ("result.json", "map_vs_labels.png"))
    assert len(written) == 4
    fo.delete_dataset(config.name)
    fo.delete_dataset(f"{config.name}-random")
