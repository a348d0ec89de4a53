"""Frozen test, mining and golden splits on a FiftyOne dataset (glue): drawing them.

The three splits have one job each: the **test** set only reports (the ledger's numbers);
the **mining** set is the labeled validation split whose model failures the planner targets,
so choosing what to label never looks at the test set; the **golden** set scores annotators.

:func:`create_splits` picks the sets with :func:`.splits.select_splits`: by scene (a group of
a grouped dataset, or a scene field), with near-duplicate scenes kept together, seeded and
stratified by scene attributes. It then

- tags every sample of the chosen scenes, on every slice, ``split:test``,
  ``split:mining`` or ``split:golden`` and saves the views ``test_set``, ``mining_set`` and
  ``golden_set`` (``match_tags``);
- copies the golden set's trusted labels (e.g. ``oracle``) into their own field
  (``golden``), new label ids, so annotators can overwrite their field freely;
- records each split's members and fingerprints its frozen labels (the test and mining
  sets' label fields, the golden field) sample by sample, as the FiftyOne custom run
  ``annoloop_frozen_splits`` (:mod:`.frozen_check`, which also checks they stay frozen).

No draw, first or re-draw, puts a scene that a model trained on (or that is labeled for
training) into a split, and no re-draw keeps ledger rounds measured on the old sets
(:mod:`.resplit`): without ``reset`` such a draw is refused; with it the rounds are archived
and the trained scenes, with their near-duplicates, are left out of the draw. The old test
scenes a re-draw releases into the pool were never trained on, so they may be trained on
from then on; only the archived rounds were measured on them.

The phases: resolve and validate the parameters, read one row per sample, group scenes,
find the trained scenes and select (:func:`.scene_groups.duplicate_groups`,
:func:`.splits.select_splits`), check the draw, read the golden labels, and only then write
(archive the ledger, then tags, labels, views and the record). The module stays near 500
lines as one concept, drawing the splits; a third of it is the public docstrings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import fiftyone as fo

from ..core.locks import dataset_lock
from ..core.runs import Progress, now, save_record
from ..core.views import root_dataset, slice_views
from .algorithms.scene_groups import duplicate_groups
from .algorithms.splits import SplitResult, label_fingerprint, select_splits
from .frozen_check import (
    FROZEN_RUN_KEY,
    FROZEN_RUN_METHOD,
    SPLIT_TAGS,
    SPLIT_VIEWS,
    frozen_record,
    frozen_sample_ids,
    snapshot,
)
from .labels import detections_field, on_slice
from .resplit import archive_ledgers, measured_rounds, refusal, trained_scenes

__all__ = ["DEFAULT_GOLDEN_FIELD", "create_splits", "split_defaults"]

DEFAULT_GOLDEN_FIELD = "golden"
# Conventions the defaults look for (the demo dataset follows them).
_SCENE_FIELD = "scene_id"
_DUPLICATE_FIELD = "near_duplicate_of"
_SOURCE_FIELD = "oracle"
_MAX_STRATUM_VALUES = 12
_RESERVED = {"id", "filepath", "tags", "metadata", "created_at", "last_modified_at"}


def _require_samples(dataset: fo.Dataset) -> dict:
    """``{slice: flat view}`` of ``dataset``; raises when no slice holds a sample."""
    slices = slice_views(dataset)
    if not any(len(view) for view in slices.values()):
        raise ValueError(
            f"dataset '{dataset.name}' has no samples; add samples before creating splits"
        )
    return slices


def split_defaults(dataset: fo.Dataset) -> dict:
    """Defaults of :func:`create_splits` for ``dataset``.

    - ``scene_field``: ``scene_id`` when the dataset has it, else the group (grouped) or the
      sample (flat);
    - ``duplicate_field``: ``near_duplicate_of`` when present with a scene field;
    - ``strata_fields``: top-level string / bool sample fields with 2-12 distinct values
      (scene attributes such as ``time_of_day``, ``weather``);
    - ``source_field``: ``oracle`` when it is a Detections field, else ``ground_truth``.

    Raises ``ValueError`` on a dataset without samples.
    """
    first = next(iter(_require_samples(dataset).values()))
    schema = dataset.get_field_schema()
    scene_field = _SCENE_FIELD if _SCENE_FIELD in schema else None
    duplicate_field = _DUPLICATE_FIELD if scene_field and _DUPLICATE_FIELD in schema else None
    skip = _RESERVED | {scene_field, duplicate_field, getattr(dataset, "group_field", None)}
    strata = [
        name
        for name, f in schema.items()
        if name not in skip
        and not name.startswith("_")
        and isinstance(f, (fo.StringField, fo.BooleanField))
        and 2 <= len(first.distinct(name)) <= _MAX_STRATUM_VALUES
    ]
    detections = dataset.get_field_schema(embedded_doc_type=fo.Detections)
    source = _SOURCE_FIELD if _SOURCE_FIELD in detections else "ground_truth"
    return {
        "scene_field": scene_field,
        "duplicate_field": duplicate_field,
        "strata_fields": strata,
        "source_field": source,
    }


def _check_fraction_or_count(name: str, value) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{name} must be a fraction in [0, 1) or a number of scenes; got {value!r}"
        )
    if isinstance(value, float) and value >= 1:
        if value != int(value):
            raise ValueError(
                f"{name} must be a fraction in [0, 1) or a whole number of scenes; got {value}"
            )
        return int(value)
    return value


def _existing_splits(dataset: fo.Dataset) -> dict:
    counts = {
        split: sum(v.match_tags(tag).count() for v in slice_views(dataset).values())
        for split, tag in SPLIT_TAGS.items()
    }
    views = [v for v in SPLIT_VIEWS.values() if dataset.has_saved_view(v)]
    return {"tagged": counts, "views": views, "run": dataset.has_run(FROZEN_RUN_KEY)}


def create_splits(
    dataset: fo.Dataset,
    *,
    test=0.1,
    golden=0.02,
    mining=0.1,
    seed: int = 0,
    strata_fields: Sequence[str] | None = None,
    scene_field: str | None = None,
    duplicate_field: str | None = None,
    source_field: str | None = None,
    golden_field: str = DEFAULT_GOLDEN_FIELD,
    test_fields: Sequence[str] | None = None,
    min_stratum_groups: int = 3,
    overwrite: bool = False,
    reset: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Pick, tag and fingerprint a frozen test set, a mining set and a golden set.

    Parameters
    ----------
    dataset : Dataset
        Grouped or flat (a view is resolved to its dataset: splits are dataset-wide).
    test, golden : float or int
        A fraction in [0, 1) of the scenes, or a number of scenes. The golden set comes
        from the scenes left after the test and mining sets.
    mining : float or int, default 0.1
        The mining (validation) set, same form: labeled like the test set (its labels are
        fingerprinted with ``test_fields``), never trained on, and the only split whose
        evaluation the planner may target. 0 leaves it out.
    seed : int
        Same seed and scene keys give the same sets.
    strata_fields : sequence of str, optional
        Scene attributes to stratify by (their value combination is the stratum); default
        from :func:`split_defaults`; ``[]`` for no stratification.
    scene_field : str, optional
        Field naming the scene; samples sharing it (and, grouped, every slice of their
        groups) are split together. Default from :func:`split_defaults`.
    duplicate_field : str, optional
        Field holding the ``scene_field`` value of the scene a sample nearly duplicates;
        linked scenes land in the same split, stratified as the original. Default from
        :func:`split_defaults`; ``""`` for none.
    source_field : str, optional
        Detections field whose labels the golden set trusts (copied to ``golden_field``).
    golden_field : str, default "golden"
        New field for the golden labels; an existing field is refused unless an earlier
        ``create_splits`` wrote it.
    test_fields : sequence of str, optional
        Label fields of the test set to fingerprint; default ``[source_field]``.
    min_stratum_groups : int, default 3
        See :func:`.splits.select_splits`.
    overwrite : bool, default False
        Replace existing splits (tags, views, golden field, record). Without it, existing
        splits are an error.
    reset : bool, default False
        Start the measurements over: archive the ledger and the random baseline's ledger
        (``dataset.info["annoloop_ledger_archive"]``), start empty ones, and leave every
        scene trained on or labeled for training (see :mod:`.resplit`), with its
        near-duplicates, out of the draw, whose sizes then count the remaining scenes.
        Without it, a draw that would put such a scene into a split, or any ledger round
        (measured on the old sets), is an error.
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    dict
        The record: parameters, ``counts`` (scenes and samples per split), ``strata``,
        ``fingerprints`` (one digest per split and field), ``excluded_scenes`` (left out by
        ``reset``), ``archived_rounds``, ``deleted_evaluations`` (the evaluations of the
        old splits, gone with them) and ``created_at``.

    Raises
    ------
    ValueError
        On a dataset without samples, existing splits without ``overwrite``, trained scenes
        entering a split or ledger rounds without ``reset``, unknown fields, bad sizes, a
        scene that spans several strata, or golden samples without source labels. Nothing
        is written then.
    """
    report = progress or (lambda fraction, message: None)
    dataset = root_dataset(dataset)
    params = _resolve_params(
        dataset,
        test=test,
        golden=golden,
        mining=mining,
        seed=seed,
        strata_fields=strata_fields,
        scene_field=scene_field,
        duplicate_field=duplicate_field,
        source_field=source_field,
        golden_field=golden_field,
        test_fields=test_fields,
        min_stratum_groups=min_stratum_groups,
    )
    _check_fields(dataset, params)
    if not isinstance(reset, bool):
        raise ValueError(f"reset must be True or False; got {reset!r}")
    # Checking for existing splits, drawing and tagging are one step: under the dataset's
    # write lock, on a fresh copy of its document, so two calls never merge their draws.
    with dataset_lock(dataset, "create_splits"):
        dataset.reload()
        return _draw_and_freeze(dataset, params, overwrite, reset, report)


