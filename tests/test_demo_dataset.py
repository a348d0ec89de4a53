"""The demo dataset and the simulated annotator against real FiftyOne and MongoDB."""

import hashlib
import os
from pathlib import Path

import fiftyone as fo
import fiftyone.utils.utils3d as fou3d
import numpy as np
import pytest
from PIL import Image

from annoloop.demo import annotation as demo_annotation
from annoloop.demo.algorithms import annotator as an
from annoloop.demo.algorithms import camera as demo_camera
from annoloop.demo import dataset as demo_dataset
from annoloop.demo.algorithms import scenes as sc

NUM_SCENES = 30
SEED = 51


@pytest.fixture(scope="module")
def demo():
    ds = demo_dataset.load_demo_dataset(
        "demo-structure", num_scenes=NUM_SCENES, seed=SEED, overwrite=True
    )
    yield ds
    ds.delete()


def _slice(ds, name):
    return ds.select_group_slices(name)


def _groups(ds, first, stop):
    """Group ids of the scenes with index in [first, stop)."""
    return ds.match(
        (fo.ViewField("scene_index") >= first) & (fo.ViewField("scene_index") < stop)
    ).distinct("group.id")


def _labels_by_scene(ds):
    """{(scene_id, slice): oracle detections as plain tuples} — ids left out."""
    out = {}
    for slice_name in demo_dataset.SLICES:
        view = _slice(ds, slice_name)
        for scene_id, dets in zip(*view.values(["scene_id", "oracle.detections"])):
            out[scene_id, slice_name] = [
                (
                    d.label,
                    d.object_id,
                    tuple(d.bounding_box or ()),
                    tuple(d["location"] or ()) if slice_name == "pcd" else (),
                )
                for d in dets
            ]
    return out


def _media_digests(ds):
    out = {}
    for slice_name in demo_dataset.SLICES:
        view = _slice(ds, slice_name)
        for scene_id, path in zip(*view.values(["scene_id", "filepath"])):
            out[scene_id, slice_name] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


def test_demo_is_a_persistent_group_dataset_with_three_slices(demo):
    assert demo.persistent and demo.media_type == "group"
    assert demo.group_field == "group" and demo.default_group_slice == "left"
    assert demo.group_media_types == {"left": "image", "right": "image", "pcd": "point-cloud"}
    assert len(demo.distinct("group.id")) == NUM_SCENES
    for slice_name, ext in (("left", ".jpg"), ("right", ".jpg"), ("pcd", ".pcd")):
        paths = _slice(demo, slice_name).values("filepath")
        assert len(paths) == NUM_SCENES
        assert all(p.endswith(ext) and os.path.isfile(p) for p in paths)


def test_every_sample_carries_the_scene_fields(demo):
    for slice_name in demo_dataset.SLICES:
        view = _slice(demo, slice_name)
        ids, idx, tod, weather, dup = view.values(
            ["scene_id", "scene_index", "time_of_day", "weather", "near_duplicate_of"]
        )
        assert sorted(idx) == list(range(NUM_SCENES))
        assert all(s == f"scene-{i:06d}" for s, i in zip(ids, idx))
        assert set(tod) <= {"day", "night"} and set(weather) <= {"clear", "rain", "fog"}
        assert all(d is None or d in ids for d in dup)
    schema = demo.get_field_schema()
    assert isinstance(schema["near_duplicate_of"], fo.StringField)
    assert isinstance(schema["scene_index"], fo.IntField)


def test_metadata_matches_the_sampled_scenes(demo):
    scenes = sc.sample_scenes(NUM_SCENES, SEED)
    view = _slice(demo, "left")
    got = dict(zip(*view.values(["scene_id", "time_of_day"])))
    assert got == {s.scene_id: s.time_of_day for s in scenes}
    dups = dict(zip(*view.values(["scene_id", "near_duplicate_of"])))
    assert dups == {s.scene_id: s.near_duplicate_of for s in scenes}
    assert any(v is not None for v in dups.values())


