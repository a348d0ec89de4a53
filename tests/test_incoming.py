"""The incoming-drift check on a real demo dataset: a batch with snow scenes arrives."""

import pytest

from annoloop.core.names import NOVEL_TAG
from annoloop.core.runs import load_record
from annoloop.demo.algorithms import scenes as sc
from annoloop.demo.dataset import add_demo_scenes, load_demo_dataset
from annoloop.quality.frozen import create_splits
from annoloop.quality.incoming import check_incoming
from annoloop.selection.embed import compute_embeddings
from fo_helpers import run_operator, unique_name

SNOWY = sc.SceneConfig(weather_probs={"clear": 0.4, "rain": 0.15, "fog": 0.15, "snow": 0.3})


@pytest.fixture(scope="module")
def arrived():
    dataset = load_demo_dataset(unique_name("incoming"), num_scenes=40, seed=5, image_size=(192, 64))
    create_splits(dataset, test=4, mining=3, golden=3, seed=0)
    added = add_demo_scenes(dataset, 16, seed=11, name="week-2", scene_config=SNOWY)
    compute_embeddings(dataset)
    yield dataset, added
    dataset.delete()


def test_the_operator_finds_and_names_the_snow_scenes_and_tags_them_on_every_slice(arrived):
    dataset, added = arrived
    assert added["weather"].get("snow", 0) >= 2
    result = run_operator(
        "check_incoming_drift",
        {"delegate": False, "batch_tag": "incoming:week-2", "describe_by": ["weather", "time_of_day"]},
        dataset=dataset,
    ).result
    novel = dataset.load_saved_view(result["saved_view"])
    snow = [u for u, w in zip(*_units_and_weather(dataset, "incoming:week-2")) if w == "snow"]
    assert set(snow) <= set(novel.values("group.id"))
    weather = result["clusters"][0]["fields"]["weather"]
    # The pool never saw snow; flags control the false discovery rate, so a stray clear
    # scene may join the cluster, but snow dominates it.
    assert weather["value"] == "snow" and weather["pool_share"] == 0.0 and weather["share"] > 0.5
    assert result["clusters"][0]["name"].startswith("weather=snow")
    for name in ("left", "right", "pcd"):
        tagged = dataset.select_group_slices(name).match_tags(NOVEL_TAG)
        assert len(tagged) == result["n_novel"]
    # Frozen splits are neither batch nor reference.
    assert result["n_frozen_left_out"] >= 10  # near-duplicates join their split
    assert result["n_reference"] + result["n_frozen_left_out"] == 40
    record = load_record(dataset, result["run_key"])
    assert record["p_value"] == result["p_value"] and record["saved_view"] == result["saved_view"]
    assert "plan_batch" in result["next_step"] and result["slice"] == "left"


def _units_and_weather(dataset, tag):
    left = dataset.select_group_slices("left").match_tags(tag)
    return left.values("group.id"), left.values("weather")


def test_a_recheck_replaces_the_batch_tags_and_the_same_seed_gives_the_same_answer(arrived):
    dataset, _ = arrived
    first = check_incoming(dataset, "incoming:week-2", n_permutations=199, seed=3)
    second = check_incoming(dataset, "incoming:week-2", n_permutations=199, seed=3)
    strip = lambda r: {k: v for k, v in r.items() if k != "checked_at"}
    assert strip(first) == strip(second)
    assert len(dataset.select_group_slices("pcd").match_tags(NOVEL_TAG)) == second["n_novel"]


def test_a_view_batch_needs_a_name_and_a_batch_without_embeddings_is_refused(arrived):
    dataset, _ = arrived
    view = dataset.match_tags("incoming:week-2")
    with pytest.raises(ValueError, match="needs a name="):
        check_incoming(dataset, view)
    fresh = add_demo_scenes(dataset, 2, seed=12, name="week-3")
    try:
        with pytest.raises(ValueError, match=r"2 units of the batch have no 'group_embedding'; run compute_embeddings"):
            check_incoming(dataset, "incoming:week-3")
        assert not dataset.has_saved_view("drift_novel_week_3")
    finally:
        for name in ("left", "right", "pcd"):
            dataset.delete_samples(dataset.select_group_slices(name).match_tags(fresh["tag"]))