def _draw_and_freeze(
    dataset: fo.Dataset, params: _Params, overwrite: bool, reset: bool, report
) -> dict:
    """Draw the splits, check the draw, tag them, fingerprint them and save the record."""
    redraw, ours, frozen_at = _check_existing(dataset, params.golden_field, overwrite)
    rounds = measured_rounds(dataset)

    report(0.0, "reading scenes")
    slices = slice_views(dataset)
    group_path = f"{dataset.group_field}.id" if dataset.media_type == "group" else "id"
    scene_path = params.scene_field or group_path
    rows = _scene_rows(dataset, slices, scene_path, params.duplicate_field, params.strata_fields)
    components = _components(rows, params)
    group_of = components[0]
    trained = trained_scenes(dataset, slices, scene_path)
    # A near-duplicate of a trained scene is as good as trained: its whole group stays out.
    trained_groups = {group_of[s] for s in trained}
    excluded = [s for s, group in group_of.items() if group in trained_groups]
    if reset:
        rows = [r for r in rows if group_of[r[2]] not in trained_groups]
    result = _select(rows, components, params, len(excluded) if reset else 0)
    picked_groups = set().union(*(getattr(result, f"{s}_groups") for s in SPLIT_TAGS))
    entering = [s for s in trained if str(group_of[s]) in picked_groups]
    if not reset and (entering or rounds):
        raise ValueError(refusal(dataset, entering, len(excluded), rounds))
    picked = {split: [rows[i] for i in getattr(result, split).tolist()] for split in SPLIT_TAGS}
    if not picked["golden"]:
        raise ValueError("the golden set would be empty; ask for more golden scenes")
    by_slice = {
        split: {name: [r[1] for r in members if r[0] == name] for name in slices}
        for split, members in picked.items()
    }
    golden_labels = _golden_labels(slices, by_slice["golden"], params.source_field)

    # Measured on the old splits: after the re-draw they would score samples that may be
    # pool or training samples, and feed the planner failures of a mining set that is gone.
    stale_evaluations = _split_evaluations(dataset) if redraw else []

    report(0.3, "tagging the splits")
    for eval_key in stale_evaluations:
        dataset.delete_evaluation(eval_key)
    if reset and rounds:
        # First, so that no moment holds new splits beside rounds measured on the old ones.
        archive_ledgers(dataset, rounds, frozen_at)
    if redraw:
        _clear_splits(dataset, slices, ours)
    _write_splits(dataset, slices, by_slice, picked, golden_labels, params.golden_field)

    report(0.7, "fingerprinting the frozen labels")
    test_fields, golden_fields = params.test_fields, [params.golden_field]
    fields = {"test": test_fields, "mining": test_fields, "golden": golden_fields}
    frozen = snapshot(dataset, fields)
    record = _split_record(params, scene_path, result, picked, frozen["fingerprints"])
    record["excluded_scenes"] = len(excluded) if reset else 0
    record["archived_rounds"] = sum(len(r) for r in rounds.values()) if reset else 0
    record["deleted_evaluations"] = stale_evaluations
    scenes = {split: getattr(result, f"{split}_groups") for split in SPLIT_TAGS}
    save_record(
        dataset, FROZEN_RUN_KEY, FROZEN_RUN_METHOD, record, results={**frozen, "scenes": scenes}
    )
    report(1.0, "splits frozen")
    return record


