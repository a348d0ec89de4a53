"""Drift alarms over a history of golden-set QA summaries, one summary per batch.

A history is a list of JSON dicts, oldest first, each made by :func:`batch_summary` (a
:class:`.metrics.QualityReport` plus a ``"batch"`` id), so it can live on a FiftyOne
dataset and grow one entry per annotation batch. :func:`detect_drift` compares every batch
with a baseline batch (the first, unless chosen) and returns :class:`Alarm` s.

Rules (ids are stable; thresholds are :class:`DriftRules` fields):

``recall_drop`` / ``f1_drop``
    Recall or F1 (overall, and per class) fell more than ``max_recall_drop`` /
    ``max_f1_drop`` (absolute, default 0.05 = 5 points) below the baseline.
``iou_drop``
    Mean IoU of matched pairs (box tightness) fell more than ``max_iou_drop`` (0.05).
``miss_rate_rise``
    The share of GT that nothing matched, not even a box of another class, rose more than
    ``max_miss_rate_rise`` (0.05).
``new_class``
    A class (GT or predicted) that the baseline never used now has at least
    ``new_class_min_count`` labels (3).
``class_split``
    A baseline GT class is now matched to two or more predicted classes with a share of at
    least ``split_min_share`` (0.25) and ``split_min_count`` (5) pairs each, at least one of
    them new, e.g. "vehicle" -> "car" / "truck".
``class_rename``
    Not a split, but a baseline GT class is now mostly (``rename_min_share``, 0.5) matched
    to a predicted class other than its baseline majority, e.g. "vehicle" -> "car".

Guards against flapping:

- A per-class check runs only when the class has at least ``min_support`` (30) GT in both
  batches (matched pairs for IoU and for split/rename); overall checks need the same.
- A change must exceed its threshold *and* be statistically clear: at least ``z`` (3.0)
  standard errors (two-proportion z-test for rates, with effective size
  ``(n_gt + n_pred) / 2`` for F1; Welch's z for mean IoU).
- With ``suppress_explained`` (default), a ``recall_drop`` / ``f1_drop`` is dropped when a
  cause explains it in the same batch: ``miss_rate_rise`` or ``iou_drop`` of the same scope,
  or a split/rename whose source or destination is that class. The cause alarm remains.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .metrics import MISSED, SPURIOUS, QualityReport

__all__ = ["Alarm", "DriftRules", "RULES", "batch_summary", "detect_drift"]

RULES = (
    "recall_drop",
    "f1_drop",
    "iou_drop",
    "miss_rate_rise",
    "new_class",
    "class_split",
    "class_rename",
)
_SYMPTOMS = ("recall_drop", "f1_drop")
_REQUIRED_KEYS = ("batch", "overall", "per_class", "confusion")


@dataclass(frozen=True)
class DriftRules:
    """Thresholds of :func:`detect_drift`; see the module docstring for each rule."""

    max_recall_drop: float = 0.05
    max_f1_drop: float = 0.05
    max_iou_drop: float = 0.05
    max_miss_rate_rise: float = 0.05
    z: float = 3.0
    min_support: int = 30
    new_class_min_count: int = 3
    split_min_share: float = 0.25
    split_min_count: int = 5
    rename_min_share: float = 0.5
    suppress_explained: bool = True


@dataclass(frozen=True)
class Alarm:
    """One drift finding. ``class_name`` is None for overall (all-class) alarms."""

    batch: object
    rule: str
    class_name: str | None
    baseline: float | None
    current: float | None
    message: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class"] = d.pop("class_name")
        return d


def batch_summary(batch, report: QualityReport) -> dict:
    """The history entry for one batch: ``report.to_dict()`` plus ``"batch": batch``."""
    return {"batch": batch, **report.to_dict()}


def _z_drop(p0: float, n0: float, p1: float, n1: float) -> float:
    """Two-proportion z statistic of ``p0 - p1`` (positive when the rate fell)."""
    pooled = (p0 * n0 + p1 * n1) / (n0 + n1)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    if se == 0:
        return math.inf if p0 > p1 else 0.0
    return (p0 - p1) / se


def _scopes(base: dict, cur: dict):
    """(class or None, baseline stats, current stats) for overall and shared classes."""
    yield None, base["overall"], cur["overall"]
    for cls in sorted(set(base["per_class"]) & set(cur["per_class"])):
        yield cls, base["per_class"][cls], cur["per_class"][cls]


def _scope_name(cls) -> str:
    return "overall" if cls is None else f"class {cls!r}"


def _rate_alarms(batch, base, cur, rules: DriftRules) -> list[Alarm]:
    """recall_drop, f1_drop, miss_rate_rise and iou_drop for every scope."""
    alarms = []
    # (rule, summary key, limit, baseline size, current size, +1 if a fall is bad / -1 if a rise)
    for cls, b, c in _scopes(base, cur):
        if b["n_gt"] < rules.min_support or c["n_gt"] < rules.min_support:
            continue
        checks = (
            ("recall_drop", "recall", rules.max_recall_drop, b["n_gt"], c["n_gt"], 1),
            (
                "f1_drop",
                "f1",
                rules.max_f1_drop,
                (b["n_gt"] + b["n_pred"]) / 2,
                (c["n_gt"] + c["n_pred"]) / 2,
                1,
            ),
            ("miss_rate_rise", "miss_rate", rules.max_miss_rate_rise, b["n_gt"], c["n_gt"], -1),
        )
        for rule, key, limit, n0, n1, sign in checks:
            v0, v1 = b[key], c[key]
            if v0 is None or v1 is None:
                continue
            change = sign * (v0 - v1)  # > 0 means "got worse"
            if change > limit and sign * _z_drop(v0, n0, v1, n1) >= rules.z:
                what = f"{_scope_name(cls)}: {key.replace('_', ' ')}"
                verb = "fell" if sign > 0 else "rose"
                message = (
                    f"{what} {verb} from {v0:.3f} to {v1:.3f} "
                    f"(limit {limit:.3f}; {int(c['n_gt'])} GT in this batch)"
                )
                alarms.append(Alarm(batch, rule, cls, v0, v1, message))
        if b["n_iou"] >= rules.min_support and c["n_iou"] >= rules.min_support:
            m0, m1 = b["mean_iou"], c["mean_iou"]
            se = math.sqrt(
                (b["iou_std"] or 0) ** 2 / b["n_iou"] + (c["iou_std"] or 0) ** 2 / c["n_iou"]
            )
            z = (m0 - m1) / se if se > 0 else (math.inf if m0 > m1 else 0.0)
            if m0 - m1 > rules.max_iou_drop and z >= rules.z:
                alarms.append(
                    Alarm(
                        batch,
                        "iou_drop",
                        cls,
                        m0,
                        m1,
                        f"{_scope_name(cls)}: boxes got looser, mean matched IoU fell from "
                        f"{m0:.3f} to {m1:.3f} (limit {rules.max_iou_drop:.3f})",
                    )
                )
    return alarms


def _used_classes(summary: dict) -> dict[str, int]:
    return {
        cls: s["n_gt"] + s["n_pred"]
        for cls, s in summary["per_class"].items()
        if s["n_gt"] + s["n_pred"] > 0
    }


def _new_class_alarms(batch, base, cur, rules: DriftRules) -> list[Alarm]:
    known = _used_classes(base)
    return [
        Alarm(
            batch,
            "new_class",
            cls,
            0.0,
            float(n),
            f"class {cls!r} appears {n} times; the baseline never used it",
        )
        for cls, n in sorted(_used_classes(cur).items())
        if cls not in known and n >= rules.new_class_min_count
    ]


def _shares(row: dict) -> tuple[dict[str, float], int]:
    """Predicted-class shares of one confusion row, over matched pairs only."""
    matched = {k: v for k, v in row.items() if k != MISSED}
    total = sum(matched.values())
    return ({k: v / total for k, v in matched.items()} if total else {}), total


def _substantial(shares: dict, row: dict, rules: DriftRules) -> set:
    """Predicted classes taking a substantial share of a GT class's matches."""
    return {
        k
        for k, s in shares.items()
        if s >= rules.split_min_share and row[k] >= rules.split_min_count
    }


