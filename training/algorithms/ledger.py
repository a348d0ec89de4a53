"""The ledger of rounds: what each round of labels bought, and when buying more stops paying.

One :class:`LedgerRound` per evaluated round, oldest first. Round ``r`` (0-based, as in
:mod:`..selection.split_schedule`) is the model trained on every batch up to ``r``,
scored on the frozen test set. A *label* is one labeled sample (image) of the trained
slice: the unit the batch planner budgets in.

Label efficiency
    ``delta_map_per_100 = 100 * (mAP_r - mAP_{r-1}) / labels_added_r``. Before round 0
    there is no model, which detects nothing (mAP 0), so round 0's gain is defined too. A
    round that added no labels (a retrain on the same data) has no gain (``None``): it says
    nothing about what labels buy.

Plateau (:func:`plateau_signal`)
    The last ``window`` defined gains are all below ``min_gain_per_100``. Rounds without a
    gain neither extend nor break the streak. The recommendation is a heuristic, first
    rule that fires:

    1. ``"more coverage"`` -- a class's recall lags the mean class recall by at least
       ``recall_gap``: the labeled pool under-covers that class, so raise the coverage
       share or target it.
    2. ``"more data"`` -- the window's mean gain is still positive: returns diminish but
       have not stopped, so bigger batches still pay (slowly).
    3. ``"bigger model"`` -- gains are zero or negative with balanced classes: the labels no
       longer limit the model, its capacity does.

Persistence (:func:`load_ledger`, :func:`save_ledger`, :func:`record_round`)
    The ledger is a JSON list in ``dataset.info["annoloop_ledger"]``. ``info`` is part of
    the dataset's document in MongoDB, so every process and machine pointed at the same
    database sees the same ledger; ``record_round`` reloads the dataset before appending so
    that it extends the latest stored list. They only touch ``dataset.info``, ``reload()``
    and ``save()``, so this module stays pure: it does not import FiftyOne.

Over ~400 lines because the ledger's record, its plateau signal and its advice are one
concept, read together by the panel and the main job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from ...core.names import LEDGER_INFO_KEY

__all__ = [
    "RECOMMEND_BIGGER_MODEL",
    "RECOMMEND_MORE_COVERAGE",
    "RECOMMEND_MORE_DATA",
    "RECOMMEND_TRAIN_LONGER",
    "LedgerRound",
    "PlateauSignal",
    "append_round",
    "gains_per_100_labels",
    "ledger_from_json",
    "ledger_to_json",
    "load_ledger",
    "plateau_signal",
    "record_round",
    "save_ledger",
]

RECOMMEND_MORE_COVERAGE = "more coverage"
RECOMMEND_MORE_DATA = "more data"
RECOMMEND_BIGGER_MODEL = "bigger model"
RECOMMEND_TRAIN_LONGER = "train longer"
#: Signal states, for the App and the main job.
STATE_NO_ROUNDS = "no rounds"
STATE_NOT_LEARNING = "not learning yet"
STATE_IMPROVING = "improving"
STATE_PLATEAU = "plateau"


@dataclass(frozen=True)
class LedgerRound:
    """One evaluated round.

    Attributes
    ----------
    round : int
        0-based round index.
    batch : str
        Name of the batch whose labels this round added (e.g. ``"batch:v2"``).
    labels_added : int
        Labels (labeled samples) added since the previous round; may be negative when
        labels were quarantined or removed.
    total_labels : int
        Labeled samples the round's model was trained on.
    map : float
        mAP on the frozen test set, in [0, 1].
    per_class_recall : dict of str to float
        Recall per class on the frozen test set.
    delta_map_per_100 : float or None
        mAP gained per 100 training images added (None when no training images were added).
    train_run : str or None
        Name of the training run that produced the model.
    per_slice_recall : dict of str to dict of str to float
        Recall on the frozen test set per value of each scene-attribute field (e.g.
        ``{"predicted_time_of_day": {"day": r_day, "night": r_night}}``): the slices a model may
        fail on while its per-class recall looks fine.
    """

    round: int
    batch: str
    labels_added: int
    total_labels: int
    map: float
    per_class_recall: dict[str, float] = field(default_factory=dict)
    delta_map_per_100: float | None = None
    train_run: str | None = None
    per_slice_recall: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (the stored form)."""
        return asdict(self)


