"""The batch planner and its coverage / targeting split schedule, on plain arrays."""

import json

import numpy as np
import pytest

from annoloop.selection.algorithms import planner, split_schedule
from array_helpers import blobs


# Eight well-separated blobs of 40 rows; failures sit on blobs 0 (fn) and 1 (fp).
CENTRES = [[10.0 * (i % 4), 10.0 * (i // 4)] for i in range(8)]
POOL, BLOB = blobs(CENTRES, per_blob=40)
FAILURES = dict(
    failure_embeddings=np.asarray(CENTRES[:2], dtype=np.float32),
    failure_kinds=["fn", "fp"],
    failure_ids=["sample-a", "sample-b"],
)


# --- split schedule -------------------------------------------------------------------------


def test_schedule_is_all_coverage_at_cold_start_and_settles_at_30_percent():
    fractions = [split_schedule.scheduled_coverage_fraction(r) for r in range(5)]
    assert fractions == [1.0, 0.65, 0.3, 0.3, 0.3]


def test_split_counts_sum_to_the_budget_for_every_fraction():
    for budget in (1, 7, 10, 101):
        for fraction in (0.0, 0.3, 0.65, 1.0):
            split = split_schedule.decide_split(
                budget, round_index=3, n_failures=5, coverage_fraction=fraction
            )
            assert split.n_coverage + split.n_targeting == budget
            assert split.n_coverage == int(np.floor(budget * fraction + 0.5))


def test_explicit_fraction_overrides_the_schedule():
    split = split_schedule.decide_split(10, round_index=0, n_failures=3, coverage_fraction=0.3)
    assert (split.n_coverage, split.n_targeting, split.fallback_reason) == (3, 7, None)


def test_split_without_failures_falls_back_to_all_coverage_with_a_reason():
    split = split_schedule.decide_split(100, round_index=2, n_failures=0)
    assert (split.n_coverage, split.n_targeting, split.coverage_fraction) == (100, 0, 1.0)
    assert "no failure queries" in split.fallback_reason
    assert "30 coverage + 70 targeting" in split.fallback_reason


def test_cold_start_without_failures_is_not_a_fallback():
    assert split_schedule.decide_split(10, round_index=0).fallback_reason is None


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
def test_coverage_fraction_outside_zero_one_is_rejected(fraction):
    with pytest.raises(ValueError, match="coverage_fraction must lie in"):
        split_schedule.decide_split(10, n_failures=1, coverage_fraction=fraction)


def test_negative_round_is_rejected():
    with pytest.raises(ValueError, match="round_index must be an integer >= 0"):
        split_schedule.scheduled_coverage_fraction(-1)


# --- planner: shares and reasons ------------------------------------------------------------


def test_shares_are_exact_and_no_row_is_picked_twice():
    plan = planner.plan_batch(POOL, 20, coverage_fraction=0.3, **FAILURES)
    assert (plan.n_coverage, plan.n_targeting) == (6, 14)
    assert plan.source == ("targeting",) * 14 + ("coverage",) * 6
    assert len(np.unique(plan.indices)) == 20
    assert plan.indices.dtype == np.int64
    assert plan.fallback_reason is None


def test_schedule_gives_round_one_a_65_35_split():
    plan = planner.plan_batch(POOL, 20, round_index=1, **FAILURES)
    assert (plan.coverage_fraction, plan.n_coverage, plan.n_targeting) == (0.65, 13, 7)


def test_targeting_picks_lie_on_the_failures_and_fn_outweighs_fp():
    plan = planner.plan_batch(POOL, 20, coverage_fraction=0.0, **FAILURES)
    targeted = plan.indices[np.array(plan.source) == "targeting"]
    assert np.bincount(BLOB[targeted], minlength=8)[:2].tolist() == [15, 5]
    assert plan.near_failure.count("sample-a") == 15
    assert set(plan.near_failure_kind) == {"fn", "fp"}
    assert (plan.distance_to_failure < 0.5).all()
    np.testing.assert_allclose(plan.score, 1.0 / (1.0 + plan.distance_to_failure))


def test_kcenter_coverage_skips_clusters_that_are_already_labeled():
    labeled, _ = blobs(CENTRES[:6], per_blob=5, seed=1)  # fresh rows from blobs 0-5
    plan = planner.plan_batch(POOL, 2, labeled_embeddings=labeled, coverage_method="kcenter")
    assert sorted(BLOB[plan.indices].tolist()) == [6, 7]
    assert (plan.score > 5.0).all()  # each pick was far from every labeled row


def test_coverage_without_labels_spreads_over_all_clusters():
    plan = planner.plan_batch(POOL, 8)
    assert sorted(BLOB[plan.indices].tolist()) == list(range(8))


def test_coverage_does_not_recover_the_targeted_cluster():
    plan = planner.plan_batch(POOL, 8, coverage_fraction=0.5, **FAILURES)
    coverage = plan.indices[np.array(plan.source) == "coverage"]
    assert set(BLOB[coverage].tolist()).isdisjoint({0, 1})


def test_excluded_rows_are_never_picked_by_either_share():
    excluded = np.zeros(len(POOL), dtype=bool)
    excluded[BLOB == 0] = True  # the FN failure's own blob is off limits
    excluded[::3] = True
    for exclusion in (excluded, np.flatnonzero(excluded)):
        plan = planner.plan_batch(POOL, 60, coverage_fraction=0.3, excluded=exclusion, **FAILURES)
        assert not excluded[plan.indices].any()
        assert len(np.unique(plan.indices)) == 60


@pytest.mark.parametrize("kwargs", [dict(seed=7), dict(coverage_fraction=0.3, seed=7, **FAILURES)])
def test_plan_is_reproducible_for_a_seed(kwargs):
    first, second = planner.plan_batch(POOL, 25, **kwargs), planner.plan_batch(POOL, 25, **kwargs)
    np.testing.assert_array_equal(first.indices, second.indices)
    assert first.to_records() == second.to_records()
    assert first.seed == 7


def test_no_failures_means_all_coverage_with_a_fallback_reason():
    plan = planner.plan_batch(POOL, 10, round_index=2)
    assert (plan.n_coverage, plan.n_targeting, plan.coverage_fraction) == (10, 0, 1.0)
    assert "no failure queries" in plan.fallback_reason
    assert set(plan.source) == {"coverage"}


def test_coverage_fills_what_targeting_cannot():
    plan = planner.plan_batch(
        POOL, 20, coverage_fraction=0.0, neighbors_per_failure=4, **FAILURES
    )
    assert (plan.n_targeting, plan.n_coverage) == (8, 12)
    assert "targeting filled 8 of 20" in plan.fallback_reason
    assert len(np.unique(plan.indices)) == 20


def _near_duplicate_top_scores():
    """Six near-duplicate top scorers in blob 3, two lower scorers in blob 5, the rest 0."""
    scores = np.zeros(len(POOL))
    top, runner_up = np.flatnonzero(BLOB == 3)[:6], np.flatnonzero(BLOB == 5)[:2]
    scores[top] = 10.0 - 0.1 * np.arange(6)
    scores[runner_up] = 5.0
    return scores, top


def test_zcore_coverage_takes_the_best_score_then_skips_its_near_duplicates():
    scores, top = _near_duplicate_top_scores()
    plan = planner.plan_batch(POOL, 2, coverage_method="zcore", coverage_scores=scores)
    assert plan.indices[0] == top[0]
    assert BLOB[plan.indices[1]] == 5
    assert plan.coverage_method == "zcore"
    np.testing.assert_array_equal(plan.score, scores[plan.indices])


def test_zcore_coverage_skips_high_scores_that_are_already_labeled():
    scores, _ = _near_duplicate_top_scores()
    labeled, _ = blobs([CENTRES[3]], per_blob=3, seed=1)
    plan = planner.plan_batch(
        POOL, 1, coverage_method="zcore", coverage_scores=scores, labeled_embeddings=labeled
    )
    assert BLOB[plan.indices[0]] == 5


# --- planner: uncertainty targeting ---------------------------------------------------------


def _uncertainty(scores, **kwargs):
    return planner.plan_batch(
        POOL, kwargs.pop("budget", 2), targeting_source="uncertainty",
        uncertainty_scores=scores, **kwargs,
    )


def _scores_on_blob(blob, seed=0):
    """Positive uncertainty scores on one blob's rows, 0 elsewhere."""
    scores = np.zeros(len(POOL))
    rows = np.flatnonzero(BLOB == blob)
    scores[rows] = np.random.default_rng(seed).uniform(0.1, 3.0, size=len(rows))
    return scores


def test_uncertainty_targeting_opens_with_the_most_uncertain_row_and_records_why():
    scores = np.random.default_rng(2).uniform(0.0, 5.0, size=len(POOL))
    plan = _uncertainty(scores, budget=6, coverage_fraction=0.0)
    assert plan.indices[0] == np.argmax(scores)
    assert plan.source == ("targeting",) * 6 and plan.targeting_source == "uncertainty"
    records = json.loads(json.dumps(plan.to_records()))
    assert {r["score_kind"] for r in records} == {"uncertainty"}
    assert [r["score"] for r in records] == scores[plan.indices].tolist()
    assert {r["near_failure"] for r in records} == {None}
    assert plan.summary()["targeting_source"] == "uncertainty"


def test_uncertainty_targeting_skips_near_duplicates_of_an_earlier_pick():
    scores, top = _near_duplicate_top_scores()
    plan = _uncertainty(scores, budget=2, coverage_fraction=0.0)
    assert plan.indices[0] == top[0]
    assert BLOB[plan.indices[1]] == 5  # not the next near-duplicate in blob 3


def test_coverage_treats_uncertainty_picks_as_centres():
    plan = _uncertainty(_scores_on_blob(0), budget=8, coverage_fraction=0.5)
    targeted = plan.indices[np.array(plan.source) == "targeting"]
    coverage = plan.indices[np.array(plan.source) == "coverage"]
    assert set(BLOB[targeted].tolist()) == {0}
    assert 0 not in set(BLOB[coverage].tolist())


def test_rows_scoring_zero_are_never_targeted_and_coverage_fills_in():
    scores = np.zeros(len(POOL))
    uncertain_rows = np.flatnonzero(BLOB == 2)[:3]
    scores[uncertain_rows] = 1.0
    plan = _uncertainty(scores, budget=7, coverage_fraction=0.0)
    assert set(plan.indices[: plan.n_targeting]) == set(uncertain_rows)
    assert plan.n_targeting == len(uncertain_rows) and plan.n_coverage == 7 - len(uncertain_rows)
    assert f"targeting filled {len(uncertain_rows)} of 7" in plan.fallback_reason
    assert "uncertainty score above 0" in plan.fallback_reason


@pytest.mark.parametrize("scores", [np.zeros(len(POOL)), None], ids=["all-zero", "absent"])
def test_without_any_uncertainty_the_batch_is_all_coverage_and_says_why(scores):
    plan = _uncertainty(scores, budget=10, round_index=2)
    assert (plan.n_coverage, plan.n_targeting, plan.coverage_fraction) == (10, 0, 1.0)
    assert "no selectable pool row has an uncertainty score above 0" in plan.fallback_reason


def test_excluded_rows_are_never_targeted_however_uncertain():
    scores = _scores_on_blob(4)
    excluded = np.zeros(len(POOL), dtype=bool)
    excluded[np.argsort(-scores)[:10]] = True  # the ten most uncertain rows are off limits
    plan = _uncertainty(scores, budget=20, coverage_fraction=0.3, excluded=excluded)
    assert not excluded[plan.indices].any()
    assert plan.indices[0] == np.flatnonzero(~excluded)[np.argmax(scores[~excluded])]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(targeting_source="labels"), "targeting_source must be one of"),
        (
            dict(targeting_source="uncertainty", uncertainty_scores=-np.ones(len(POOL))),
            "uncertainty_scores has 320 negative values",
        ),
        (
            dict(targeting_source="uncertainty", uncertainty_scores=np.full(len(POOL), np.nan)),
            "uncertainty_scores has 320 NaN or inf values",
        ),
        (
            dict(targeting_source="uncertainty", uncertainty_scores=np.ones(3)),
            r"uncertainty_scores has shape \(3,\), expected \(320,\)",
        ),
        (
            dict(targeting_source="uncertainty", uncertainty_scores=np.ones(len(POOL)), **FAILURES),
            "2 failure embeddings given, but targeting_source is 'uncertainty'",
        ),
        (dict(uncertainty_scores=np.ones(len(POOL))), "targeting_source is 'failures'"),
    ],
    ids=["unknown-source", "negative", "nan", "shape", "failures-too", "scores-with-failures"],
)
def test_bad_uncertainty_targeting_input_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        planner.plan_batch(POOL, 2, coverage_fraction=0.0, **kwargs)