def _split_alarms(batch, base, cur, rules: DriftRules) -> list[Alarm]:
    alarms = []
    for cls in sorted(set(base["confusion"]) & set(cur["confusion"]) - {SPURIOUS}):
        s0, n0 = _shares(base["confusion"][cls])
        s1, n1 = _shares(cur["confusion"][cls])
        if n0 < rules.min_support or n1 < rules.min_support:
            continue
        sub0 = _substantial(s0, base["confusion"][cls], rules)
        sub1 = _substantial(s1, cur["confusion"][cls], rules)
        top0 = max(s0, key=s0.get)
        top1 = max(s1, key=s1.get)
        details = {
            "baseline_shares": s0,
            "current_shares": s1,
            "baseline_matched": n0,
            "current_matched": n1,
        }
        shares_text = ", ".join(
            f"{k!r} {v:.0%}" for k, v in sorted(s1.items(), key=lambda kv: -kv[1])
        )
        if len(sub1) >= 2 and sub1 - sub0:
            details["into"] = sorted(sub1)
            alarms.append(
                Alarm(
                    batch,
                    "class_split",
                    cls,
                    s0[top0],
                    s1.get(top0, 0.0),
                    f"GT class {cls!r} (baseline mostly {top0!r}, {s0[top0]:.0%}) is now split: "
                    f"{shares_text}",
                    details,
                )
            )
        elif top1 != top0 and s1[top1] >= rules.rename_min_share:
            details["into"] = [top1]
            alarms.append(
                Alarm(
                    batch,
                    "class_rename",
                    cls,
                    s0[top0],
                    s1.get(top0, 0.0),
                    f"GT class {cls!r} is now mostly labelled {top1!r} ({s1[top1]:.0%}); "
                    f"baseline mostly {top0!r} ({s0[top0]:.0%})",
                    details,
                )
            )
    return alarms