@dataclass(frozen=True)
class PlateauSignal:
    """Whether label gains have flattened, and what to change if so.

    Attributes
    ----------
    plateaued : bool
        True when the last ``window`` defined gains are all below the threshold.
    flat_rounds : int
        Consecutive most recent rounds with a gain below the threshold.
    recommendation : str or None
        One of ``"more coverage"``, ``"more data"``, ``"bigger model"`` when plateaued;
        ``"train longer"`` while the model is not learning yet.
    reason : str
        A sentence explaining the signal, for the App and logs.
    lagging_classes : list of str
        Classes whose recall lags the mean class recall by at least ``recall_gap`` in the
        latest round, worst first.
    state : str
        ``"no rounds"``, ``"not learning yet"`` (latest mAP below ``min_map`` with every
        class at 0 recall: flat gains then say nothing about the labels), ``"improving"``
        or ``"plateau"``.
    """

    plateaued: bool
    flat_rounds: int
    recommendation: str | None
    reason: str
    lagging_classes: list[str] = field(default_factory=list)
    state: str = STATE_IMPROVING

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return asdict(self)


def gains_per_100_labels(total_labels: ArrayLike, maps: ArrayLike) -> np.ndarray:
    """mAP gained per 100 training images added, round by round.

    Parameters
    ----------
    total_labels : array-like of shape (n_rounds,)
        Labels each round's model was trained on, oldest round first.
    maps : array-like of shape (n_rounds,)
        mAP of each round, in [0, 1].

    Returns
    -------
    ndarray of shape (n_rounds,), float64
        ``100 * diff(maps) / diff(total_labels)`` with a virtual round ``(0 labels,
        mAP 0)`` before the first; NaN where a round added no labels or fewer than zero.
    """
    labels = np.asarray(total_labels, dtype=np.float64)
    values = np.asarray(maps, dtype=np.float64)
    if labels.ndim != 1 or values.ndim != 1 or labels.shape != values.shape:
        raise ValueError(
            f"total_labels and maps must be 1-D arrays of one length; got shapes "
            f"{labels.shape} and {values.shape}"
        )
    _check_maps(values)
    if np.any(labels < 0) or not np.all(np.isfinite(labels)):
        raise ValueError(f"total_labels must be finite and >= 0; got {labels.tolist()}")
    added = np.diff(labels, prepend=0.0)
    gained = np.diff(values, prepend=0.0)
    gains = np.full(labels.shape, np.nan)
    positive = added > 0
    gains[positive] = 100.0 * gained[positive] / added[positive]
    return gains


def append_round(
    ledger: Sequence[LedgerRound | Mapping],
    *,
    batch: str,
    total_labels: int,
    map_: float,
    per_class_recall: Mapping[str, float],
    train_run: str | None = None,
    per_slice_recall: Mapping[str, Mapping[str, float]] | None = None,
) -> list[LedgerRound]:
    """Return a new ledger with one more round computed from the last one.

    Parameters
    ----------
    ledger : sequence of LedgerRound or dict
        Existing rounds, oldest first (dicts as stored in JSON are accepted).
    batch : str
        Name of the batch the new round added.
    total_labels : int
        Labeled samples the new round's model was trained on (>= 0).
    map_ : float
        The new round's mAP on the frozen test set, in [0, 1].
    per_class_recall : mapping of str to float
        The new round's recall per class, each in [0, 1].
    train_run : str, optional
        Name of the training run that produced the model.
    per_slice_recall : mapping of str to mapping of str to float, optional
        Recall per value of each scene-attribute field, each in [0, 1].

    Returns
    -------
    list of LedgerRound
        The old rounds followed by the new one.
    """
    rounds = _as_rounds(ledger)
    if not isinstance(batch, str) or not batch:
        raise ValueError(f"batch must be a non-empty string; got {batch!r}")
    if isinstance(total_labels, bool) or int(total_labels) != total_labels or total_labels < 0:
        raise ValueError(f"total_labels must be an integer >= 0; got {total_labels!r}")
    _check_maps(np.array([map_], dtype=np.float64))
    recall = _check_recall(per_class_recall)
    if not isinstance(per_slice_recall or {}, Mapping):
        raise ValueError(f"per_slice_recall must be a mapping; got {type(per_slice_recall)}")
    slices = {str(f): _check_recall(r) for f, r in (per_slice_recall or {}).items()}

    previous_labels = rounds[-1].total_labels if rounds else 0
    previous_map = rounds[-1].map if rounds else 0.0
    added = int(total_labels) - previous_labels
    delta = 100.0 * (float(map_) - previous_map) / added if added > 0 else None
    new = LedgerRound(
        round=len(rounds),
        batch=batch,
        labels_added=added,
        total_labels=int(total_labels),
        map=float(map_),
        per_class_recall=recall,
        delta_map_per_100=delta,
        train_run=train_run,
        per_slice_recall=slices,
    )
    return [*rounds, new]