def test_oracle_is_2d_on_cameras_and_3d_on_the_point_cloud(demo):
    for slice_name in ("left", "right"):
        view = _slice(demo, slice_name)
        boxes = np.array([b for s in view.values("oracle.detections.bounding_box") for b in s])
        assert (
            len(boxes) > NUM_SCENES
            and np.all(boxes >= 0)
            and np.all(boxes[:, :2] + boxes[:, 2:] <= 1 + 1e-9)
        )
        labels = {l for s in view.values("oracle.detections.label") for l in s}
        assert labels <= set(sc.CLASSES)
        for attr in ("occluded", "truncated"):
            values = [v for s in view.values(f"oracle.detections.{attr}") for v in s]
            assert set(values) <= {True, False} and len(values) == len(boxes)
        assert view.first().metadata.width == 384
    pcd = _slice(demo, "pcd")
    for key in ("location", "dimensions", "rotation"):
        values = [v for s in pcd.values(f"oracle.detections.{key}") for v in s]
        assert values and all(len(v) == 3 for v in values)
    rotation = np.array([v for s in pcd.values("oracle.detections.rotation") for v in s])
    assert np.all(rotation[:, :2] == 0)  # yaw only: z is up
    counts = [v for s in pcd.values("oracle.detections.num_points") for v in s]
    assert all(isinstance(v, int) for v in counts) and sum(counts) > 0


def test_object_ids_tie_camera_boxes_to_cuboids(demo):
    labels = _labels_by_scene(demo)
    for scene_id in demo.distinct("scene_id"):
        cuboids = {oid: label for label, oid, _, _ in labels[scene_id, "pcd"]}
        for cam in ("left", "right"):
            for label, oid, _, _ in labels[scene_id, cam]:
                assert cuboids[oid] == label


def test_cuboids_follow_fiftyones_3d_convention_and_project_onto_the_boxes(demo):
    left, _ = demo_camera.stereo_rig((384, 128))
    sample = _slice(demo, "left").first()
    group = demo.get_group(sample.group.id)
    cuboids = {d.object_id: d for d in group["pcd"].oracle.detections}
    assert sample.oracle.detections
    for box in sample.oracle.detections:
        d = cuboids[box.object_id]
        ours = sc.cuboid_corners(d.location, d.dimensions, [d.rotation[2]])[0]
        theirs = fou3d.corners_from_euler(d.location, d.rotation, d.dimensions).T
        np.testing.assert_allclose(np.sort(ours, axis=0), np.sort(theirs, axis=0), atol=1e-9)
        if not box.truncated:
            ((x0, y0, x1, y1),) = demo_camera.project_cuboids(left, ours[None])[0]
            np.testing.assert_allclose(
                box.bounding_box, [x0 / 384, y0 / 128, (x1 - x0) / 384, (y1 - y0) / 128], atol=1e-9
            )


def test_ground_truth_is_declared_and_empty_and_classes_are_set(demo):
    assert isinstance(demo.get_field("ground_truth").document_type(), fo.Detections)
    for slice_name in demo_dataset.SLICES:
        assert _slice(demo, slice_name).count("ground_truth") == 0
    assert demo.default_classes == list(sc.CLASSES)
    assert demo.classes["oracle"] == list(sc.CLASSES) == demo.classes["ground_truth"]
    info = demo.info["annoloop_demo"]
    assert info["seed"] == SEED and info["num_scenes"] == NUM_SCENES
    assert info["classes"] == list(sc.CLASSES) and info["image_size"] == [384, 128]
    assert os.path.isdir(info["media_dir"]) and info["generator_version"]


def test_pcd_media_load_in_open3d_with_the_recorded_point_counts(demo):
    import open3d as o3d

    sample = _slice(demo, "pcd").first()
    cloud = o3d.io.read_point_cloud(sample.filepath)
    header = Path(sample.filepath).read_bytes()[:400].decode("ascii", "replace")
    assert f"POINTS {len(cloud.points)}\n" in header and len(cloud.points) > 2000
    assert sample.metadata.size_bytes == os.path.getsize(sample.filepath)


def test_point_clouds_have_birds_eye_thumbnails_for_the_apps_grid(demo):
    pcd = demo.select_group_slices("pcd")
    projections = pcd.values("orthographic_projection_metadata")
    assert len(projections) == len(pcd) and all(p is not None for p in projections)
    for projection in projections:
        image = np.asarray(Image.open(projection.filepath))
        assert image.shape[1] == projection.width == 256
        assert image.any(), "a thumbnail with no point drawn"