def _suppress_explained(alarms: list[Alarm]) -> list[Alarm]:
    """Drop recall/F1 symptoms whose cause fired for the same scope."""
    explained = set()
    for a in alarms:
        if a.rule in ("miss_rate_rise", "iou_drop"):
            explained.add(a.class_name)
        elif a.rule in ("class_split", "class_rename"):
            explained.add(a.class_name)
            explained.update(a.details["into"])
    return [a for a in alarms if not (a.rule in _SYMPTOMS and a.class_name in explained)]


def _check_entry(entry, i: int) -> None:
    if not isinstance(entry, dict):
        raise ValueError(
            f"history[{i}] must be a dict from batch_summary(); got {type(entry).__name__}"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in entry]
    if missing:
        raise ValueError(f"history[{i}] lacks {missing}; build entries with batch_summary()")


def detect_drift(history, rules: DriftRules = DriftRules(), baseline_batch=None) -> list[Alarm]:
    """Compare every batch of ``history`` with the baseline batch.

    Parameters
    ----------
    history : list of dict
        Entries from :func:`batch_summary`, oldest first.
    rules : DriftRules
        Thresholds and guards.
    baseline_batch : optional
        The ``"batch"`` id of the baseline; default the first entry.

    Returns
    -------
    list of Alarm
        Ordered by batch (history order), then rule (as in :data:`RULES`), then class
        (overall first). Empty for a history of fewer than two batches.
    """
    for i, entry in enumerate(history):
        _check_entry(entry, i)
    if not history:
        return []
    if baseline_batch is None:
        base = history[0]
    else:
        chosen = [e for e in history if e["batch"] == baseline_batch]
        if not chosen:
            raise ValueError(
                f"baseline_batch {baseline_batch!r} is not in the history "
                f"({len(history)} batches: {[e['batch'] for e in history]})"
            )
        base = chosen[0]

    alarms = []
    for cur in history:
        if cur is base:
            continue
        found = (
            _rate_alarms(cur["batch"], base, cur, rules)
            + _new_class_alarms(cur["batch"], base, cur, rules)
            + _split_alarms(cur["batch"], base, cur, rules)
        )
        if rules.suppress_explained:
            found = _suppress_explained(found)
        found.sort(
            key=lambda a: (RULES.index(a.rule), a.class_name is not None, a.class_name or "")
        )
        alarms.extend(found)
    return alarms