def _split_evaluations(dataset: fo.Dataset) -> list[str]:
    """Keys of the evaluations that ran on frozen split samples only (evaluate_model's)."""
    frozen = frozen_sample_ids(dataset)
    stale = []
    for eval_key in dataset.list_evaluations():
        evaluated = set(dataset.load_evaluation_view(eval_key, select_fields=False).values("id"))
        if evaluated and evaluated <= frozen:
            stale.append(eval_key)
    return stale


@dataclass(frozen=True)
class _Params:
    """:func:`create_splits` parameters with the dataset's defaults filled in."""

    test: float | int
    golden: float | int
    mining: float | int
    seed: int
    strata_fields: list
    scene_field: str | None
    duplicate_field: str | None
    source_field: str
    golden_field: str
    test_fields: list
    min_stratum_groups: int


def _resolve_params(dataset: fo.Dataset, **given) -> _Params:
    """Fill the defaults of :func:`split_defaults`; check the sizes and the seed."""
    defaults = split_defaults(dataset)
    duplicate_field = given["duplicate_field"]
    if duplicate_field is None:
        duplicate_field = defaults["duplicate_field"]
    strata_fields = given["strata_fields"]
    source_field = given["source_field"] or defaults["source_field"]
    params = _Params(
        test=_check_fraction_or_count("test", given["test"]),
        golden=_check_fraction_or_count("golden", given["golden"]),
        mining=_check_fraction_or_count("mining", given["mining"]),
        seed=given["seed"],
        strata_fields=list(defaults["strata_fields"] if strata_fields is None else strata_fields),
        scene_field=given["scene_field"] or defaults["scene_field"],
        duplicate_field=duplicate_field or None,  # "" turns the near-duplicate links off
        source_field=source_field,
        golden_field=given["golden_field"],
        test_fields=list(given["test_fields"]) if given["test_fields"] else [source_field],
        min_stratum_groups=given["min_stratum_groups"],
    )
    if isinstance(params.seed, bool) or not isinstance(params.seed, int):
        raise ValueError(f"seed must be an int; got {params.seed!r}")
    return params


