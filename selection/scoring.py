"""FiftyOne glue for ZCore: read stored embeddings, score, write the scores and a run record.

:func:`compute_zcore` scores a collection with :func:`.zcore.zcore_scores` and stores the
scores in a ``FloatField`` (default ``"zcore"``, the field the batch planner reads):

* **Plain collections** (and flattened views of grouped ones): one score per sample.
* **Grouped collections, ``group_score=True``** (default): the unit of selection is the
  scene, so each group is scored once and the score is written to *every* slice's sample of
  the group. Each embeddings field is read on every slice of the collection that holds it:
  a slice whose vectors equal those of a slice already read (a scene-level field such as
  ``group_embedding``, stored on each sample of a group) adds nothing; otherwise (a
  per-slice field such as ``embedding``) the group's vector is the concatenation of its
  slices' vectors in ``dataset.group_slices`` order, with zeros for a group that has no
  sample on a slice (as :mod:`.embed` does for scene embeddings).
* **Grouped collections, ``group_score=False``**: every slice holding the embeddings is
  scored on its own (its samples against each other); slices without them are skipped.
  To keep both kinds, score twice into two fields (e.g. ``zcore`` and ``zcore_slice``).

Several fields (several models) are concatenated along the feature axis, unscaled, as the
ZCore paper does (:func:`.zcore.combine_embeddings`).

Everything is checked before anything is written: unknown or non-numeric fields, samples
missing an embedding, vectors of different lengths within a slice, NaN / inf, an empty
view, and a score field that already holds scores raise a ``ValueError`` naming the field
and how many samples are affected.

Re-running refuses rather than skips: ZCore scores are min-max normalised over the scored
pool, so scores from two runs (or two views) are not comparable and must never share a
field. ``overwrite=True`` clears the field on the whole dataset, then writes the new run.

Each run is recorded as a FiftyOne custom run (method ``annoloop.zcore``, key
``annoloop_zcore_<score_field>``; see :func:`zcore_run`), so ``dataset.list_runs()`` shows it
and a delegated worker's result is visible to every client of the database.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

import fiftyone as fo

from ..core.views import slice_views
from ..core.runs import Progress, load_record, now, record_keys, save_record
from ..core.names import ZCORE_FIELD
from .embed import DEFAULT_EMBEDDINGS_FIELD, DEFAULT_GROUP_FIELD
from .algorithms.zcore import ZCoreParams, combine_embeddings, zcore_scores
from .zcore_torch import torch_engine

__all__ = [
    "BACKENDS",
    "ZCORE_RUN_KEY_PREFIX",
    "ZCORE_RUN_METHOD",
    "compute_zcore",
    "resolve_backend",
    "zcore_run",
    "zcore_run_key",
]

#: FiftyOne custom-run method and key prefix of ZCore run records.
ZCORE_RUN_METHOD = "annoloop.zcore"
ZCORE_RUN_KEY_PREFIX = "annoloop_zcore_"
BACKENDS = ("auto", "numpy", "torch")
#: Keys of a run record (see :func:`compute_zcore`'s return value).
_RECORD_KEYS = (
    "score_field",
    "embeddings_fields",
    "unit",
    "blocks",
    "dim",
    "n",
    "samples_written",
    "slices",
    "params",
    "backend",
    "device",
    "seconds",
    "scoring_seconds",
    "created_at",
)
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
#: Field types that can hold numeric vectors (the values are still checked one by one).
_VECTOR_TYPES = (fo.VectorField, fo.ArrayField, fo.ListField)


@dataclass
class _Scoring:
    """One matrix to score, where its rows' scores go, and how it was built."""

    name: str  # slice name, or "" for the whole collection
    n: int  # rows
    #: (slice or None, sample ids, row of each sample): the samples that get each row's score
    targets: list[tuple[str | None, list[str], np.ndarray]] = field(default_factory=list)
    blocks: list[np.ndarray] = field(default_factory=list)
    layout: list[dict] = field(default_factory=list)