def test_records_are_json_serialisable_and_explain_each_pick():
    plan = planner.plan_batch(POOL, 10, coverage_fraction=0.3, **FAILURES)
    records = json.loads(json.dumps(plan.to_records()))
    assert [r["index"] for r in records] == plan.indices.tolist()
    assert records[0]["score_kind"] == "failure_similarity"
    assert records[0]["near_failure"] == "sample-a"
    assert records[-1] == {
        "index": int(plan.indices[-1]),
        "rank": 9,
        "source": "coverage",
        "score": float(plan.score[-1]),
        "score_kind": "typicality",
        "near_failure": None,
        "near_failure_kind": None,
        "distance_to_failure": None,
    }
    assert json.loads(json.dumps(plan.summary()))["n_targeting"] == 7


def test_plan_arrays_are_read_only():
    plan = planner.plan_batch(POOL, 3)
    with pytest.raises(ValueError):
        plan.indices[0] = 0


# --- planner: bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("budget", [0, -3])
def test_non_positive_budget_is_rejected(budget):
    with pytest.raises(ValueError, match="budget must be a positive number"):
        planner.plan_batch(POOL, budget)


def test_budget_above_the_selectable_pool_names_the_pool_size_and_the_maximum():
    with pytest.raises(ValueError, match=r"budget 300 exceeds the 280 selectable pool rows "
                                         r"\(320 rows, 40 excluded\); ask for at most 280"):
        planner.plan_batch(POOL, 300, excluded=BLOB == 0)