def _field_names(schema: dict) -> list:
    return sorted(name for name in schema if name not in _RESERVED and not name.startswith("_"))


def _check_fields(dataset: fo.Dataset, p: _Params) -> None:
    """Every named field exists with the right type; the golden field is a new name."""
    schema = dataset.get_field_schema()
    for name, value in (("scene_field", p.scene_field), ("duplicate_field", p.duplicate_field)):
        if value is not None and dataset.get_field(value) is None:
            raise ValueError(
                f"{name} {value!r} is not a field of dataset '{dataset.name}'; choose one of "
                f"its fields {_field_names(schema)}, or leave it empty for the default"
            )
    if p.duplicate_field and not p.scene_field:
        raise ValueError("duplicate_field needs a scene_field whose values it refers to")
    missing = [f for f in p.strata_fields if f not in schema]
    if missing:
        raise ValueError(
            f"strata fields {missing} are not fields of dataset '{dataset.name}'; choose from "
            f"its fields {_field_names(schema)}, or pass [] for no stratification"
        )
    detections_field(dataset, p.source_field, "source_field")
    missing = [f for f in p.test_fields if f not in schema]
    if missing:
        raise ValueError(
            f"test_fields {missing} are not fields of dataset '{dataset.name}'; choose from "
            f"its fields {_field_names(schema)}"
        )
    golden_field = p.golden_field
    if not isinstance(golden_field, str) or not golden_field.isidentifier():
        raise ValueError(f"golden_field must be a plain field name; got {golden_field!r}")
    if golden_field == p.source_field or golden_field in p.test_fields or golden_field in _RESERVED:
        raise ValueError(
            f"golden_field {golden_field!r} must be a new field, not a source or test field"
        )


