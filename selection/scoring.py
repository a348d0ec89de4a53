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
and a delegated worker's result is visible to every client of the database. Once the
scores exist, one step under the dataset's lock records the run ``started``, writes the
scores and rewrites the record ``completed`` (``failed`` if writing raised); while scoring
and writing, the run holds a liveness lock (:func:`..core.locks.run_lock`). A run killed
while scoring leaves nothing; a record left ``started`` by a run that is no longer alive
(killed mid-write), or ``failed``, is an unfinished run, and a re-run replaces it and its
partial scores without ``overwrite``: a killed worker never makes the re-run demand it.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence

import fiftyone as fo

from ..core.locks import RUN_LEASE_S, dataset_lock, run_is_alive, run_lock
from ..core.runs import (
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_STARTED,
    Progress,
    load_record,
    now,
    record_keys,
    save_record,
)
from ..core.names import ZCORE_FIELD
from .embed import DEFAULT_EMBEDDINGS_FIELD, DEFAULT_GROUP_FIELD
from .algorithms.zcore import ZCoreParams, check_sample_dim, zcore_scores
from .score_matrices import (
    ScoreMatrix,
    read_groups,
    read_samples,
    read_slices,
    to_matrix,
    write_scores,
)
from .visualization import vector_fields
from .zcore_torch import torch_engine

__all__ = [
    "BACKENDS",
    "ZCORE_RUN_KEY_PREFIX",
    "ZCORE_RUN_METHOD",
    "compute_zcore",
    "default_embeddings_field",
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
    "status",
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
    "shards",
    "created_at",
)
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
#: Field types that can hold numeric vectors (the values are still checked one by one).
_VECTOR_TYPES = (fo.VectorField, fo.ArrayField, fo.ListField)


def zcore_run_key(score_field: str = ZCORE_FIELD) -> str:
    """FiftyOne run key of the ZCore run that wrote ``score_field``."""
    return ZCORE_RUN_KEY_PREFIX + score_field


def zcore_run(dataset: fo.Dataset, score_field: str = ZCORE_FIELD) -> dict:
    """The run record of the ZCore scores in ``score_field``, as a plain dict.

    Raises
    ------
    ValueError
        When no ZCore run wrote ``score_field`` on ``dataset``, or the run has not completed.
    """
    key = zcore_run_key(score_field)
    record = load_record(dataset, key)
    if record is None:
        known = [k[len(ZCORE_RUN_KEY_PREFIX) :] for k in record_keys(dataset, ZCORE_RUN_METHOD)]
        raise ValueError(
            f"no ZCore run wrote '{score_field}' on '{dataset.name}'; ZCore score fields: {known}"
        )
    record = {"status": STATUS_COMPLETED, **record}  # records older than the status key
    if record["status"] != STATUS_COMPLETED:
        state = (
            "is still running"
            if record["status"] == STATUS_STARTED and run_is_alive(dataset, key)
            else "did not finish (its worker was killed, or it failed); run compute_zcore "
            "again, without overwrite, to replace it"
        )
        raise ValueError(
            f"the ZCore run of '{score_field}' on '{dataset.name}' started at "
            f"{record['created_at']} {state}"
        )
    return {k: record.get(k) for k in _RECORD_KEYS}


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
        :func:`default_embeddings_field` (``"group_embedding"`` for grouped collections
        scored per group, else ``"embedding"``, else the first vector field).
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
    run = prepare_run(collection, embeddings_fields, score_field, group_score, params, overwrite)
    backend, device = resolve_backend(backend, device)
    engine = torch_engine(device) if backend == "torch" else None
    report(0.0, "reading embeddings")
    run = run.read(report)

    # Validation is over. The liveness lock is held from here on; the record and the scores
    # are written in one locked step once the scores exist, so a run killed (or failing)
    # while scoring writes nothing.
    with run_lock(run.dataset, run.key, "compute_zcore", run.what):
        scoring_started = time.perf_counter()
        scores = _score(run.scorings, run.matrices, params, engine, report)
        extra = {
            "backend": backend,
            "device": device,
            "scoring_seconds": round(time.perf_counter() - scoring_started, 3),
        }
        record = write_run(run, scores, extra, started, report)
    report(1.0, f"ZCore scores written to '{score_field}'")
    return record