def plateau_signal(
    ledger: Sequence[LedgerRound | Mapping],
    *,
    window: int = 2,
    min_gain_per_100: float = 0.005,
    recall_gap: float = 0.15,
    min_map: float = 0.01,
) -> PlateauSignal:
    """Decide whether mAP gains per label have flattened and recommend a change.

    Parameters
    ----------
    ledger : sequence of LedgerRound or dict
        Rounds, oldest first.
    window : int, default=2
        Consecutive flat rounds (N) that make a plateau.
    min_gain_per_100 : float, default=0.005
        A round is flat when it gained less mAP than this per 100 training images (0.005 = half an
        mAP point).
    recall_gap : float, default=0.15
        A class lags when its recall is at least this far below the mean class recall.
    min_map : float, default=0.01
        Below this latest mAP, with no class above 0 recall, the model is "not learning
        yet" rather than on a plateau: more labels cannot be judged before it learns.

    Returns
    -------
    PlateauSignal
    """
    if isinstance(window, bool) or int(window) != window or window < 1:
        raise ValueError(f"window must be an integer >= 1; got {window!r}")
    if not (math.isfinite(min_gain_per_100) and math.isfinite(recall_gap) and recall_gap >= 0):
        raise ValueError(
            f"min_gain_per_100 must be finite and recall_gap finite and >= 0; got "
            f"{min_gain_per_100!r}, {recall_gap!r}"
        )
    rounds = _as_rounds(ledger)
    if not rounds:
        return PlateauSignal(False, 0, None, "no rounds yet", state=STATE_NO_ROUNDS)
    latest_round = rounds[-1]
    if latest_round.map < min_map and not any(latest_round.per_class_recall.values()):
        return PlateauSignal(
            False,
            0,
            RECOMMEND_TRAIN_LONGER,
            f"not learning yet: mAP {latest_round.map:.4f} and every class at 0 recall after "
            f"{latest_round.total_labels} labels; train longer (more steps) or start from a "
            "pretrained checkpoint before judging what the labels buy",
            state=STATE_NOT_LEARNING,
        )

    gains = np.array(
        [np.nan if r.delta_map_per_100 is None else r.delta_map_per_100 for r in rounds]
    )
    defined = gains[~np.isnan(gains)]
    # Trailing streak of flat rounds among rounds that have a gain.
    not_flat = np.flatnonzero(defined >= min_gain_per_100)
    flat_rounds = int(defined.size - (not_flat[-1] + 1 if not_flat.size else 0))
    lagging = _lagging_classes(rounds[-1].per_class_recall, recall_gap)

    if flat_rounds < window:
        latest = "n/a" if not defined.size else f"{defined[-1]:.4f}"
        return PlateauSignal(
            False,
            flat_rounds,
            None,
            f"{flat_rounds} of {window} rounds flat; latest gain {latest} mAP per 100 "
            "training images",
            lagging,
        )

    mean_gain = float(defined[-window:].mean())
    head = (
        f"mAP gained less than {min_gain_per_100:g} per 100 training images for {flat_rounds} "
        f"rounds (mean {mean_gain:.4f} over the last {window})"
    )
    if lagging:
        recall = rounds[-1].per_class_recall
        detail = ", ".join(f"{c} {recall[c]:.2f}" for c in lagging)
        return PlateauSignal(
            True,
            flat_rounds,
            RECOMMEND_MORE_COVERAGE,
            f"{head}; recall lags for {detail}: raise the coverage share or target these classes",
            lagging,
            STATE_PLATEAU,
        )
    if mean_gain > 0:
        return PlateauSignal(
            True,
            flat_rounds,
            RECOMMEND_MORE_DATA,
            f"{head}; gains are small but positive: larger batches still pay, slowly",
            lagging,
            STATE_PLATEAU,
        )
    return PlateauSignal(
        True,
        flat_rounds,
        RECOMMEND_BIGGER_MODEL,
        f"{head}; classes are balanced and labels no longer help: try a larger model",
        lagging,
        STATE_PLATEAU,
    )