def zcore_run_key(score_field: str = ZCORE_FIELD) -> str:
    """FiftyOne run key of the ZCore run that wrote ``score_field``."""
    return ZCORE_RUN_KEY_PREFIX + score_field


def zcore_run(dataset: fo.Dataset, score_field: str = ZCORE_FIELD) -> dict:
    """The run record of the ZCore scores in ``score_field``, as a plain dict.

    Raises
    ------
    ValueError
        When no ZCore run wrote ``score_field`` on ``dataset``.
    """
    key = zcore_run_key(score_field)
    record = load_record(dataset, key)
    if record is None:
        known = [k[len(ZCORE_RUN_KEY_PREFIX) :] for k in record_keys(dataset, ZCORE_RUN_METHOD)]
        raise ValueError(
            f"no ZCore run wrote '{score_field}' on '{dataset.name}'; ZCore score fields: {known}"
        )
    return {k: record[k] for k in _RECORD_KEYS}


def resolve_backend(backend: str = "auto", device: str | None = None) -> tuple[str, str]:
    """``(backend, device)`` to run on: ``"auto"`` is torch on CUDA when available, else numpy.

    torch is imported only to answer ``"auto"`` or ``"torch"``; ``"torch"`` without a device
    uses CUDA when available, else the CPU.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy backend runs on device 'cpu', got {device!r}")
        return "numpy", "cpu"
    try:
        import torch
    except ImportError:
        if backend == "torch":
            raise ValueError("backend 'torch' needs PyTorch, which is not installed") from None
        return "numpy", "cpu"
    cuda = torch.cuda.is_available()
    if backend == "auto":
        if device is not None:
            raise ValueError("device needs backend='torch' (or 'numpy' with device 'cpu')")
        return ("torch", "cuda") if cuda else ("numpy", "cpu")
    return "torch", device or ("cuda" if cuda else "cpu")


def compute_zcore(
    collection: fo.core.collections.SampleCollection,
    *,
    embeddings_fields: str | Sequence[str] | None = None,
    score_field: str = ZCORE_FIELD,
    group_score: bool = True,
    params: ZCoreParams | None = None,
    backend: str = "auto",
    device: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Score a collection with ZCore and store the scores on its samples.

    Parameters
    ----------
    collection : Dataset or DatasetView
        The pool to score; scores are relative to it (min-max normalised over its units).
    embeddings_fields : str or sequence of str, optional
        Vector fields to score on; several are concatenated (one per model). Default:
        ``"group_embedding"`` for grouped collections scored per group, else ``"embedding"``.
    score_field : str, default="zcore"
        ``FloatField`` to write; it must not hold scores yet unless ``overwrite``.
    group_score : bool, default=True
        Grouped collections: score each group once and write the score to all its slices'
        samples; False scores each slice's samples on their own. Ignored otherwise.
    params : ZCoreParams, optional
        Hyperparameters and seed; default ``ZCoreParams()`` (the paper's settings).
    backend : {"auto", "numpy", "torch"}, default="auto"
        See :func:`resolve_backend`.
    device : str, optional
        Torch device for ``backend="torch"``.
    overwrite : bool, default=False
        Replace an earlier run's scores in ``score_field`` (cleared on the whole dataset).
    progress : callable, optional
        Called as ``progress(fraction, label)``.

    Returns
    -------
    dict
        The run record, JSON-ready: ``score_field``, ``embeddings_fields``, ``unit``
        (``"group"``, ``"sample"`` or ``"slice sample"``), ``blocks`` (per field, the slices
        whose vectors were concatenated, and the dimension), ``dim``, ``n`` (units scored),
        ``samples_written``, ``slices`` (per scored slice: ``n``, ``dim``; per-slice
        scoring only), ``params``, ``backend``, ``device``, ``seconds`` (all),
        ``scoring_seconds`` (ZCore alone), ``created_at``; plus ``run_key``.

    Raises
    ------
    ValueError
        On bad arguments or data (see the module docstring); nothing is written then.
    """
    started = time.perf_counter()
    report = progress or (lambda fraction, label: None)
    params = ZCoreParams() if params is None else params
    if not isinstance(params, ZCoreParams):
        raise ValueError(f"params must be a ZCoreParams, got {type(params).__name__}")
    dataset = collection._dataset
    grouped = collection.media_type == "group"
    per_group = grouped and bool(group_score)
    fields = _check_fields(dataset, embeddings_fields, per_group)
    _check_score_field(dataset, score_field, fields, overwrite)
    backend, device = resolve_backend(backend, device)
    engine = torch_engine(device) if backend == "torch" else None

    report(0.0, "reading embeddings")
    if per_group:
        scorings = [_read_groups(collection, fields)]
        unit = "group"
    elif grouped:
        scorings = _read_slices(collection, fields)
        unit = "slice sample"
    else:
        scorings = [_read_samples(collection, fields)]
        unit = "sample"
    matrices = [_combine(s) for s in scorings]

    # Validation is over: from here on, compute and write.
    scores = []
    total_rows = sum(s.n for s in scorings)
    done = 0
    scoring_started = time.perf_counter()
    for scoring, x in zip(scorings, matrices):
        where = f" ({scoring.name})" if scoring.name else ""

        def step(fraction: float, offset: int = done, rows: int = scoring.n) -> None:
            report(0.05 + 0.85 * (offset + fraction * rows) / total_rows, f"scoring{where}")

        scores.append(zcore_scores(x, params, engine=engine, progress=step))
        done += scoring.n
    scoring_seconds = time.perf_counter() - scoring_started

    report(0.92, "writing scores")
    if overwrite and dataset.get_field(score_field) is not None:
        dataset.clear_sample_field(score_field)
    if dataset.get_field(score_field) is None:
        dataset.add_sample_field(score_field, fo.FloatField)
    written = _write(collection, score_field, scorings, scores)

    record = {
        "score_field": score_field,
        "embeddings_fields": fields,
        "unit": unit,
        "blocks": scorings[0].layout if len(scorings) == 1 else None,
        "dim": int(matrices[0].shape[1]) if len(matrices) == 1 else None,
        "n": total_rows,
        "samples_written": written,
        "slices": (
            {
                s.name: {"n": s.n, "dim": int(x.shape[1]), "blocks": s.layout}
                for s, x in zip(scorings, matrices)
            }
            if unit == "slice sample"
            else None
        ),
        "params": dataclasses.asdict(params),
        "backend": backend,
        "device": device,
        "seconds": round(time.perf_counter() - started, 3),
        "scoring_seconds": round(scoring_seconds, 3),
        "created_at": now(),
    }
    key = zcore_run_key(score_field)
    save_record(dataset, key, ZCORE_RUN_METHOD, record)
    report(1.0, f"ZCore scores written to '{score_field}'")
    return {**record, "run_key": key}