@dataclasses.dataclass(frozen=True)
class PreparedRun:
    """A checked ZCore run: where it reads and writes, and (once read) what it scores."""

    collection: fo.core.collections.SampleCollection
    score_field: str
    fields: list[str]
    per_group: bool
    params: ZCoreParams
    overwrite: bool
    unit: str = ""
    scorings: tuple = ()
    matrices: tuple = ()

    @property
    def dataset(self) -> fo.Dataset:
        return self.collection._dataset

    @property
    def key(self) -> str:
        return zcore_run_key(self.score_field)

    @property
    def what(self) -> str:
        return f"ZCore scores '{self.score_field}' of '{self.dataset.name}'"

    def read(self, report: Progress | None = None) -> PreparedRun:
        """The run with its matrices read and checked (sample_dim against each)."""
        unit, scorings = _read(self.collection, self.fields, self.per_group)
        matrices = [to_matrix(s) for s in scorings]
        for x in matrices:
            check_sample_dim(self.params.sample_dim, x.shape[1])
        return dataclasses.replace(
            self, unit=unit, scorings=tuple(scorings), matrices=tuple(matrices)
        )


def prepare_run(
    collection, embeddings_fields, score_field: str, group_score: bool, params, overwrite: bool
) -> PreparedRun:
    """Check a run's arguments against the dataset (nothing read or written yet)."""
    if not isinstance(params, ZCoreParams):
        raise ValueError(f"params must be a ZCoreParams, got {type(params).__name__}")
    dataset = collection._dataset
    per_group = collection.media_type == "group" and bool(group_score)
    fields = _check_fields(dataset, embeddings_fields, per_group)
    _check_score_field(dataset, score_field, fields, overwrite)
    return PreparedRun(collection, score_field, fields, per_group, params, bool(overwrite))


def write_run(
    run: PreparedRun,
    scores: list,
    extra: dict,
    started: float,
    report: Progress,
    started_at: str | None = None,
) -> dict:
    """Write a run's scores and its ``completed`` record in one step under the dataset lock.

    A fresh run (``started_at`` None) is checked once more and recorded ``started`` first;
    a sharded run was recorded ``started`` when it was planned (``started_at``). The record
    is ``failed`` if writing raises. Returns the record, with ``run_key``.
    """
    dataset, score_field, fields, params = run.dataset, run.score_field, run.fields, run.params
    report(0.92, "writing scores")
    with dataset_lock(dataset, "compute_zcore"):
        if started_at is None:
            started_at = _start(dataset, score_field, fields, params, run.overwrite)
        try:
            # Validation left nothing here but an earlier run's scores that overwrite
            # replaces, or an unfinished run's partial ones.
            if dataset.get_field(score_field) is not None:
                dataset.clear_sample_field(score_field)
            else:
                dataset.add_sample_field(score_field, fo.FloatField)
            written = write_scores(
                run.collection, score_field, list(run.scorings), scores,
                lambda label: report(0.95, label),
            )
        except BaseException as error:
            record = unfinished_record(score_field, fields, params, started_at, STATUS_FAILED)
            save_record(dataset, run.key, ZCORE_RUN_METHOD, {**record, "error": repr(error)})
            raise
        scorings, matrices = run.scorings, run.matrices
        record = {
            "status": STATUS_COMPLETED,
            "score_field": score_field,
            "embeddings_fields": fields,
            "unit": run.unit,
            "blocks": scorings[0].layout if len(scorings) == 1 else None,
            "dim": int(matrices[0].shape[1]) if len(matrices) == 1 else None,
            "n": sum(s.n for s in scorings),
            "samples_written": written,
            "slices": (
                {
                    s.name: {"n": s.n, "dim": int(x.shape[1]), "blocks": s.layout}
                    for s, x in zip(scorings, matrices)
                }
                if run.unit == "slice sample"
                else None
            ),
            "params": dataclasses.asdict(params),
            **extra,
            "seconds": round(time.perf_counter() - started, 3),
            "created_at": started_at,
        }
        save_record(dataset, run.key, ZCORE_RUN_METHOD, record)
    return {**record, "run_key": run.key}


def _start(dataset, score_field: str, fields: list[str], params: ZCoreParams, overwrite: bool):
    """Check the score field again, on a fresh copy of the dataset document (another run may
    have finished since validation), and record the run ``started``; its start time.

    The caller holds the dataset's lock, so check and write are one step.
    """
    dataset.reload()
    _check_score_field(dataset, score_field, fields, overwrite)
    started_at = now()
    record = unfinished_record(score_field, fields, params, started_at, STATUS_STARTED)
    save_record(dataset, zcore_run_key(score_field), ZCORE_RUN_METHOD, record)
    return started_at


def unfinished_record(score_field, fields, params, started_at: str, status: str) -> dict:
    """The record of a run that has not completed: what it scores, with what, since when."""
    return {
        "status": status,
        "score_field": score_field,
        "embeddings_fields": fields,
        "params": dataclasses.asdict(params),
        "created_at": started_at,
    }


