"""Which annotation batch each golden sample belongs to (FiftyOne glue for golden QA).

A batch comes from a label attribute of the candidate labels (``batch``, written by the
simulated annotator), a sample tag with a prefix (``batch:<name>``), or one name for the
whole golden set. A golden sample without a candidate label has no batch attribute: it
takes the batch of the other slices of its group, or the only batch there is, and stays
unassigned (None) otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .labels import LabelRows

__all__ = ["Batching"]


@dataclass(frozen=True)
class Batching:
    """How :func:`.golden.check_golden` splits the golden samples into batches.

    Attributes
    ----------
    by : {"attribute", "tag", "name"}
    attribute : str
        Label attribute naming the batch (``by="attribute"``).
    tag_prefix : str
        Prefix of the sample tag naming the batch (``by="tag"``).
    name : str or None
        The one batch of the whole golden set (``by="name"``).
    group_path : str or None
        Path of the group id on a grouped dataset (a sample may inherit its group's batch).
    """

    by: str
    attribute: str
    tag_prefix: str
    name: str | None
    group_path: str | None

    @property
    def attributes(self) -> list[str]:
        """Label attributes the candidate read needs."""
        return [self.attribute] if self.by == "attribute" else []

    def extra(self) -> dict:
        """Per-sample values the candidate read needs (tags, group ids)."""
        extra = {"tags": "tags"} if self.by == "tag" else {}
        if self.group_path:
            extra["group"] = self.group_path
        return extra

    def sample_batches(self, rows: LabelRows) -> list:
        """Batch name per sample of a slice (None = unassigned); raises on mixed samples."""
        n = len(rows.sample_ids)
        if self.by == "name":
            return [self.name] * n
        if self.by == "tag":
            tags = rows.extra["tags"]
            return [self._tagged_batch(sid, t) for sid, t in zip(rows.sample_ids, tags)]
        per_sample: list[set] = [set() for _ in range(n)]
        for s, v in zip(rows.sample.tolist(), rows.attributes[self.attribute].tolist()):
            if v is not None:
                per_sample[s].add(v)
        out: list = [None] * n
        for i, found in enumerate(per_sample):
            if len(found) > 1:
                raise ValueError(
                    f"golden sample {rows.sample_ids[i]} holds labels of several batches "
                    f"{sorted(map(str, found))} (attribute {self.attribute!r}); "
                    "re-annotate it in one batch"
                )
            out[i] = next(iter(found)) if found else None
        return out

    def _tagged_batch(self, sample_id: str, tags) -> str | None:
        prefix = self.tag_prefix
        found = sorted({t[len(prefix) :] for t in (tags or []) if t.startswith(prefix)})
        if len(found) > 1:
            raise ValueError(
                f"golden sample {sample_id} has several batch tags "
                f"{[prefix + f for f in found]}; keep one"
            )
        return found[0] if found else None

    def assigner(self, read: dict, candidate_field: str) -> Callable[[LabelRows, list], list]:
        """``assign(candidate rows, batches) -> batch names`` over every slice read.

        A sample without a batch of its own (e.g. nothing labelled on that camera) takes its
        group's batch, or the only batch there is.

        Raises
        ------
        ValueError
            When no golden sample of any slice has a batch.
        """
        every = (b for _, _, batches in read.values() for b in batches)
        found = sorted({str(b) for b in every if b is not None})
        group_batch: dict = {}
        for _, cand, batches in read.values():
            for g, b in zip(cand.extra.get("group", ()), batches):
                if b is not None:
                    group_batch.setdefault(g, set()).add(str(b))
        if not found:
            raise ValueError(
                f"no batch found on the golden samples: no {candidate_field!r} label has a "
                f"{self.attribute!r} attribute"
                if self.by == "attribute"
                else f"no batch found: no golden sample has a tag starting with {self.tag_prefix!r}"
            )

        def assign(cand: LabelRows, batches: list) -> list:
            groups = cand.extra.get("group") or [None] * len(batches)
            return [
                str(b) if b is not None else _inherited(group_batch.get(g), found)
                for b, g in zip(batches, groups)
            ]

        return assign


def _inherited(group_batches: set | None, found: list):
    """The batch of a sample with none: its group's only batch, else the only batch."""
    if group_batches and len(group_batches) == 1:
        return next(iter(group_batches))
    return found[0] if len(found) == 1 else None