def _check_existing(
    dataset: fo.Dataset, golden_field: str, overwrite: bool
) -> tuple[bool, str | None, str | None]:
    """``(whether splits exist and are to be cleared, golden field an earlier run wrote, when
    that run drew)``."""
    existing = _existing_splits(dataset)
    previous = frozen_record(dataset)
    redraw = bool(any(existing["tagged"].values()) or existing["views"] or existing["run"])
    if redraw and not overwrite:
        raise ValueError(
            f"dataset '{dataset.name}' already has frozen splits "
            f"({existing['tagged']['test']} test and {existing['tagged']['golden']} golden "
            f"samples tagged, saved views {existing['views']}); pass overwrite=True to "
            "re-draw them (this changes which samples are frozen)"
        )
    ours = previous["params"]["golden_field"] if previous else None
    if golden_field in dataset.get_field_schema() and golden_field != ours:
        raise ValueError(
            f"field {golden_field!r} already exists and was not written by create_splits; "
            "choose another golden_field"
        )
    return redraw, ours, previous["created_at"] if previous else None


def _scene_rows(dataset, slices: dict, scene_path: str, duplicate_field, strata_fields) -> list:
    """One ``(slice, sample id, scene, link, stratum)`` row per sample, on every slice."""
    paths = ["id", scene_path] + ([duplicate_field] if duplicate_field else []) + strata_fields
    rows = []
    for name, view in slices.items():
        cols = view.values(paths)
        ids, scenes = cols[0], cols[1]
        links = cols[2] if duplicate_field else [None] * len(ids)
        strata_cols = cols[2 + bool(duplicate_field) :]
        for i, sid in enumerate(ids):
            stratum = "|".join(str(col[i]) for col in strata_cols)
            rows.append((name, sid, scenes[i], links[i], stratum))
    no_scene = sum(r[2] is None for r in rows)
    if no_scene:
        raise ValueError(
            f"{no_scene} samples have no {scene_path!r} value; every sample needs a scene"
        )
    return rows


def _components(rows: list, p: _Params) -> tuple[dict, dict]:
    """``({scene: its near-duplicate group}, {group: stratum})``; a group is stratified as
    its original. Raises on a scene whose samples lie in different strata."""
    scene_strata: dict = {}
    scene_link: dict = {}
    for _, _, scene, link, stratum in rows:
        scene_strata.setdefault(scene, set()).add(stratum)
        if link is not None:
            scene_link.setdefault(scene, link)
    mixed = [s for s, v in scene_strata.items() if len(v) > 1]
    if mixed:
        raise ValueError(
            f"{len(mixed)} scenes have different {p.strata_fields} values on different samples "
            f"(e.g. {mixed[0]!r}: {sorted(scene_strata[mixed[0]])}); "
            "strata must be scene attributes"
        )
    return duplicate_groups({s: next(iter(v)) for s, v in scene_strata.items()}, scene_link)


