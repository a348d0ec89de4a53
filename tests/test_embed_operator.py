"""compute_embeddings / compute_visualization on the grouped demo dataset, through FiftyOne."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fiftyone as fo
from fiftyone import ViewField as F
from fiftyone.operators.executor import ExecutionError

from annoloop.demo.dataset import load_demo_dataset
from annoloop.selection.embed import INFO_KEY, compute_embeddings
from annoloop.selection.algorithms.image_features import baseline_dim, l2_normalize
from annoloop.selection.embeddings.models import ImageEmbedder
from annoloop.selection.embeddings.pointcloud import PointCloudDescriptorConfig
from fo_helpers import run_operator, schedules_by_default, unique_name

NUM_SCENES = 10
CAMERA_DIM = baseline_dim()
CLOUD_DIM = PointCloudDescriptorConfig().dim
SCENE_DIM = 2 * CAMERA_DIM + CLOUD_DIM
RUN_NOW = {"delegate": False}


@pytest.fixture(scope="module")
def demo():
    dataset = load_demo_dataset(unique_name("emb-demo"), num_scenes=NUM_SCENES, seed=1)
    yield dataset
    dataset.delete()


def fresh_copy(demo) -> fo.Dataset:
    return demo.clone(unique_name("emb"))


@pytest.fixture(scope="module")
def embedded(demo):
    """A copy of the demo embedded once through the operator (slices, objects, scenes)."""
    dataset = fresh_copy(demo)
    result = run_operator(
        "compute_embeddings",
        {**RUN_NOW, "patches": True, "patches_field": "oracle"},
        dataset=dataset,
    )
    yield dataset, result.result
    dataset.delete()


def slice_values(dataset, slice_name: str, *paths: str):
    return dataset.select_group_slices(slice_name).values(list(paths))


def test_every_slice_is_embedded_with_its_own_dimension(embedded):
    dataset, summary = embedded
    assert summary["model"] == "baseline-colour-gradient"
    for slice_name, dim in (("left", CAMERA_DIM), ("right", CAMERA_DIM), ("pcd", CLOUD_DIM)):
        assert summary["slices"][slice_name]["computed"] == NUM_SCENES
        assert summary["slices"][slice_name]["dim"] == dim
        (vectors,) = slice_values(dataset, slice_name, "embedding")
        assert len(vectors) == NUM_SCENES and all(v.shape == (dim,) for v in vectors)
        np.testing.assert_allclose([np.linalg.norm(v) for v in vectors], 1.0, atol=1e-5)
    assert isinstance(dataset.get_field("embedding"), fo.VectorField)
    assert dataset.info[INFO_KEY]["embedding"]["pcd"]["model"] == "fpfh-geometry"


def test_every_sample_of_a_scene_carries_the_same_unit_norm_scene_embedding(embedded):
    dataset, summary = embedded
    assert summary["group_slices"] == ["left", "right", "pcd"]
    assert summary["groups_written"] == NUM_SCENES and summary["groups_incomplete"] == 0
    by_group = {}
    for slice_name in ("left", "right", "pcd"):
        for gid, vector in zip(*slice_values(dataset, slice_name, "group.id", "group_embedding")):
            assert vector.shape == (SCENE_DIM,)
            assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
            by_group.setdefault(gid, []).append(vector)
    assert len(by_group) == NUM_SCENES
    for vectors in by_group.values():
        np.testing.assert_array_equal(vectors[0], vectors[1])
        np.testing.assert_array_equal(vectors[0], vectors[2])


def test_the_scene_embedding_is_the_scaled_concatenation_of_its_slices(embedded):
    dataset, _ = embedded
    per_slice = {
        s: dict(zip(*slice_values(dataset, s, "group.id", "embedding")))
        for s in ("left", "right", "pcd")
    }
    for gid, scene in zip(*slice_values(dataset, "left", "group.id", "group_embedding")):
        expected = np.concatenate(
            [per_slice[s][gid] for s in ("left", "right", "pcd")]
        ) / math.sqrt(3)
        np.testing.assert_allclose(scene, expected, atol=1e-5)


def test_every_camera_object_gets_a_patch_embedding_on_its_detection(embedded):
    dataset, summary = embedded
    num_objects = sum(
        dataset.select_group_slices(s).count("oracle.detections") for s in ("left", "right")
    )
    assert summary["patches"]["field"] == "oracle.detections.embedding"
    assert summary["patches"]["computed"] == num_objects > 0
    for slice_name in ("left", "right"):
        (per_sample,) = slice_values(dataset, slice_name, "oracle.detections.embedding")
        vectors = [v for sample in per_sample for v in sample]
        assert all(v is not None and v.shape == (CAMERA_DIM,) for v in vectors)
    assert dataset.select_group_slices("pcd").count("oracle.detections.embedding") == 0


def test_a_second_run_skips_everything_already_embedded(embedded):
    dataset, _ = embedded
    (before,) = slice_values(dataset, "left", "embedding")
    summary = run_operator(
        "compute_embeddings",
        {**RUN_NOW, "patches": True, "patches_field": "oracle"},
        dataset=dataset,
    ).result
    assert all(
        s["computed"] == 0 and s["skipped"] == NUM_SCENES for s in summary["slices"].values()
    )
    assert summary["patches"]["computed"] == 0 and summary["patches"]["skipped"] > 0
    assert summary["groups_written"] == 0
    (after,) = slice_values(dataset, "left", "embedding")
    np.testing.assert_array_equal(np.stack(before), np.stack(after))


def test_a_scheduled_run_completes_on_a_delegated_executor(demo):
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    dataset = fresh_copy(demo)
    try:
        queued = run_operator(
            "compute_embeddings", {"delegate": True, "slices": ["left"]}, dataset=dataset
        )
        assert queued.delegated and dataset.get_field("embedding") is None
        service = DelegatedOperationService()
        service.execute_queued_operations(dataset_name=dataset.name)
        (done,) = service.list_operations(dataset_name=dataset.name)
        assert done.run_state == ExecutionRunState.COMPLETED, done.result
        assert done.result.result["slices"]["left"]["computed"] == NUM_SCENES
        assert dataset.select_group_slices("left").count("embedding") == NUM_SCENES
    finally:
        dataset.delete()


def test_overwrite_recomputes_and_new_samples_are_picked_up(demo):
    dataset = fresh_copy(demo)
    try:
        first = compute_embeddings(dataset, slices=["left"], group_field=None)
        assert first["slices"]["left"]["computed"] == NUM_SCENES
        dataset.select_group_slices("left").limit(3).set_field("embedding", None).save()
        resumed = compute_embeddings(dataset, slices=["left"], group_field=None)
        assert resumed["slices"]["left"] == {
            **first["slices"]["left"],
            "computed": 3,
            "skipped": NUM_SCENES - 3,
        }
        redone = compute_embeddings(dataset, slices=["left"], group_field=None, overwrite=True)
        assert (
            redone["slices"]["left"]["computed"] == NUM_SCENES
            and redone["slices"]["left"]["skipped"] == 0
        )
    finally:
        dataset.delete()


def test_scene_embeddings_wait_until_every_slice_is_embedded(demo):
    dataset = fresh_copy(demo)
    try:
        partial = compute_embeddings(dataset, slices=["left", "right"])
        assert partial["groups_written"] == 0 and partial["groups_incomplete"] == NUM_SCENES
        assert dataset.select_group_slices("left").count("group_embedding") == 0
        complete = compute_embeddings(dataset, slices=["pcd"])
        assert complete["groups_written"] == NUM_SCENES
        assert dataset.select_group_slices("right").count("group_embedding") == NUM_SCENES
    finally:
        dataset.delete()


def test_progress_is_reported_up_to_completion(demo):
    dataset = fresh_copy(demo)
    try:
        seen = []
        compute_embeddings(
            dataset,
            slices=["left"],
            progress=lambda fraction, label: seen.append((fraction, label)),
        )
        fractions = [f for f, _ in seen]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 <= fractions[0] < 1
        assert any("left" in label for _, label in seen)
    finally:
        dataset.delete()


def test_a_flat_slice_view_is_embedded_without_scene_embeddings(demo):
    dataset = fresh_copy(demo)
    try:
        summary = compute_embeddings(dataset.select_group_slices("right"))
        assert summary["slices"]["right"]["computed"] == NUM_SCENES
        assert summary["group_field"] is None
        assert dataset.info[INFO_KEY]["embedding"]["right"]["model"] == "baseline-colour-gradient"
        assert dataset.select_group_slices("right").count("embedding") == NUM_SCENES
        assert dataset.select_group_slices("left").count("embedding") == 0
    finally:
        dataset.delete()


def test_a_plain_point_cloud_dataset_is_embedded_under_the_samples_key(demo):
    (paths,) = slice_values(demo, "pcd", "filepath")
    dataset = fo.Dataset(unique_name("plain"))
    try:
        dataset.add_samples([fo.Sample(filepath=p) for p in paths[:3]])
        summary = compute_embeddings(dataset, patches_field=None)
        assert summary["model"] is None and summary["slices"] == {
            "samples": {
                "media_type": "point-cloud",
                "model": "fpfh-geometry",
                "computed": 3,
                "skipped": 0,
                "dim": CLOUD_DIM,
            }
        }
        with pytest.raises(ValueError, match="not grouped"):
            compute_embeddings(dataset, slices=["pcd"])
    finally:
        dataset.delete()


class MeanColour(ImageEmbedder):
    """A second, tiny image model through the public interface: the mean RGB of the image."""

    name = "mean-colour"

    def embed(self, images):
        return l2_normalize(np.stack([image.reshape(-1, 3).mean(axis=0) for image in images]))


def test_filling_a_field_from_another_model_requires_overwrite(demo):
    dataset = fresh_copy(demo)
    try:
        compute_embeddings(dataset, slices=["left"], group_field=None)
        with pytest.raises(
            ValueError, match="baseline-colour-gradient, not mean-colour; pass overwrite=True"
        ):
            compute_embeddings(dataset, slices=["left"], model=MeanColour(), group_field=None)
        (vectors,) = slice_values(dataset, "left", "embedding")
        assert {v.shape for v in vectors} == {(CAMERA_DIM,)}
        summary = compute_embeddings(
            dataset, slices=["left"], model=MeanColour(), group_field=None, overwrite=True
        )
        assert summary["slices"]["left"]["dim"] == 3
        assert dataset.info[INFO_KEY]["embedding"]["left"]["model"] == "mean-colour"
        other = compute_embeddings(
            dataset,
            slices=["left"],
            model=MeanColour(),
            embeddings_field="colour",
            group_field=None,
        )
        assert other["slices"]["left"]["computed"] == NUM_SCENES
    finally:
        dataset.delete()


# --- bad inputs write nothing ---------------------------------------------------------------


@pytest.fixture()
def untouched(demo):
    """A fresh copy, checked afterwards to hold no embedding fields and no records."""
    dataset = fresh_copy(demo)
    yield dataset
    try:
        assert dataset.get_field("embedding") is None
        assert dataset.get_field("group_embedding") is None
        assert dataset.get_field("oracle.detections.embedding") is None
        assert INFO_KEY not in dataset.info
    finally:
        dataset.delete()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"slices": ["left", "rear"]}, "unknown slice"),
        ({"embeddings_field": "scene_id"}, "scene_id.*StringField"),
        ({"group_field": "weather"}, "weather.*StringField"),
        ({"patches": True, "patches_field": "scene_id"}, "patches_field"),
        ({"patches": True, "patches_field": "oracle", "slices": ["pcd"]}, "needs a camera slice"),
        ({"model_kind": "hf", "model_path": "annoloop-tests/absent"}, "not on disk"),
        ({"model_kind": "ultralytics"}, "model_path"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_parameters_fail_before_anything_is_written(untouched, params, message):
    with pytest.raises(ExecutionError, match=message):
        run_operator("compute_embeddings", {**RUN_NOW, **params}, dataset=untouched)


def test_a_patches_field_that_is_not_detections_is_refused_by_the_sdk_too(untouched):
    with pytest.raises(ValueError, match="patches_field 'scene_id' is a StringField"):
        compute_embeddings(untouched, patches_field="scene_id")


def test_an_empty_view_fails_with_a_clear_message(untouched):
    with pytest.raises(ExecutionError, match="no samples"):
        run_operator(
            "compute_embeddings",
            RUN_NOW,
            dataset=untouched,
            view=untouched.match(F("scene_index") < 0),
        )


def test_missing_media_is_counted_before_anything_is_written(untouched):
    untouched.select_group_slices("pcd").limit(2).set_values(
        "filepath", ["/nonexistent/a.pcd", "/nonexistent/b.pcd"]
    )
    with pytest.raises(ExecutionError, match=r"2 of 10 media files .* on pcd do not exist"):
        run_operator("compute_embeddings", RUN_NOW, dataset=untouched)


def test_malformed_boxes_are_counted_before_anything_is_written(untouched):
    left = untouched.select_group_slices("left")
    first = left.first()
    first.oracle.detections[0].bounding_box = [0.5, 0.5, -0.1, 0.1]
    first.save()
    with pytest.raises(ExecutionError, match="1 of .* boxes"):
        run_operator(
            "compute_embeddings",
            {**RUN_NOW, "patches": True, "patches_field": "oracle"},
            dataset=untouched,
        )


# --- visualization --------------------------------------------------------------------------


def test_visualization_of_a_slice_creates_a_brain_run(embedded):
    dataset, _ = embedded
    result = run_operator(
        "compute_visualization",
        {
            **RUN_NOW,
            "slice": "left",
            "embeddings": "embedding",
            "method": "pca",
            "brain_key": "viz_left",
        },
        dataset=dataset,
    ).result
    assert result == {
        "brain_key": "viz_left",
        "num_points": NUM_SCENES,
        "method": "pca",
        "embeddings": "embedding",
    }
    assert "viz_left" in dataset.list_brain_runs()
    assert dataset.load_brain_results("viz_left").points.shape == (NUM_SCENES, 2)


def test_visualization_of_objects_and_scenes_uses_their_stored_embeddings(embedded):
    dataset, _ = embedded
    patches = run_operator(
        "compute_visualization",
        {
            **RUN_NOW,
            "slice": "right",
            "patches_field": "oracle",
            "embeddings": "embedding",
            "brain_key": "viz_objects",
        },
        dataset=dataset,
    ).result
    assert patches["num_points"] == dataset.select_group_slices("right").count("oracle.detections")
    scenes = run_operator(
        "compute_visualization",
        {**RUN_NOW, "slice": "pcd", "embeddings": "group_embedding", "brain_key": "viz_scenes"},
        dataset=dataset,
    ).result
    assert scenes["num_points"] == NUM_SCENES
    assert {"viz_objects", "viz_scenes"} <= set(dataset.list_brain_runs())


@pytest.mark.parametrize(
    "params, message",
    [
        ({"slice": "left", "embeddings": "scene_id"}, "embeddings"),
        ({"slice": "front", "embeddings": "embedding"}, "slice"),
        ({"slice": "left", "embeddings": "embedding", "method": "mds"}, "method"),
        ({"slice": "left", "embeddings": "embedding", "brain_key": "9 lives"}, "brain_key"),
    ],
)
def test_visualization_rejects_bad_parameters(embedded, params, message):
    dataset, _ = embedded
    runs = dataset.list_brain_runs()
    with pytest.raises(ExecutionError, match=message):
        run_operator("compute_visualization", {**RUN_NOW, **params}, dataset=dataset)
    assert dataset.list_brain_runs() == runs


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"slice_name": "left", "embeddings": "scene_id"},
            "'scene_id' is not a vector field on the samples",
        ),
        (
            {"slice_name": "left", "embeddings": "colour", "patches_field": "oracle"},
            "not a vector field on the detections",
        ),
        ({"slice_name": None, "embeddings": "embedding"}, "slice must be one of"),
        (
            {"slice_name": "left", "embeddings": "embedding", "method": "umap-ish"},
            "method must be one of",
        ),
    ],
)
def test_the_visualization_sdk_validates_before_running(embedded, kwargs, message):
    from annoloop.selection.visualization import compute_embedding_visualization

    dataset, _ = embedded
    runs = dataset.list_brain_runs()
    with pytest.raises(ValueError, match=message):
        compute_embedding_visualization(dataset, **kwargs)
    assert dataset.list_brain_runs() == runs


def test_a_layout_needs_at_least_two_embedded_samples(embedded):
    from annoloop.selection.visualization import compute_embedding_visualization

    dataset, _ = embedded
    with pytest.raises(ValueError, match="has 1 embeddings"):
        compute_embedding_visualization(dataset.limit(1), slice_name="left", embeddings="embedding")


@pytest.mark.parametrize("patches", [False, True], ids=["samples", "objects"])
def test_non_finite_embeddings_are_refused_before_a_brain_run_is_registered(demo, patches):
    from annoloop.selection.visualization import compute_embedding_visualization

    dataset = fresh_copy(demo)
    try:
        left = dataset.select_group_slices("left")
        ids = left.values("id")[:3]
        if patches:
            dets = {i: left[i].oracle.detections for i in ids}
            for detections in dets.values():
                for d in detections:
                    d["embedding"] = np.full(4, np.nan if d is detections[0] else 1.0, np.float32)
            left.set_values(
                "oracle", {i: fo.Detections(detections=d) for i, d in dets.items()}, key_field="id"
            )
            dataset.add_sample_field("oracle.detections.embedding", fo.VectorField)
            params = {"slice": "left", "patches_field": "oracle", "embeddings": "embedding"}
            expected = (
                rf"'oracle.detections.embedding' holds NaN or inf values on 3 of {NUM_SCENES} "
                r"samples \(3 objects\) on slice 'left'; recompute those embeddings"
            )
        else:
            left.set_values(
                "embedding", {i: np.full(8, np.nan, np.float32) for i in ids}, key_field="id"
            )
            dataset.add_sample_field("embedding", fo.VectorField)
            params = {"slice": "left", "embeddings": "embedding"}
            expected = (
                rf"'embedding' holds NaN or inf values on 3 of {NUM_SCENES} samples on slice "
                r"'left'; recompute those embeddings \(compute_embeddings with overwrite=True\)"
            )
        with pytest.raises(ExecutionError, match=expected):
            run_operator("compute_visualization", {**RUN_NOW, **params}, dataset=dataset)
        with pytest.raises(ValueError, match=expected):
            compute_embedding_visualization(
                dataset, slice_name="left", **{k: v for k, v in params.items() if k != "slice"}
            )
        assert dataset.list_brain_runs() == []
    finally:
        dataset.delete()


def test_an_operator_call_without_slice_or_embeddings_lays_out_what_the_form_preselects(
    embedded,
):
    dataset, _ = embedded
    defaults = resolve_form("compute_visualization", dataset, {})
    result = run_operator(
        "compute_visualization", {**RUN_NOW, "brain_key": "viz_defaults"}, dataset=dataset
    ).result
    assert result["embeddings"] == defaults["embeddings"]
    info = dataset.get_brain_info("viz_defaults")
    assert info.config.embeddings_field == defaults["embeddings"]
    layout = dataset.load_brain_results("viz_defaults")
    assert len(layout.points) == len(dataset.select_group_slices(defaults["slice"]))
    dataset.delete_brain_run("viz_defaults")


def test_visualization_keeps_an_existing_brain_run_unless_told_to_replace_it(embedded):
    dataset, _ = embedded
    params = {**RUN_NOW, "slice": "left", "embeddings": "embedding", "brain_key": "viz_keep"}
    run_operator("compute_visualization", params, dataset=dataset)
    with pytest.raises(ExecutionError, match="exists"):
        run_operator("compute_visualization", params, dataset=dataset)
    run_operator("compute_visualization", {**params, "overwrite": True}, dataset=dataset)
    assert "viz_keep" in dataset.list_brain_runs()


def test_umap_is_offered_only_when_umap_learn_is_installed():
    import importlib.util

    from annoloop.selection.visualization import available_methods

    assert ("umap" in available_methods()) == (importlib.util.find_spec("umap") is not None)
    assert available_methods()[:2] == ["pca", "tsne"]


def resolve_form(operator: str, dataset, params: dict) -> dict:
    """The defaults of an operator's form, as the App would receive them."""
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    op = foo.OperatorRegistry().get_operator(f"@annoloop/annoloop/{operator}")
    form = op.resolve_input(
        ExecutionContext(request_params={"dataset_name": dataset.name, "params": params})
    )
    return {
        name: prop.get("default") for name, prop in form.to_json()["type"]["properties"].items()
    }


