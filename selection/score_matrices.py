"""The matrices ZCore scores, read from stored embeddings, and where each row's score goes.

A :class:`ScoreMatrix` is one pool to score: the whole collection, one slice, or the scenes
of a grouped collection (one row per group, the slices' vectors concatenated). Reading
checks every vector (missing, non-numeric, ragged, NaN / inf) and says which field and how
many samples; :func:`write_scores` writes each row's score to all its samples in bulk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..core.views import slice_views
from .algorithms.zcore import combine_embeddings

__all__ = ["ScoreMatrix", "read_groups", "read_samples", "read_slices", "to_matrix", "write_scores"]


@dataclass
class ScoreMatrix:
    """One matrix to score, where its rows' scores go, and how it was built."""

    name: str  # slice name, or "" for the whole collection
    n: int  # rows
    #: (slice or None, sample ids, row of each sample): the samples that get each row's score
    targets: list[tuple[str | None, list[str], np.ndarray]] = field(default_factory=list)
    blocks: list[np.ndarray] = field(default_factory=list)
    layout: list[dict] = field(default_factory=list)


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


def to_matrix(scoring: ScoreMatrix) -> np.ndarray:
    """The scoring's blocks as one matrix; NaN / inf rows are reported per field."""
    for block, part in zip(scoring.blocks, scoring.layout):
        try:
            combine_embeddings(block)
        except ValueError as error:
            where = f" on slice(s) {part['slices']}" if part["slices"] else ""
            raise ValueError(f"embeddings field '{part['field']}'{where}: {error}") from None
    return combine_embeddings(scoring.blocks)


def read_samples(collection, fields: list[str], name: str = "") -> ScoreMatrix:
    """One row per sample of a non-grouped collection (or one slice of a grouped one)."""
    where = f"on slice '{name}'" if name else "in the collection"
    values = collection.values(["id", *fields])
    if not values[0]:
        raise ValueError(f"the collection has no samples to score {where}".rstrip())
    ids = values[0]
    scoring = ScoreMatrix(name, len(ids), [(name or None, ids, np.arange(len(ids)))])
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


def read_slices(collection, fields: list[str]) -> list[ScoreMatrix]:
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
        scorings.append(read_samples(view, fields, slice_name))
    if not scorings:
        if not any(len(view) for view in slice_views(collection).values()):
            raise ValueError("the collection has no samples to score")
        raise ValueError(f"no slice of the collection holds {fields}; run compute_embeddings first")
    return scorings


def read_groups(collection, fields: list[str]) -> ScoreMatrix:
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
    scoring = ScoreMatrix("", len(groups))
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



def write_scores(
    collection,
    score_field: str,
    scorings: list[ScoreMatrix],
    scores: list,
    report: Callable[[str], None] | None = None,
) -> int:
    """Bulk-write each row's score to its samples; returns the number of samples written.

    One bulk write per slice (and per scored slice); ``report(label)`` follows each.
    """
    written = 0
    for scoring, row_scores in zip(scorings, scores):
        for slice_name, ids, rows in scoring.targets:
            view = collection.select_group_slices(slice_name) if slice_name else collection
            view.set_values(score_field, dict(zip(ids, row_scores[rows].tolist())), key_field="id")
            written += len(ids)
            if report is not None:
                report(f"scores written on {slice_name or 'the collection'}: {written} samples")
    return written
