"""The pool a batch is picked from: which units are plannable, why the others are not, and
the numbers the planner reads for them (embeddings, ZCore scores, uncertainty).

**Units.** On a grouped dataset the unit of selection is the scene (the group): its
embedding is read from one slice (default the dataset's default slice; a scene embedding
such as ``group_embedding`` is the same on every slice). On a flat dataset the unit is the
sample.

**Pool, labeled, excluded** come from the whole dataset's :mod:`..core.catalog`, never from
the caller's view. The *pool* is the units of the caller's view that are not labeled; the
*excluded* ones among them (frozen, quarantined, already batched) are handed to the planner
as ``excluded`` rows, so the planner itself refuses them even when the view contains them.
Labeled and batched units outside the frozen splits are the ``labeled_embeddings`` that
coverage measures against.

**Uncertainty** (``targeting_source="uncertainty"``) needs no labels and no evaluation:
each pool unit is scored by :func:`.uncertainty.detection_uncertainty` from the confidences
of the model's predictions on it (``<uncertainty_field>.detections.confidence``, written by
``apply_detector`` with target ``"pool"``), read on one image slice (default the
embeddings' slice when it holds images, else the first image slice). A unit whose
predictions are set but empty scores 0 (the model sees nothing there); every selectable
pool unit must have predictions, else nothing is planned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import fiftyone as fo

from ..core.catalog import UnitCatalog, read_catalog, unit_path, units_where
from ..core.names import DEFAULT_GT_FIELD, ZCORE_FIELD
from ..core.views import camera_slices
from .algorithms.uncertainty import detection_uncertainty
from ..core.vector_reads import is_vector_field, read_vectors

__all__ = [
    "Pool",
    "UnitTable",
    "check_embeddings_field",
    "check_label_field",
    "check_slice",
    "check_uncertainty_field",
    "default_uncertainty_slice",
    "embedding_fields",
    "read_pool",
    "refuse_missing",
    "refuse_nothing_to_pick",
]

#: Why a pool unit is held back (:meth:`UnitCatalog.excluded_counts` keys), in words.
_EXCLUSION_WORDS = {
    "frozen": "frozen (test, mining or golden)",
    "quarantined": "quarantined",
    "batched": "already in a batch",
}
_APPLY_TO_POOL = "apply the detector to the pool first (apply_detector with target 'pool')"


# --- fields and slices --------------------------------------------------------------------


def embedding_fields(dataset: fo.Dataset, slice_name: str | None = None) -> list[str]:
    """Top-level fields of the (slice's) samples that can hold embeddings: vector fields
    and lists of numbers."""
    view = dataset.select_group_slices(slice_name) if slice_name else dataset
    return sorted(
        name for name, field in view.get_field_schema().items() if is_vector_field(field)
    )


def default_uncertainty_slice(dataset: fo.Dataset, slice_name: str | None = None) -> str | None:
    """The slice whose predictions score a scene's uncertainty: ``slice_name`` (default the
    dataset's default slice) when it holds images, else the first image slice; None for a
    flat dataset or a grouped one without image slices."""
    images = camera_slices(dataset)
    preferred = slice_name or dataset.default_group_slice
    return preferred if preferred in images else next(iter(images), None)


def check_slice(dataset: fo.Dataset, slice_name: str | None) -> str | None:
    """The embeddings' slice: ``slice_name`` or the default slice (None for a flat dataset)."""
    if dataset.media_type != "group":
        if slice_name:
            raise ValueError(
                f"dataset '{dataset.name}' is not grouped; it has no slice {slice_name!r}"
            )
        return None
    slice_name = slice_name or dataset.default_group_slice
    if slice_name not in dataset.group_slices:
        raise ValueError(
            f"slice {slice_name!r} does not exist in '{dataset.name}'; "
            f"slices: {dataset.group_slices}"
        )
    return slice_name


def check_embeddings_field(dataset: fo.Dataset, name: str, slice_name: str | None) -> None:
    """Refuse an embeddings field that is not a vector field of the slice's samples."""
    reference = dataset.select_group_slices(slice_name) if slice_name else dataset
    field = reference.get_field(name)
    if field is None or not is_vector_field(field):
        where = f" on slice '{slice_name}'" if slice_name else ""
        what = "does not exist" if field is None else f"is a {type(field).__name__}, not a vector"
        raise ValueError(
            f"embeddings field '{name}' {what}{where} of '{dataset.name}'; vector fields: "
            f"{embedding_fields(dataset, slice_name)} (compute embeddings first)"
        )


def check_label_field(dataset: fo.Dataset, label_field: str | None) -> str:
    """``label_field``, which must exist when given; default ``ground_truth`` (may be absent)."""
    if label_field is None:
        return DEFAULT_GT_FIELD
    if not isinstance(label_field, str) or dataset.get_field(label_field) is None:
        raise ValueError(f"label field {label_field!r} does not exist on '{dataset.name}'")
    return label_field


def check_uncertainty_field(
    dataset: fo.Dataset, field: str, slice_name: str | None, embeddings_slice: str | None
) -> str | None:
    """The slice to read predictions from (None for flat datasets), after checking that
    ``field`` is a Detections field there."""
    if dataset.media_type == "group":
        images = camera_slices(dataset)
        if slice_name is None:
            slice_name = default_uncertainty_slice(dataset, embeddings_slice)
        if slice_name not in images:
            raise ValueError(
                f"uncertainty_slice must be an image slice of '{dataset.name}' (predictions "
                f"are per image); got {slice_name!r}, image slices: {images}"
            )
    elif slice_name:
        raise ValueError(f"dataset '{dataset.name}' is not grouped; it has no slice {slice_name!r}")
    view = dataset.select_group_slices(slice_name) if slice_name else dataset
    found = view.get_field(field) if isinstance(field, str) and field else None
    where = f" on slice '{slice_name}'" if slice_name else ""
    if found is None:
        raise ValueError(
            f"predictions field {field!r} does not exist{where} of '{dataset.name}'; "
            f"{_APPLY_TO_POOL}"
        )
    if not (
        isinstance(found, fo.EmbeddedDocumentField)
        and issubclass(found.document_type, fo.Detections)
    ):
        kind = getattr(found, "document_type", type(found)).__name__
        raise ValueError(
            f"predictions field '{field}'{where} holds {kind}, not Detections; {_APPLY_TO_POOL}"
        )
    return slice_name


def refuse_missing(mask: np.ndarray, field: str, what: str, slice_name, hint: str = "") -> None:
    """Raise, with the count, when ``mask`` flags any of ``what`` as lacking ``field``."""
    count = int(np.count_nonzero(mask))
    if count:
        where = f" on slice '{slice_name}'" if slice_name else ""
        raise ValueError(
            f"{count} of {len(mask)} {what} have no '{field}'{where}; "
            f"{hint or 'compute their embeddings first'}"
        )


def refuse_nothing_to_pick(
    catalog: UnitCatalog, view_units: frozenset, units: list, excluded: np.ndarray, label_field: str
) -> None:
    """Raise when the view leaves no unit to pick: it is empty, or every unit of it is
    labeled or excluded (the message counts each reason; a unit may have several)."""
    noun = catalog.noun
    if not view_units:
        raise ValueError(
            f"the view is empty: it holds no {noun}s to plan from; plan on the dataset or on "
            "a view that holds samples"
        )
    if not units or excluded.all():
        counts = catalog.excluded_counts(units)
        reasons = [f"{len(view_units) - len(units)} labeled in '{label_field}'"] + [
            f"{counts[key]} {words}" for key, words in _EXCLUSION_WORDS.items() if counts[key]
        ]
        raise ValueError(
            f"every {noun} of the view is already labeled or held back: of its "
            f"{len(view_units)} {noun}s, {', '.join(reasons)}; nothing is left to plan. Plan "
            f"on a view with unlabeled {noun}s outside the frozen splits and earlier batches"
        )


# --- per-unit values ----------------------------------------------------------------------


@dataclass
class UnitTable:
    """Per-unit values of the reference slice: embeddings (and ZCore scores)."""

    row: dict  # unit id -> row
    vectors: np.ndarray  # (units, dim) float32, zeros where missing
    missing: np.ndarray  # (units,) bool
    zcore: np.ndarray | None
    field: str

    @classmethod
    def read(
        cls, reference, path: str, field: str, with_zcore: bool, order: Sequence[str] = ()
    ) -> UnitTable:
        """Read ``field`` (and :data:`ZCORE_FIELD`) of every sample of ``reference`` in bulk
        (:func:`..core.vector_reads.read_vectors`); the units of ``order`` take the first rows."""
        extra = []
        if with_zcore:
            if reference.get_field(ZCORE_FIELD) is None:
                raise ValueError(
                    f"coverage_method='zcore' needs per-sample scores in '{ZCORE_FIELD}'; "
                    "run compute_zcore first"
                )
            extra.append(ZCORE_FIELD)
        read = read_vectors(reference, path, field, order=order, extra_fields=extra)
        zcore = None
        if with_zcore:
            zcore = np.array([np.nan if s is None else float(s) for s in read.extras[0]])
        return cls(read.row, read.vectors, read.missing, zcore, field)

    def head(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of the first ``n`` rows (a view, not a copy) and which are missing."""
        return self.vectors[:n], self.missing[:n]

    def index(self, units: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``units`` (-1 where the reference slice has no sample) and that mask."""
        rows = np.array([self.row.get(u, -1) for u in units], dtype=np.int64)
        return rows, rows < 0

    def rows(self, units: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of ``units`` and which of them are missing."""
        rows, absent = self.index(units)
        safe = np.where(absent, 0, rows)
        vectors = self.vectors[safe] if len(self.vectors) else np.zeros((len(units), 1), np.float32)
        missing = absent | self.missing[safe] if len(self.missing) else absent
        vectors[missing] = 0.0
        return vectors, missing

    def scores(self, units: Sequence[str]) -> np.ndarray:
        """ZCore scores of ``units`` (NaN where missing)."""
        rows, absent = self.index(units)
        return np.where(absent, np.nan, self.zcore[np.where(absent, 0, rows)])


# --- the pool -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """The planner's rows: the unlabeled units of the caller's view and what it reads of them.

    ``units`` are the rows, in order; ``excluded`` flags the rows the planner may not pick.
    """

    catalog: UnitCatalog
    view_units: frozenset
    units: list
    excluded: np.ndarray
    embeddings: np.ndarray
    coverage_scores: np.ndarray | None
    uncertainty_scores: np.ndarray | None
    labeled_embeddings: np.ndarray
    labeled_without_embeddings: int
    table: UnitTable

    def counts(self) -> dict:
        """Pool sizes for the plan's result and record."""
        return {
            "view": len(self.view_units),
            "pool": len(self.units),
            "selectable": int(np.count_nonzero(~self.excluded)),
            "excluded": self.catalog.excluded_counts(self.units),
            "labeled": len(self.labeled_embeddings) + self.labeled_without_embeddings,
            "labeled_without_embeddings": self.labeled_without_embeddings,
        }


def read_pool(
    samples: fo.core.collections.SampleCollection,
    dataset: fo.Dataset,
    *,
    embeddings_field: str,
    slice_name: str | None,
    label_field: str,
    with_zcore: bool,
    uncertainty: tuple[str, str | None] | None,
) -> Pool:
    """The pool of ``samples`` (a view of ``dataset``), checked: every selectable row has its
    embedding (and ZCore score, and predictions when ``uncertainty`` is ``(field, slice)``)."""
    catalog = read_catalog(dataset, label_field)
    # A view without stages is the whole dataset, whose units the catalog just read: a
    # second pass over every sample costs ~10 s at 10^6.
    whole = isinstance(samples, fo.Dataset) or not samples._stages
    view_units = catalog.units if whole else frozenset(units_where(samples))
    units = sorted(view_units - catalog.labeled)
    held_back = catalog.excluded  # a property that builds a set: build it once
    excluded = np.fromiter((u in held_back for u in units), dtype=bool, count=len(units))
    refuse_nothing_to_pick(catalog, view_units, units, excluded, label_field)
    reference = dataset.select_group_slices(slice_name) if slice_name else dataset
    # The pool's units take the table's first rows: its embeddings are a view of the table.
    table = UnitTable.read(reference, unit_path(dataset), embeddings_field, with_zcore, units)
    noun = catalog.noun
    embeddings, missing = table.head(len(units))
    refuse_missing(missing & ~excluded, embeddings_field, f"pool {noun}s", slice_name)
    scores = None
    if with_zcore:
        scores = table.scores(units)
        refuse_missing(
            np.isnan(scores) & ~excluded, ZCORE_FIELD, f"pool {noun}s", slice_name,
            hint="run compute_zcore first",
        )
        scores = np.where(excluded, 0.0, scores)
    uncertainty_scores = (
        _read_uncertainty(dataset, *uncertainty, units, excluded, noun) if uncertainty else None
    )
    labeled, labeled_missing = table.rows(sorted(catalog.covered))
    return Pool(
        catalog=catalog,
        view_units=view_units,
        units=units,
        excluded=excluded,
        embeddings=embeddings,
        coverage_scores=scores,
        uncertainty_scores=uncertainty_scores,
        labeled_embeddings=labeled[~labeled_missing],
        labeled_without_embeddings=int(np.count_nonzero(labeled_missing)),
        table=table,
    )


def _read_uncertainty(
    dataset, field: str, slice_name, pool_units, excluded, noun: str
) -> np.ndarray:
    """Uncertainty score per pool unit from the confidences of its predictions (see
    :mod:`.uncertainty`); excluded units need none and score 0."""
    view = dataset.select_group_slices(slice_name) if slice_name else dataset
    units, confidences = view.values([unit_path(dataset), f"{field}.detections.confidence"])
    by_unit = dict(zip(units, confidences))
    # None: the field is unset (no prediction ran); []: the model detected nothing.
    rows = [None if skip else by_unit.get(u) for u, skip in zip(pool_units, excluded)]
    missing = np.array([r is None for r in rows]) & ~excluded
    refuse_missing(missing, field, f"pool {noun}s", slice_name, hint=_APPLY_TO_POOL)
    unscored = [u for u, r in zip(pool_units, rows) if r and any(c is None for c in r)]
    if unscored:
        raise ValueError(
            f"{len(unscored)} pool {noun}s have detections without a confidence in '{field}'; "
            "uncertainty needs the detector's confidences"
        )
    return detection_uncertainty([r or [] for r in rows])