def test_the_embeddings_form_offers_every_slice_and_prefers_labelled_ground_truth_for_objects(demo):
    dataset = fresh_copy(demo)
    try:
        defaults = resolve_form("compute_embeddings", dataset, {})
        assert (
            defaults["slices"] == ["left", "right", "pcd"] and defaults["model_kind"] == "baseline"
        )
        assert defaults["patches_field"] == "oracle", "ground_truth is still empty"
        assert schedules_by_default("compute_embeddings", dataset)
        sample = dataset.select_group_slices("left").first()
        sample.ground_truth = sample.oracle.copy()
        sample.save()
        assert resolve_form("compute_embeddings", dataset, {})["patches_field"] == "ground_truth"
        assert "model_path" in resolve_form(
            "compute_embeddings", dataset, {"model_kind": "ultralytics"}
        )
        assert "model_path" not in resolve_form(
            "compute_embeddings", dataset, {"model_kind": "efficientnet_lite0"}
        ), "EfficientNet-Lite0 names one model: nothing to choose"
    finally:
        dataset.delete()


def test_the_visualization_form_lists_stored_embeddings_and_names_the_run(embedded):
    dataset, _ = embedded
    defaults = resolve_form(
        "compute_visualization", dataset, {"slice": "pcd", "embeddings": "group_embedding"}
    )
    assert defaults["embeddings"] == "embedding" and defaults["method"] == "pca"
    assert defaults["brain_key"] == "viz_pcd_group_embedding_pca"