def _select(rows: list, components: tuple[dict, dict], p: _Params, excluded: int) -> SplitResult:
    """Select the splits by near-duplicate group; ``excluded`` scenes were left out first."""
    component, component_stratum = components
    try:
        return select_splits(
            [str(component[r[2]]) for r in rows],
            [component_stratum[component[r[2]]] for r in rows],
            test=p.test,
            golden=p.golden,
            mining=p.mining,
            seed=p.seed,
            min_stratum_groups=p.min_stratum_groups,
        )
    except ValueError as err:
        if not excluded:
            raise
        raise ValueError(
            f"{err} (reset=True left out {excluded} scenes trained on or labeled for "
            "training; ask for fewer scenes or add new ones)"
        ) from None


def _golden_labels(slices: dict, golden_ids: dict, source_field: str) -> dict:
    """``{slice: {sample id: copy of its source labels}}``; raises on a sample without any."""
    golden_labels = {}
    for name, view in slices.items():
        ids = golden_ids[name]
        if not ids:
            continue
        got_ids, labels = view.select(ids).values(["id", source_field])
        empty = [sid for sid, lab in zip(got_ids, labels) if lab is None]
        if empty:
            raise ValueError(
                f"{len(empty)} of {len(ids)} golden samples{on_slice(name)} have no "
                f"{source_field!r} labels (e.g. {empty[0]}); label them or choose another "
                "source_field"
            )
        golden_labels[name] = {sid: lab.copy() for sid, lab in zip(got_ids, labels)}
    return golden_labels


def _write_splits(dataset, slices, by_slice, picked, golden_labels, golden_field) -> None:
    """Tag the splits on every slice, write the golden labels, save the split views."""
    for split, tag in SPLIT_TAGS.items():
        for name, view in slices.items():
            if by_slice[split][name]:
                view.select(by_slice[split][name]).tag_samples(tag)
    for name, labels in golden_labels.items():
        slices[name].set_values(golden_field, labels, key_field="id")
    for split, view_name in SPLIT_VIEWS.items():
        if picked[split]:
            dataset.save_view(view_name, dataset.match_tags(SPLIT_TAGS[split]), overwrite=True)


def _split_record(p: _Params, scene_path: str, result: SplitResult, picked, prints) -> dict:
    """The run config: parameters, counts, strata, one digest per split and field."""
    return {
        "created_at": now(),
        "params": {
            "test": p.test,
            "mining": p.mining,
            "golden": p.golden,
            "seed": p.seed,
            "strata_fields": p.strata_fields,
            "scene_field": scene_path,
            "duplicate_field": p.duplicate_field,
            "source_field": p.source_field,
            "golden_field": p.golden_field,
            "test_fields": p.test_fields,
            "min_stratum_groups": p.min_stratum_groups,
        },
        "counts": {
            split: {"scenes": len(getattr(result, f"{split}_groups")), "samples": len(members)}
            for split, members in picked.items()
        },
        "strata": result.strata,
        "fingerprints": {
            split: {f: label_fingerprint(per) for f, per in fps.items()}
            for split, fps in prints.items()
        },
        "tags": dict(SPLIT_TAGS),
        "views": {split: SPLIT_VIEWS[split] for split in SPLIT_TAGS if picked[split]},
    }


def _clear_splits(dataset: fo.Dataset, slices: dict, golden_field: str | None) -> None:
    """Remove split tags, saved views, the golden field written earlier and the record."""
    for view in slices.values():
        view.untag_samples(list(SPLIT_TAGS.values()))
        if golden_field and dataset.get_field(golden_field) is not None:
            view.clear_sample_field(golden_field)
    for name in SPLIT_VIEWS.values():
        if dataset.has_saved_view(name):
            dataset.delete_saved_view(name)
    if dataset.has_run(FROZEN_RUN_KEY):
        dataset.delete_run(FROZEN_RUN_KEY)
