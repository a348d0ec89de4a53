"""compute_zcore on the grouped demo dataset, through FiftyOne's operator executor."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone import ViewField as F
from fiftyone.operators.executor import ExecutionError, ExecutionRunState

from annoloop.demo.dataset import load_demo_dataset
from annoloop.selection.embed import compute_embeddings
from annoloop.selection.scoring import (
    ZCORE_RUN_METHOD,
    compute_zcore,
    zcore_run,
    zcore_run_key,
)
from annoloop.selection.algorithms.zcore import ZCoreParams, zcore_scores
from fo_helpers import (
    form_properties,
    queue_operator,
    run_on_worker,
    run_operator,
    schedules_by_default,
    unique_name,
    uri,
)

NUM_SCENES = 12
SLICES = ("left", "right", "pcd")
#: Small but real: 20k draws, and every other neighbour penalised.
SMALL = {"n_sample": 20_000, "redund_nn": 6, "seed": 0, "delegate": False}


@pytest.fixture(scope="module")
def embedded():
    """The demo dataset with per-slice and scene embeddings (baseline model, no objects)."""
    dataset = load_demo_dataset(unique_name("zcore-demo"), num_scenes=NUM_SCENES, seed=3)
    compute_embeddings(dataset)
    yield dataset
    dataset.delete()


@pytest.fixture
def pool(embedded):
    dataset = embedded.clone(unique_name("zcore"))
    yield dataset
    dataset.delete()


@pytest.fixture(scope="module")
def scored(embedded):
    """A copy scored once through the operator with the defaults (scene embedding)."""
    dataset = embedded.clone(unique_name("zcore-scored"))
    result = run_operator("compute_zcore", SMALL, dataset=dataset).result
    yield dataset, result
    dataset.delete()


def scores_by_group(dataset, field: str = "zcore") -> dict[str, dict[str, float]]:
    """group id -> slice -> score, over every slice's samples."""
    out: dict[str, dict[str, float]] = {}
    for slice_name in SLICES:
        gids, scores = dataset.select_group_slices(slice_name).values(["group.id", field])
        for gid, score in zip(gids, scores):
            out.setdefault(gid, {})[slice_name] = score
    return out


def slice_matrix(dataset, slice_name: str, field: str) -> tuple[list[str], np.ndarray]:
    """Group ids (sorted) and ``field`` of their samples on ``slice_name``, in that order."""
    gids, vectors = dataset.select_group_slices(slice_name).values(["group.id", field])
    order = np.argsort(gids)
    return [gids[i] for i in order], np.stack([vectors[i] for i in order])


def assert_nothing_written(dataset, field: str = "zcore") -> None:
    assert dataset.get_field(field) is None
    assert not dataset.has_run(zcore_run_key(field))


def test_every_slice_of_a_scene_gets_the_scene_score(scored):
    dataset, result = scored
    assert result["unit"] == "group" and result["n"] == NUM_SCENES
    assert result["samples_written"] == NUM_SCENES * len(SLICES)
    by_group = scores_by_group(dataset)
    assert len(by_group) == NUM_SCENES
    for per_slice in by_group.values():
        assert set(per_slice) == set(SLICES)
        assert len(set(per_slice.values())) == 1, per_slice
    values = [s["left"] for s in by_group.values()]
    assert min(values) == 0.0 and max(values) == 1.0
    assert isinstance(dataset.get_field("zcore"), fo.FloatField)


def test_scene_scores_equal_zcore_on_the_scene_embeddings(scored, embedded):
    dataset, _ = scored
    gids, x = slice_matrix(embedded, "left", "group_embedding")
    expected = zcore_scores(x, ZCoreParams(n_sample=20_000, redund_nn=6, seed=0))
    by_group = scores_by_group(dataset)
    np.testing.assert_allclose([by_group[g]["pcd"] for g in gids], expected, atol=1e-12)