def _rows_with_nan_and_inf():
    bad = POOL[:3].copy()
    bad[0, 0], bad[2, 1] = np.nan, np.inf
    return bad


def test_nan_or_inf_pool_rows_are_rejected_with_the_row_count():
    with pytest.raises(ValueError, match="pool embeddings has 2 of 3 rows containing NaN or inf"):
        planner.plan_batch(_rows_with_nan_and_inf(), 1)


def test_nan_or_inf_labeled_rows_are_rejected_with_the_row_count():
    with pytest.raises(ValueError, match="labeled embeddings has 2 of 3 rows containing NaN"):
        planner.plan_batch(POOL, 1, labeled_embeddings=_rows_with_nan_and_inf())


def test_nan_or_inf_failure_rows_are_rejected_with_the_row_count():
    with pytest.raises(ValueError, match="failure embeddings has 2 of 3 rows containing NaN"):
        planner.plan_batch(
            POOL,
            2,
            failure_embeddings=_rows_with_nan_and_inf(),
            failure_kinds=["fn"] * 3,
            failure_ids=list("abc"),
        )


@pytest.mark.parametrize("name", ["labeled_embeddings", "failure_embeddings"])
def test_dimension_mismatch_with_the_pool_is_rejected(name):
    kwargs = {name: np.zeros((2, 5))}
    if name == "failure_embeddings":
        kwargs.update(failure_kinds=["fn", "fp"], failure_ids=["a", "b"])
    with pytest.raises(ValueError, match="dimension 5 but the pool embeddings have dimension 2"):
        planner.plan_batch(POOL, 2, **kwargs)