# --- validation ---------------------------------------------------------------------------


def _check_fields(dataset, embeddings_fields, per_group: bool) -> list[str]:
    if embeddings_fields is None:
        embeddings_fields = DEFAULT_GROUP_FIELD if per_group else DEFAULT_EMBEDDINGS_FIELD
    fields = [embeddings_fields] if isinstance(embeddings_fields, str) else list(embeddings_fields)
    if not fields:
        raise ValueError("embeddings_fields is empty; name at least one vector field")
    if len(set(fields)) != len(fields):
        raise ValueError(f"embeddings_fields lists a field twice: {fields}")
    for name in fields:
        existing = dataset.get_field(name) if isinstance(name, str) and name else None
        if existing is None:
            vectors = sorted(dataset.get_field_schema(ftype=fo.VectorField))
            raise ValueError(
                f"embeddings field {name!r} does not exist on '{dataset.name}'; vector fields: "
                f"{vectors} (run compute_embeddings first)"
            )
        element = getattr(existing, "field", None)  # a ListField's element type
        if not isinstance(existing, _VECTOR_TYPES) or (
            element is not None and not isinstance(element, (fo.FloatField, fo.IntField))
        ):
            kind = type(existing).__name__ + (f" of {type(element).__name__}" if element else "")
            raise ValueError(
                f"embeddings field '{name}' is a {kind}, not a numeric "
                "vector field (VectorField, ArrayField or ListField of numbers)"
            )
    return fields