def _unfinished_run(dataset, score_field: str) -> bool:
    """Whether ``score_field``'s record is an unfinished run's (killed, or failed) that a
    re-run replaces; refuses while another process's run is writing the field."""
    key = zcore_run_key(score_field)
    record = load_record(dataset, key)
    status = (record or {}).get("status", STATUS_COMPLETED)
    shards = sharded_run_in_progress(dataset, record)
    if shards:
        raise ValueError(
            f"a sharded ZCore run started at {record['created_at']} is scoring "
            f"'{score_field}' on '{dataset.name}' ({shards}); wait for its shards to finish "
            "(the panel's jobs section lists them), or fail them and start it again"
        )
    if status == STATUS_STARTED and run_is_alive(dataset, key):
        raise ValueError(
            f"a ZCore run started at {record['created_at']} is writing '{score_field}' on "
            f"'{dataset.name}' now; wait for it to finish (a killed run counts as dead "
            f"{RUN_LEASE_S:.0f} s after it died, and running this again then replaces it)"
        )
    return status in (STATUS_STARTED, STATUS_FAILED)


def sharded_run_in_progress(dataset: fo.Dataset, record: dict) -> str | None:
    """How far an unfinished sharded run is, when any shard is queued or being scored (or
    its scores are being written); None when nothing of it is alive.

    A shard counts as alive while its operation is queued (a worker will take it) or its
    liveness lock is held; an operation left ``running`` by a killed worker is not.
    """
    sharding = (record or {}).get("sharding")
    if not sharding or record.get("status") != STATUS_STARTED:
        return None
    from bson import ObjectId
    from fiftyone.operators.delegated import DelegatedOperationService
    from fiftyone.operators.executor import ExecutionRunState

    key = zcore_run_key(record["score_field"])
    service = DelegatedOperationService()
    alive = run_is_alive(dataset, key)
    for shard, op_id in sharding["operations"].items():
        if shard in sharding["done"]:
            continue
        try:
            op = service.get(ObjectId(op_id))
        except ValueError:  # deleted from the queue
            op = None
        queued = op is not None and op.run_state in (
            ExecutionRunState.QUEUED, ExecutionRunState.SCHEDULED
        )
        alive = alive or queued or run_is_alive(dataset, shard_lock_key(key, int(shard)))
    if not alive:
        return None
    return f"{len(sharding['done'])} of {sharding['n_shards']} shards done"


def shard_lock_key(run_key: str, shard: int) -> str:
    """Liveness-lock key of one shard of a sharded run (see :mod:`.zcore_shards`)."""
    return f"{run_key}/shard{shard}"


def _read(collection, fields: list[str], per_group: bool) -> tuple[str, list[ScoreMatrix]]:
    """The unit of selection and the matrices to score (see the module docstring)."""
    if per_group:
        return "group", [read_groups(collection, fields)]
    if collection.media_type == "group":
        return "slice sample", read_slices(collection, fields)
    return "sample", [read_samples(collection, fields)]


def _score(
    scorings: list[ScoreMatrix], matrices: list, params: ZCoreParams, engine, report
) -> list:
    """ZCore scores of each matrix, progress spread over their rows (5 % .. 90 %)."""
    scores = []
    total_rows = sum(s.n for s in scorings)
    done = 0
    for scoring, x in zip(scorings, matrices):
        where = f" ({scoring.name})" if scoring.name else ""

        def step(fraction: float, offset: int = done, rows: int = scoring.n) -> None:
            report(0.05 + 0.85 * (offset + fraction * rows) / total_rows, f"scoring{where}")

        scores.append(zcore_scores(x, params, engine=engine, progress=step))
        done += scoring.n
    return scores


# --- validation ---------------------------------------------------------------------------


def default_embeddings_field(dataset: fo.Dataset, per_group: bool) -> str:
    """The field scored when none is named (the operator's form preselects it too).

    The scene embedding when scoring groups, else ``embedding``, else the first vector
    field; the preferred name when the dataset has none (its check then says so).
    """
    preferred = [DEFAULT_GROUP_FIELD] if per_group else []
    preferred.append(DEFAULT_EMBEDDINGS_FIELD)
    fields = vector_fields(dataset)
    return next((f for f in preferred if f in fields), fields[0] if fields else preferred[0])


def _check_fields(dataset, embeddings_fields, per_group: bool) -> list[str]:
    if embeddings_fields is None:
        embeddings_fields = default_embeddings_field(dataset, per_group)
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
    if _unfinished_run(dataset, score_field) or overwrite:
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