def test_same_seed_gives_identical_labels_and_media_bytes():
    a = demo_dataset.load_demo_dataset("demo-det-a", num_scenes=4, seed=5)
    b = demo_dataset.load_demo_dataset("demo-det-b", num_scenes=4, seed=5)
    c = demo_dataset.load_demo_dataset("demo-det-c", num_scenes=4, seed=6)
    try:
        assert _labels_by_scene(a) == _labels_by_scene(b)
        assert _media_digests(a) == _media_digests(b)
        assert _media_digests(a) != _media_digests(c)
        assert a.info["annoloop_demo"]["media_dir"] != b.info["annoloop_demo"]["media_dir"]
    finally:
        for ds in (a, b, c):
            ds.delete()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "5"])
def test_a_bad_scene_count_fails_before_anything_is_written(tmp_path, bad):
    media = tmp_path / "media"
    with pytest.raises(ValueError, match="num_scenes must be a positive int"):
        demo_dataset.load_demo_dataset("demo-bad-count", num_scenes=bad, media_dir=str(media))
    assert not media.exists() and not fo.dataset_exists("demo-bad-count")


def test_an_existing_name_needs_overwrite(demo, tmp_path):
    media = tmp_path / "media"
    with pytest.raises(ValueError, match="pass overwrite=True"):
        demo_dataset.load_demo_dataset(demo.name, num_scenes=3, media_dir=str(media))
    assert not media.exists() and len(demo.distinct("group.id")) == NUM_SCENES