def _check_score_field(dataset, score_field: str, fields: list[str], overwrite: bool) -> None:
    if not isinstance(score_field, str) or not _FIELD_NAME.match(score_field):
        raise ValueError(
            "score_field must be 1-64 letters, digits or underscores starting with a letter, "
            f"got {score_field!r}"
        )
    if score_field in fields:
        raise ValueError(f"score_field '{score_field}' is one of the embeddings fields")
    existing = dataset.get_field(score_field)
    if existing is not None and not isinstance(existing, fo.FloatField):
        raise ValueError(
            f"score_field '{score_field}' already exists as a {type(existing).__name__}; "
            "it must be a FloatField or not exist"
        )
    if overwrite:
        return
    scored = _count_everywhere(dataset, score_field) if existing is not None else 0
    if scored or dataset.has_run(zcore_run_key(score_field)):
        raise ValueError(
            f"'{score_field}' already holds ZCore scores ({scored} samples) on "
            f"'{dataset.name}'; scores of two runs are not comparable, so pass overwrite=True "
            "to replace them or choose another score_field"
        )


def _count_everywhere(dataset, path: str) -> int:
    """Samples with a value at ``path``, over all slices of a grouped dataset."""
    if dataset.media_type != "group":
        return dataset.count(path)
    return dataset.select_group_slices(_allow_mixed=True).count(path)