def ledger_to_json(ledger: Sequence[LedgerRound | Mapping]) -> list[dict]:
    """The ledger as a JSON-serialisable list of dicts (validated)."""
    return [r.to_dict() for r in _as_rounds(ledger)]


def ledger_from_json(data: Sequence[Mapping] | None) -> list[LedgerRound]:
    """Rounds from their stored JSON form; ``None`` is an empty ledger."""
    return _as_rounds(data or [])


def load_ledger(dataset) -> list[LedgerRound]:
    """The ledger stored on ``dataset`` (empty when none)."""
    return ledger_from_json(dataset.info.get(LEDGER_INFO_KEY))


def save_ledger(dataset, ledger: Sequence[LedgerRound | Mapping]) -> None:
    """Store ``ledger`` on ``dataset``, replacing the stored one."""
    dataset.info[LEDGER_INFO_KEY] = ledger_to_json(ledger)
    dataset.save()


def record_round(
    dataset,
    *,
    batch: str,
    total_labels: int,
    map_: float,
    per_class_recall: Mapping[str, float],
    train_run: str | None = None,
    per_slice_recall: Mapping[str, Mapping[str, float]] | None = None,
) -> list[LedgerRound]:
    """Append a round to the ledger stored on ``dataset`` and return the new ledger.

    The dataset is reloaded first, so a round recorded by another process is kept. When
    the latest round came from the same ``train_run``, it is replaced: evaluating one model
    again (another IoU, fixed test labels) is not a new round of labels.
    """
    dataset.reload()
    rounds = load_ledger(dataset)
    if rounds and train_run is not None and rounds[-1].train_run == train_run:
        rounds = rounds[:-1]
    ledger = append_round(
        rounds,
        batch=batch,
        total_labels=total_labels,
        map_=map_,
        per_class_recall=per_class_recall,
        train_run=train_run,
        per_slice_recall=per_slice_recall,
    )
    save_ledger(dataset, ledger)
    return ledger


def _as_rounds(ledger: Sequence[LedgerRound | Mapping]) -> list[LedgerRound]:
    rounds = []
    for i, entry in enumerate(ledger):
        if isinstance(entry, LedgerRound):
            rounds.append(entry)
        elif isinstance(entry, Mapping):
            try:
                # Entries read back from dataset.info hold MongoDB dict types: plain copies.
                entry = {k: dict(v) if isinstance(v, Mapping) else v for k, v in entry.items()}
                rounds.append(LedgerRound(**entry))
            except TypeError as err:
                raise ValueError(f"ledger entry {i} is not a ledger round: {err}") from None
        else:
            raise ValueError(f"ledger entry {i} must be a LedgerRound or dict; got {type(entry)}")
        if rounds[-1].round != i:
            raise ValueError(f"ledger entry {i} has round {rounds[-1].round}; rounds must be 0, 1, ...")
    return rounds


def _check_maps(values: np.ndarray) -> None:
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if np.any(bad):
        raise ValueError(f"mAP must be finite and in [0, 1]; got {values[bad].tolist()}")


def _check_recall(per_class_recall: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(per_class_recall, Mapping):
        raise ValueError(f"per_class_recall must be a mapping; got {type(per_class_recall)}")
    recall = {str(k): float(v) for k, v in per_class_recall.items()}
    bad = {k: v for k, v in recall.items() if not (0.0 <= v <= 1.0)}
    if bad:
        raise ValueError(f"recall must be in [0, 1]; got {bad}")
    return recall


def _lagging_classes(per_class_recall: Mapping[str, float], gap: float) -> list[str]:
    if len(per_class_recall) < 2:
        return []
    names = list(per_class_recall)
    values = np.array([per_class_recall[n] for n in names])
    lags = values.mean() - values
    order = np.argsort(-lags, kind="stable")
    return [names[i] for i in order if lags[i] >= gap]