def test_an_unwritable_media_dir_fails_with_a_clear_message(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = blocker / "media"
    with pytest.raises(ValueError, match=f"media_dir '{target}' cannot be created"):
        demo_dataset.load_demo_dataset("demo-unwritable", num_scenes=3, media_dir=str(target))
    assert not fo.dataset_exists("demo-unwritable")


def test_other_bad_arguments_are_rejected_up_front(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        demo_dataset.load_demo_dataset(
            "demo-bad", num_scenes=2, image_size=(10, 10), media_dir=str(tmp_path)
        )
    with pytest.raises(ValueError, match="seed"):
        demo_dataset.load_demo_dataset("demo-bad", num_scenes=2, seed=-1, media_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_an_operator_call_that_omits_the_scene_count_and_seed_gets_the_forms_defaults(tmp_path):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext
    from fo_helpers import run_operator, unique_name, uri

    form = foo.OperatorRegistry().get_operator(uri("load_demo_dataset")).resolve_input(
        ExecutionContext(request_params={"params": {}})
    )
    shown = {k: p.get("default") for k, p in form.to_json()["type"]["properties"].items()}
    name = unique_name("demo-defaults")
    try:
        result = run_operator("load_demo_dataset", {"name": name, "media_dir": str(tmp_path)})
        info = fo.load_dataset(name).info["annoloop_demo"]
        assert result.result["num_groups"] == info["num_scenes"] == shown["num_scenes"]
        assert info["seed"] == shown["seed"]
        assert info["scene_config"]["night_fraction"] == shown["night_fraction"]
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_a_failed_overwrite_leaves_the_old_dataset_untouched(tmp_path):
    media = tmp_path / "media"
    old = demo_dataset.load_demo_dataset("demo-swap", num_scenes=4, seed=1, media_dir=str(media))
    old_info = dict(old.info["annoloop_demo"])
    old_files = sorted(p for p in media.rglob("*") if p.is_file())
    before = set(fo.list_datasets())

    def abort_late(fraction, message):
        if fraction >= 0.9:  # the new samples are in the staging dataset by now
            raise RuntimeError("cancelled by the user")

    with pytest.raises(RuntimeError, match="cancelled"):
        demo_dataset.load_demo_dataset(
            "demo-swap",
            num_scenes=6,
            seed=2,
            media_dir=str(media),
            overwrite=True,
            progress=abort_late,
        )
    assert set(fo.list_datasets()) == before
    kept = fo.load_dataset("demo-swap")
    assert kept.info["annoloop_demo"] == old_info and len(kept.distinct("group.id")) == 4
    assert sorted(p for p in media.rglob("*") if p.is_file()) == old_files
    kept.delete()


def test_overwrite_replaces_the_dataset_and_its_old_media(tmp_path):
    media = tmp_path / "media"
    seen = []
    old = demo_dataset.load_demo_dataset("demo-replace", num_scenes=3, media_dir=str(media))
    old_dir = old.info["annoloop_demo"]["media_dir"]
    new = demo_dataset.load_demo_dataset(
        "demo-replace",
        num_scenes=5,
        media_dir=str(media),
        overwrite=True,
        progress=lambda f, m: seen.append(f),
    )
    assert new.name == "demo-replace" and new.persistent
    assert len(new.distinct("group.id")) == 5
    assert not os.path.exists(old_dir) and os.path.isdir(new.info["annoloop_demo"]["media_dir"])
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert not [n for n in fo.list_datasets() if "building" in n]
    new.delete()


def test_annotate_batch_labels_every_chosen_slice_of_the_selected_groups(demo):
    groups = _groups(demo, 0, 10)
    batch = demo.select_groups(groups)
    summary = demo_annotation.annotate_batch(batch, 0, label_field="gt_batch0", seed=3)
    assert summary["batch"] == "batch-000" and summary["profile"]["name"] == "clean"
    assert summary["num_samples"] == 30 and set(summary["per_slice"]) == {"left", "right", "pcd"}
    assert summary["labels"] == summary["oracle"] - summary["missed"] + summary["false_positives"]
    for slice_name in demo_dataset.SLICES:
        view = _slice(demo, slice_name)
        gids, values = view.values(["group.id", "gt_batch0"])
        labelled = {g for g, v in zip(gids, values) if v is not None}
        assert labelled == set(groups)
        attrs = view.values("gt_batch0.detections.annotator") + view.values(
            "gt_batch0.detections.batch"
        )
        flat = {a for row in attrs if row for a in row}
        assert flat == {"simulated", "batch-000"}
    pcd = _slice(demo, "pcd").match(fo.ViewField("gt_batch0").exists())
    assert all(len(v) == 3 for row in pcd.values("gt_batch0.detections.location") for v in row)


def test_annotate_batch_follows_the_drift_schedule(demo):
    late_groups = _groups(demo, 20, 30)
    early = demo_annotation.annotate_batch(
        demo.select_groups(_groups(demo, 10, 20)), 1, label_field="gt_drift"
    )
    late = demo_annotation.annotate_batch(
        demo.select_groups(late_groups), 2, label_field="gt_drift"
    )
    assert early["profile"]["name"] == "clean" and late["profile"]["name"] == "drifted"
    assert early["renamed"] == 0
    view = demo.select_group_slices(["left", "right"])
    batches = view.values("gt_drift.detections.batch")
    labels = view.values("gt_drift.detections.label")
    by_batch = {}
    for b_row, l_row in zip(batches, labels):
        for b, l in zip(b_row or [], l_row or []):
            by_batch.setdefault(b, set()).add(l)
    assert "vehicle" not in by_batch["batch-001"]
    assert "van" not in by_batch["batch-002"]
    late_oracle = demo.select_groups(late_groups).select_group_slices(["left", "right"])
    vans = late_oracle.count_values("oracle.detections.label")["van"]
    assert vans >= 3 and "vehicle" in by_batch["batch-002"] and late["renamed"] > 0


def test_annotate_batch_is_deterministic_for_a_seed(demo):
    view = demo.select_groups(_groups(demo, 0, 6))
    demo_annotation.annotate_batch(view, 2, label_field="gt_seed_a", seed=9)
    demo_annotation.annotate_batch(view, 2, label_field="gt_seed_b", seed=9)
    for slice_name in ("left", "pcd"):
        flat = _slice(demo, slice_name)
        for key in ("label", "bounding_box", "location"):
            assert flat.values(f"gt_seed_a.detections.{key}") == flat.values(
                f"gt_seed_b.detections.{key}"
            )


def test_annotate_batch_rejects_bad_arguments(demo):
    view = demo.select_groups(_groups(demo, 0, 2))
    with pytest.raises(ValueError, match="unknown group slices"):
        demo_annotation.annotate_batch(view, 0, slices=("left", "thermal"))
    with pytest.raises(ValueError, match="either profile or schedule"):
        demo_annotation.annotate_batch(
            view, 0, profile=an.CLEAN, schedule=an.default_drift_schedule()
        )
    with pytest.raises(ValueError, match="trailing number"):
        demo_annotation.annotate_batch(view, "pilot")
    with pytest.raises(ValueError, match="label_field"):
        demo_annotation.annotate_batch(view, 0, label_field="oracle")
    summary = demo_annotation.annotate_batch(
        view, "pilot", profile=an.CLEAN, label_field="gt_pilot", slices=("left",)
    )
    assert summary["batch"] == "pilot" and set(summary["per_slice"]) == {"left"}


SNOWY = sc.SceneConfig(weather_probs={"clear": 0.5, "rain": 0.0, "fog": 0.0, "snow": 0.5})


def test_a_new_batch_arrives_unlabeled_tagged_and_numbered_after_the_pool():
    ds = demo_dataset.load_demo_dataset("demo-arrival", num_scenes=4, seed=5, overwrite=True)
    try:
        before = set(ds.select_group_slices("pcd").values("filepath"))
        added = demo_dataset.add_demo_scenes(ds, 6, seed=8, name="week-2", scene_config=SNOWY)
        assert added["scene_ids"] == [sc.scene_id(i) for i in range(4, 10)]
        for name in demo_dataset.SLICES:
            arrived = ds.select_group_slices(name).match_tags("incoming:week-2")
            assert sorted(arrived.values("scene_id")) == added["scene_ids"]
            assert arrived.values("ground_truth") == [None] * 6
            assert all(os.path.isfile(p) for p in arrived.values("filepath"))
        assert set(ds.match_tags("incoming:week-2").values("weather")) <= {"clear", "snow"}
        pcd = ds.select_group_slices("pcd")
        assert before < set(pcd.values("filepath"))
        assert None not in pcd.values("orthographic_projection_metadata")
        assert ds.info["annoloop_demo"]["arrivals"][0]["tag"] == "incoming:week-2"
    finally:
        ds.delete()


def test_a_second_arrival_under_the_same_name_is_refused_and_writes_nothing():
    ds = demo_dataset.load_demo_dataset("demo-arrival-twice", num_scenes=3, seed=5, overwrite=True)
    try:
        demo_dataset.add_demo_scenes(ds, 2, seed=8, name="b1")
        count = len(ds.select_group_slices("pcd"))
        with pytest.raises(ValueError, match="'incoming:b1' is already in use"):
            demo_dataset.add_demo_scenes(ds, 2, seed=9, name="b1")
        with pytest.raises(ValueError, match="name must be a non-empty string without spaces"):
            demo_dataset.add_demo_scenes(ds, 2, seed=9, name="two words")
        assert len(ds.select_group_slices("pcd")) == count
    finally:
        ds.delete()


def test_arrivals_need_a_demo_dataset():
    plain = fo.Dataset()
    try:
        with pytest.raises(ValueError, match="needs a dataset built by load_demo_dataset"):
            demo_dataset.add_demo_scenes(plain, 2, seed=1, name="b1")
    finally:
        plain.delete()


def test_camera_samples_carry_a_calibration_that_projects_the_cuboids_onto_their_boxes(demo):
    from annoloop.core.algorithms import pinhole

    for name in ("left", "right"):
        sample = _slice(demo, name).first()
        cuboids = {d.object_id: d for d in demo.get_group(sample.group.id)["pcd"].oracle.detections}
        K, T = pinhole.calibration(sample.camera_intrinsics, sample.camera_extrinsics)
        for box in sample.oracle.detections:
            if box.truncated:
                continue
            d = cuboids[box.object_id]
            corners = pinhole.cuboid_corners([d.location], [d.dimensions], [d.rotation])
            ((x0, y0, x1, y1),), _, _ = pinhole.project_corners(corners, K, T)
            w, h = sample.metadata.width, sample.metadata.height
            np.testing.assert_allclose(
                box.bounding_box, [x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h], atol=1e-9
            )