def test_failure_kinds_and_ids_must_align_with_the_embeddings():
    with pytest.raises(ValueError, match="2 failure embeddings but 1 kinds and 2 ids"):
        planner.plan_batch(POOL, 2, **{**FAILURES, "failure_kinds": ["fn"]})
    with pytest.raises(ValueError, match="need failure_kinds and failure_ids"):
        planner.plan_batch(POOL, 2, failure_embeddings=FAILURES["failure_embeddings"])


def test_unknown_coverage_method_is_rejected():
    with pytest.raises(ValueError, match="coverage_method must be one of"):
        planner.plan_batch(POOL, 2, coverage_method="uniform")


def test_zcore_without_scores_is_rejected():
    with pytest.raises(ValueError, match="needs coverage_scores"):
        planner.plan_batch(POOL, 2, coverage_method="zcore")


def test_excluded_indices_outside_the_pool_are_rejected():
    with pytest.raises(ValueError, match="1 excluded indices lie outside the 320 pool rows"):
        planner.plan_batch(POOL, 2, excluded=np.array([0, 320]))


def test_random_coverage_is_a_seeded_uniform_baseline_that_respects_exclusions():
    excluded = np.zeros(len(POOL), dtype=bool)
    excluded[::2] = True
    plan = planner.plan_batch(POOL, 50, coverage_method="random", excluded=excluded, seed=3)
    again = planner.plan_batch(POOL, 50, coverage_method="random", excluded=excluded, seed=3)
    other = planner.plan_batch(POOL, 50, coverage_method="random", excluded=excluded, seed=4)
    np.testing.assert_array_equal(plan.indices, again.indices)
    assert set(plan.indices) != set(other.indices)
    assert not excluded[plan.indices].any()
    assert len(np.unique(plan.indices)) == 50
    assert {r["score_kind"] for r in plan.to_records()} == {"random"}