def _stack(field_name: str, where: str, vectors: list) -> np.ndarray:
    """The (present) vectors as the rows of one float32 matrix.

    Raises a ValueError naming the field and the counts for non-numeric values and for
    vectors of different lengths.
    """
    arrays = []
    for v in vectors:
        try:
            arr = np.asarray(v, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(
                f"embeddings field '{field_name}' holds non-numeric values "
                f"({type(v).__name__}) {where}"
            ) from None
        if arr.ndim != 1:
            raise ValueError(
                f"embeddings field '{field_name}' holds values of shape {arr.shape} {where}; "
                "each must be a 1-D vector"
            )
        arrays.append(arr)
    lengths, counts = np.unique([len(a) for a in arrays], return_counts=True)
    if len(lengths) > 1:
        spread = ", ".join(f"{c} of length {n}" for n, c in zip(lengths, counts))
        raise ValueError(
            f"embeddings field '{field_name}' has vectors of {len(lengths)} different lengths "
            f"{where} ({spread}); one field must hold one embedding space per slice"
        )
    return np.stack(arrays)


def _missing_error(field_name: str, missing: int, total: int, where: str) -> ValueError:
    return ValueError(
        f"embeddings field '{field_name}' is missing on {missing} of {total} samples {where}; "
        "run compute_embeddings on them, or score a view without them"
    )


def _combine(scoring: _Scoring) -> np.ndarray:
    """The scoring's blocks as one matrix; NaN / inf rows are reported per field."""
    for block, part in zip(scoring.blocks, scoring.layout):
        try:
            combine_embeddings(block)
        except ValueError as error:
            where = f" on slice(s) {part['slices']}" if part["slices"] else ""
            raise ValueError(f"embeddings field '{part['field']}'{where}: {error}") from None
    return combine_embeddings(scoring.blocks)


# --- reading ------------------------------------------------------------------------------


def _read_samples(collection, fields: list[str], name: str = "") -> _Scoring:
    """One row per sample of a non-grouped collection (or one slice of a grouped one)."""
    where = f"on slice '{name}'" if name else "in the collection"
    values = collection.values(["id", *fields])
    if not values[0]:
        raise ValueError(f"the collection has no samples to score {where}".rstrip())
    ids = values[0]
    scoring = _Scoring(name, len(ids), [(name or None, ids, np.arange(len(ids)))])
    for field_name, vectors in zip(fields, values[1:]):
        present = [v is not None for v in vectors]
        if not all(present):
            raise _missing_error(field_name, present.count(False), len(vectors), where)
        matrix = _stack(field_name, where, vectors)
        scoring.blocks.append(matrix)
        scoring.layout.append(
            {"field": field_name, "slices": [name] if name else [], "dim": matrix.shape[1]}
        )
    return scoring


def _read_slices(collection, fields: list[str]) -> list[_Scoring]:
    """Per-slice scoring: every slice of a grouped collection that holds the embeddings."""
    scorings = []
    for slice_name, view in slice_views(collection).items():
        counts = [view.count(f) for f in fields]
        if not any(counts):
            continue  # e.g. a slice that was never embedded
        for field_name, count in zip(fields, counts):
            if count == 0:
                raise ValueError(
                    f"embeddings field '{field_name}' has no values on slice '{slice_name}', "
                    f"where {[f for f, c in zip(fields, counts) if c]} do; per-slice scoring "
                    "needs every field on every scored slice"
                )
        scorings.append(_read_samples(view, fields, slice_name))
    if not scorings:
        if not any(len(view) for view in slice_views(collection).values()):
            raise ValueError("the collection has no samples to score")
        raise ValueError(f"no slice of the collection holds {fields}; run compute_embeddings first")
    return scorings


def _read_groups(collection, fields: list[str]) -> _Scoring:
    """One row per group: each field's slices, a repeated (scene-level) block taken once."""
    dataset = collection._dataset
    group_id = f"{dataset.group_field}.id"
    per_slice = {}
    for slice_name, view in slice_views(collection).items():
        values = view.values(["id", group_id, *fields])
        if values[0]:
            per_slice[slice_name] = values
    if not per_slice:
        raise ValueError("the collection has no samples to score")
    groups = sorted({g for values in per_slice.values() for g in values[1]})
    row = {g: i for i, g in enumerate(groups)}
    scoring = _Scoring("", len(groups))
    for slice_name, (ids, gids, *_) in per_slice.items():
        scoring.targets.append((slice_name, ids, np.array([row[g] for g in gids])))

    for f, field_name in enumerate(fields):
        taken: list[tuple[np.ndarray, np.ndarray, list[str]]] = []  # (block, has rows, slices)
        for (slice_name, (ids, _, *vectors)), (_, _, rows) in zip(
            per_slice.items(), scoring.targets
        ):
            where = f"on slice '{slice_name}'"
            present = [v is not None for v in vectors[f]]
            if not any(present):
                continue  # this field does not live on this slice
            if not all(present):
                raise _missing_error(field_name, present.count(False), len(ids), where)
            matrix = _stack(field_name, where, vectors[f])
            block = np.zeros((len(groups), matrix.shape[1]), dtype=np.float32)
            block[rows] = matrix
            has = np.zeros(len(groups), dtype=bool)
            has[rows] = True
            for earlier, earlier_has, slices in taken:
                both = earlier_has & has
                if (
                    earlier.shape == block.shape
                    and both.any()
                    and np.array_equal(earlier[both], block[both])
                ):
                    # The same scene vector stored on another slice: fill the groups that
                    # lack a sample on the earlier slice, add no dimensions.
                    earlier[has & ~earlier_has] = block[has & ~earlier_has]
                    earlier_has |= has
                    slices.append(slice_name)
                    break
            else:
                taken.append((block, has, [slice_name]))
        if not taken:
            raise ValueError(
                f"embeddings field '{field_name}' has no values in the collection; "
                "run compute_embeddings first"
            )
        for block, _, slices in taken:
            scoring.blocks.append(block)
            scoring.layout.append({"field": field_name, "slices": slices, "dim": block.shape[1]})
    return scoring



# --- writing ------------------------------------------------------------------------------


def _write(collection, score_field: str, scorings: list[_Scoring], scores: list) -> int:
    """Bulk-write each row's score to its samples; returns the number of samples written."""
    written = 0
    for scoring, row_scores in zip(scorings, scores):
        for slice_name, ids, rows in scoring.targets:
            view = collection.select_group_slices(slice_name) if slice_name else collection
            view.set_values(score_field, dict(zip(ids, row_scores[rows].tolist())), key_field="id")
            written += len(ids)
    return written