def test_the_run_record_holds_parameters_fields_size_backend_and_time(scored):
    dataset, result = scored
    assert dataset.list_runs(method=ZCORE_RUN_METHOD) == [zcore_run_key("zcore")]
    record = zcore_run(dataset, "zcore")
    assert record["embeddings_fields"] == ["group_embedding"]
    assert record["blocks"] == [
        {"field": "group_embedding", "slices": list(SLICES), "dim": record["dim"]}
    ]
    assert record["params"] == {
        "n_sample": 20_000,
        "sample_dim": 2,
        "redund_nn": 6,
        "redund_exp": 4,
        "rand_init": True,
        "seed": 0,
        "n_workers": min(8, os.cpu_count() or 1),  # the form's default, also without a form
    }
    assert record["n"] == NUM_SCENES and record["backend"] == "numpy"
    assert record["device"] == "cpu" and record["seconds"] >= record["scoring_seconds"] > 0
    assert result["run_key"] == "annoloop_zcore_zcore"
    assert "Color by" in result["next_step"]


def test_scores_are_deterministic_for_a_seed_and_change_with_it(scored, pool):
    first, _ = scored
    run_operator("compute_zcore", SMALL, dataset=pool)
    assert scores_by_group(pool) == scores_by_group(first)
    run_operator("compute_zcore", {**SMALL, "seed": 1, "overwrite": True}, dataset=pool)
    assert scores_by_group(pool) != scores_by_group(first)
    assert zcore_run(pool)["params"]["seed"] == 1


def test_a_second_run_without_overwrite_is_refused_and_keeps_the_scores(pool):
    run_operator("compute_zcore", SMALL, dataset=pool)
    before = scores_by_group(pool)
    with pytest.raises(ExecutionError, match=r"'zcore' already holds ZCore scores \(36 samples\)"):
        run_operator("compute_zcore", {**SMALL, "seed": 5}, dataset=pool)
    assert scores_by_group(pool) == before
    assert zcore_run(pool)["params"]["seed"] == 0


