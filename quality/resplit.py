"""What drawing the frozen splits must respect: the scenes trained on, the rounds measured.

A test set is worth its numbers only if no model it scores ever trained on one of its
scenes, and a ledger round means something only on the test set it was measured on. So
:func:`.frozen.create_splits` (a first draw or a re-draw) asks two questions before it draws:

- :func:`trained_scenes`: the scenes, outside the current frozen splits, that a model
  trained on or is about to: a sample (on any slice) tagged ``batch:*`` (planned for
  labeling, so its labels go into the next training), or holding labels in a field that a
  recorded training run trained on (the run's ``label_field``, whatever its status).
  Samples of the current splits are left out: an export never trains on them, and golden
  samples carry batch tags and annotator labels by design. Labels no run trained on and no
  batch planned (e.g. imported ground truth before any training) do not count: a scene
  that no model saw cannot contaminate a test set.
- :func:`measured_rounds`: the rounds of the ledger and of the random baseline's ledger,
  all measured on the current test set.

Without ``reset`` either one refuses the draw (:func:`refusal` says what and what to do);
with it, :func:`archive_ledgers` moves the rounds to
``dataset.info["annoloop_ledger_archive"]`` and the draw leaves the trained scenes out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import fiftyone as fo
from fiftyone import ViewField as F

from ..core.names import (
    BASELINE_LEDGER_INFO_KEY,
    BATCH_TAG_PREFIX,
    LEDGER_ARCHIVE_INFO_KEY,
    LEDGER_INFO_KEY,
    TRAIN_RUN_METHOD,
)
from ..core.runs import load_records, now
from .frozen_check import SPLIT_TAGS

__all__ = [
    "archive_ledgers",
    "measured_rounds",
    "refusal",
    "trained_scenes",
    "training_label_fields",
]

#: ``dataset.info`` key of each ledger -> its name in an archive entry.
_LEDGERS = {LEDGER_INFO_KEY: "rounds", BASELINE_LEDGER_INFO_KEY: "baseline_rounds"}
_SHOWN = 5


def training_label_fields(dataset: fo.Dataset) -> list[str]:
    """Label fields that a recorded training run trained on and that the dataset still has."""
    schema = dataset.get_field_schema()
    used = {r.get("params", {}).get("label_field") for r in load_records(dataset, TRAIN_RUN_METHOD)}
    return sorted(f for f in used if f in schema)


def trained_scenes(dataset: fo.Dataset, slices: Mapping, scene_path: str) -> set:
    """Scenes (values of ``scene_path``) outside the frozen splits that were trained on or
    are labeled for training; see the module docstring.

    Parameters
    ----------
    dataset : Dataset
    slices : mapping
        ``{slice name: flat view}`` of every slice (:func:`..core.views.slice_views`).
    scene_path : str
        Field path naming a sample's scene (the group id of a grouped dataset by default).
    """
    trained_expr = F("tags").filter(F().starts_with(BATCH_TAG_PREFIX)).length() > 0
    for field in training_label_fields(dataset):
        trained_expr = trained_expr | F(field).exists()
    frozen, trained = set(), set()
    for view in slices.values():
        frozen.update(view.match_tags(list(SPLIT_TAGS.values())).values(scene_path))
        trained.update(view.match(trained_expr).values(scene_path))
    return trained - frozen


def measured_rounds(dataset: fo.Dataset) -> dict[str, list]:
    """``{ledger info key: rounds}`` of the ledgers that hold rounds (measured on the test set)."""
    return {key: list(dataset.info[key]) for key in _LEDGERS if dataset.info.get(key)}


def refusal(dataset: fo.Dataset, entering: Collection, excluded: int, rounds: Mapping) -> str:
    """The message refusing a draw: which trained scenes would enter a frozen split, which
    rounds were measured on the old sets, and what to do."""
    problems = []
    if entering:
        problems.append(
            f"{_count(len(entering), 'scene')} trained on or labeled for training would enter "
            f"the new test, mining or golden set ({_few(sorted(entering, key=str))})"
        )
    for key, ledger in rounds.items():
        problems.append(
            f"dataset.info[{key!r}] holds {_count(len(ledger), 'round')} measured on the old "
            f"test set ({_few([_round_name(r) for r in ledger])})"
        )
    return (
        f"cannot draw new frozen splits on dataset '{dataset.name}': " + "; ".join(problems)
        + f". Pass reset=True to archive the rounds under dataset.info"
        f"[{LEDGER_ARCHIVE_INFO_KEY!r}], start an empty ledger and draw only from the scenes "
        f"no model trained on ({_count(excluded, 'scene')} would be left out), or keep the "
        "current splits"
    )


def archive_ledgers(dataset: fo.Dataset, rounds: Mapping, frozen_created_at: str | None) -> dict:
    """Move ``rounds`` (:func:`measured_rounds`) to the ledger archive and empty the ledgers.

    Appends ``{archived_at, frozen_created_at, rounds, baseline_rounds}`` to
    ``dataset.info["annoloop_ledger_archive"]`` (oldest first) and returns it; the caller
    holds the dataset lock.
    """
    entry = {
        "archived_at": now(),
        "frozen_created_at": frozen_created_at,
        **{name: list(rounds.get(key, [])) for key, name in _LEDGERS.items()},
    }
    dataset.info[LEDGER_ARCHIVE_INFO_KEY] = [*dataset.info.get(LEDGER_ARCHIVE_INFO_KEY, []), entry]
    for key in rounds:
        dataset.info[key] = []
    dataset.save()
    return entry


def _round_name(entry: Mapping) -> str:
    run = f", run {entry['train_run']}" if entry.get("train_run") else ""
    return f"round {entry.get('round')} ({entry.get('batch')}{run})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _few(names: list) -> str:
    shown = ", ".join(str(n) for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