def test_overwrite_on_a_view_clears_the_scores_left_outside_it(pool):
    run_operator("compute_zcore", SMALL, dataset=pool)
    half = pool.match(F("scene_index") < NUM_SCENES // 2)
    result = run_operator("compute_zcore", {**SMALL, "overwrite": True}, dataset=pool, view=half)
    assert result.result["n"] == NUM_SCENES // 2
    scores = [s for per_slice in scores_by_group(pool).values() for s in per_slice.values()]
    assert sum(s is not None for s in scores) == len(SLICES) * NUM_SCENES // 2


def test_per_slice_embeddings_are_concatenated_per_scene_in_slice_order(embedded):
    dataset = embedded.clone(unique_name("zcore"))
    try:
        params = ZCoreParams(n_sample=5_000, redund_nn=6, seed=2)
        record = compute_zcore(dataset, embeddings_fields="embedding", params=params)
        blocks = [(b["field"], b["slices"]) for b in record["blocks"]]
        assert blocks == [("embedding", ["left"]), ("embedding", ["right"]), ("embedding", ["pcd"])]
        gids, left = slice_matrix(dataset, "left", "embedding")
        parts = [left] + [slice_matrix(dataset, s, "embedding")[1] for s in ("right", "pcd")]
        assert record["dim"] == sum(p.shape[1] for p in parts)
        expected = zcore_scores(np.concatenate(parts, axis=1), params)
        by_group = scores_by_group(dataset)
        np.testing.assert_allclose([by_group[g]["right"] for g in gids], expected, atol=1e-12)
    finally:
        dataset.delete()


def test_per_slice_scoring_normalises_each_slice_on_its_own(pool):
    result = run_operator(
        "compute_zcore",
        {
            **SMALL,
            "n_sample": 5_000,
            "group_score": False,
            "embeddings_fields": ["embedding"],
            "score_field": "zc",
        },
        dataset=pool,
    ).result
    assert result["unit"] == "slice sample" and result["n"] == NUM_SCENES * len(SLICES)
    assert sorted(result["slices"]) == sorted(SLICES)
    by_group = scores_by_group(pool, "zc")
    for slice_name in SLICES:
        values = [s[slice_name] for s in by_group.values()]
        assert min(values) == 0.0 and max(values) == 1.0
    assert any(len(set(s.values())) > 1 for s in by_group.values())


def test_two_embedding_fields_are_concatenated_like_two_models(embedded):
    dataset = embedded.clone(unique_name("zcore"))
    try:
        params = ZCoreParams(n_sample=5_000, redund_nn=6, seed=3)
        record = compute_zcore(
            dataset, embeddings_fields=["group_embedding", "embedding"], params=params
        )
        assert [b["field"] for b in record["blocks"]] == ["group_embedding"] + ["embedding"] * 3
        assert record["dim"] == sum(b["dim"] for b in record["blocks"])
    finally:
        dataset.delete()


def test_the_torch_backend_gives_nearly_the_numpy_scores_and_is_recorded(scored, embedded):
    dataset = embedded.clone(unique_name("zcore"))
    try:
        params = ZCoreParams(n_sample=20_000, redund_nn=6, seed=0)
        record = compute_zcore(dataset, params=params, backend="torch", device="cpu")
        assert (record["backend"], record["device"]) == ("torch", "cpu")
        numpy_scores, torch_scores = scores_by_group(scored[0]), scores_by_group(dataset)
        # Not exactly: the histogram features hold many exact ties, which torch.topk may
        # break differently at the redund_nn-th neighbour.
        for gid, per_slice in numpy_scores.items():
            assert torch_scores[gid]["left"] == pytest.approx(per_slice["left"], abs=1e-3)
    finally:
        dataset.delete()


def test_the_numpy_backend_refuses_a_device_other_than_the_cpu(pool):
    with pytest.raises(ValueError, match="numpy backend runs on device 'cpu'"):
        compute_zcore(pool, backend="numpy", device="cuda")


def test_an_unknown_backend_is_refused_before_anything_is_read(pool):
    with pytest.raises(ValueError, match=r"backend must be one of \['auto', 'numpy', 'torch'\]"):
        compute_zcore(pool, backend="jax")
    assert_nothing_written(pool)


# Bad input: a clear error naming the field and the count, and nothing written.


def test_missing_embeddings_on_some_samples_are_refused(pool):
    left = pool.select_group_slices("left")
    ids = left.values("id")[:3]
    left.select(ids).set_field("group_embedding", None).save()
    with pytest.raises(
        ExecutionError, match=r"'group_embedding' is missing on 3 of 12 samples on slice 'left'"
    ):
        run_operator("compute_zcore", SMALL, dataset=pool)
    assert_nothing_written(pool)


def test_vectors_of_different_lengths_are_refused(pool):
    right = pool.select_group_slices("right")
    ids = right.values("id")[:2]
    right.set_values("embedding", {i: np.ones(7, np.float32) for i in ids}, key_field="id")
    with pytest.raises(
        ExecutionError, match=r"'embedding' has vectors of 2 different lengths on slice 'right'"
    ):
        run_operator("compute_zcore", {**SMALL, "embeddings_fields": ["embedding"]}, dataset=pool)
    assert_nothing_written(pool)


def test_an_empty_view_is_refused(pool):
    empty = pool.match(F("scene_index") < 0)
    with pytest.raises(ExecutionError, match="no samples to score"):
        run_operator("compute_zcore", SMALL, dataset=pool, view=empty)
    assert_nothing_written(pool)


@pytest.mark.parametrize(
    "field, kind", [("scene_id", "StringField"), ("tags", "ListField of StringField")]
)
def test_a_non_numeric_field_is_refused(pool, field, kind):
    with pytest.raises(ExecutionError, match=f"'{field}' is a {kind}, not a numeric vector"):
        run_operator("compute_zcore", {**SMALL, "embeddings_fields": [field]}, dataset=pool)
    assert_nothing_written(pool)


def test_non_finite_embeddings_are_refused_with_the_row_count(pool):
    left = pool.select_group_slices("left")
    ids = left.values("id")[:2]
    bad = np.full(pool.select_group_slices("left").first().embedding.shape, np.nan, np.float32)
    left.set_values("embedding", {i: bad for i in ids}, key_field="id")
    with pytest.raises(ValueError, match=r"'embedding' on slice\(s\) \['left'\].*2 of 12 rows"):
        compute_zcore(pool, embeddings_fields="embedding", params=ZCoreParams(n_sample=100))
    assert_nothing_written(pool)


def test_an_unknown_field_is_refused_with_the_vector_fields_on_offer(pool):
    offered = r"\['embedding', 'group_embedding'\]"
    with pytest.raises(ValueError, match=rf"'clip' does not exist .*{offered}"):
        compute_zcore(pool, embeddings_fields="clip")
    assert_nothing_written(pool)


def test_a_score_field_of_another_type_is_refused(pool):
    with pytest.raises(ValueError, match="score_field 'scene_id' already exists as a StringField"):
        compute_zcore(pool, score_field="scene_id")


@pytest.mark.parametrize(
    "name, value, low",
    [
        ("n_sample", 0, 1),
        ("sample_dim", 0, 1),
        ("redund_nn", -3, 1),
        ("redund_exp", -1, 0),
        ("seed", -1, 0),
        ("n_workers", 0, 1),
    ],
)
def test_an_out_of_range_zcore_setting_is_refused_naming_it_its_value_and_its_range(
    pool, name, value, low
):
    expected = rf"{name} must be an integer >= {low}, got {value} .*whole number from {low} up"
    with pytest.raises(ExecutionError, match=rf"Path: {name}\. Reason: {expected}"):
        run_operator("compute_zcore", {**SMALL, name: value}, dataset=pool)
    with pytest.raises(ValueError, match=expected):
        compute_zcore(pool, params=ZCoreParams(**{name: value}))
    assert_nothing_written(pool)


def test_a_subspace_wider_than_the_embeddings_is_refused_before_scoring(pool):
    dim = len(pool.select_group_slices("left").first().group_embedding)
    with pytest.raises(
        ExecutionError, match=rf"sample_dim={dim + 1} exceeds the {dim} .*between 1 and {dim}"
    ):
        run_operator("compute_zcore", {**SMALL, "sample_dim": dim + 1}, dataset=pool)
    assert_nothing_written(pool)


def test_the_sdk_scores_the_field_the_form_preselects(pool):
    from fiftyone.operators.executor import ExecutionContext

    op = foo.OperatorRegistry().get_operator(uri("compute_zcore"))
    for group_score in (True, False):
        form = op.resolve_input(
            ExecutionContext(
                request_params={"dataset_name": pool.name, "params": {"group_score": group_score}}
            )
        )
        preselected = form.to_json()["type"]["properties"]["embeddings_fields"]["default"]
        record = compute_zcore(
            pool, group_score=group_score, params=ZCoreParams(n_sample=100), overwrite=True
        )
        assert record["embeddings_fields"] == preselected


def test_the_form_folds_the_hyperparameters_away_until_asked(embedded):
    properties = form_properties("compute_zcore", embedded, {})
    assert properties["advanced"]["default"] is False
    assert not {"n_sample", "sample_dim", "backend"} & set(properties)


def test_the_form_offers_the_vector_fields_the_papers_settings_and_draws_scaled_to_the_pool(
    embedded,
):
    properties = form_properties("compute_zcore", embedded, {"advanced": True})
    defaults = {name: prop.get("default") for name, prop in properties.items()}
    assert defaults["embeddings_fields"] == ["group_embedding"]
    choices = [c["value"] for c in properties["embeddings_fields"]["view"]["choices"]]
    assert choices == ["embedding", "group_embedding"]
    # 1,000 random subspaces per scored scene (the paper's 1M is for pools of 1,000 and up).
    assert (defaults["n_sample"], defaults["sample_dim"]) == (1_000 * NUM_SCENES, 2)
    assert (defaults["redund_nn"], defaults["redund_exp"]) == (1000, 4)
    assert defaults["score_field"] == "zcore" and schedules_by_default("compute_zcore", embedded)
    for name in ("n_sample", "sample_dim", "redund_nn", "redund_exp"):
        assert properties[name]["view"]["description"], name


@pytest.mark.slow
def test_compute_zcore_completes_on_a_delegated_worker(pool):
    pool.persistent = True  # the worker is another process
    doc = run_on_worker(queue_operator("compute_zcore", {**SMALL, "delegate": True}, dataset=pool))
    assert doc.run_state == ExecutionRunState.COMPLETED, doc.result
    pool.reload()
    assert zcore_run(pool)["n"] == NUM_SCENES
    by_group = scores_by_group(pool)
    assert all(len(set(s.values())) == 1 and None not in s.values() for s in by_group.values())
