"""What a plan is asked for, once: :class:`PlanRequest` carries the settings from the
operator's form, the panel or the SDK to :func:`.batches.plan` and into the plan record;
:func:`plan_defaults` gives the form and the panel the same defaults.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass

import fiftyone as fo

from ..core.names import DEFAULT_GT_FIELD, DEFAULT_PRED_FIELD
from .algorithms import planner
from .algorithms.split_schedule import scheduled_coverage_fraction
from .embed import DEFAULT_EMBEDDINGS_FIELD, DEFAULT_GROUP_FIELD
from .failures import targetable_evaluations
from .plan_record import default_round, next_batch_name, plan_record, planned_batches
from .pool import embedding_fields

__all__ = ["DEFAULT_BUDGET", "PlanDefaults", "PlanRequest", "plan_defaults"]

#: Units a first batch plans when no earlier plan says otherwise: the demo loop's round
#: (30 scenes), small enough to label in one sitting, large enough to cover the pool.
DEFAULT_BUDGET = 30


@dataclass(frozen=True)
class PlanRequest:
    """The settings of one plan (see :func:`.batches.plan_batch` for each).

    Settings left None are resolved by :func:`.batches.plan` from the dataset (batch name,
    slice, label field, evaluation, uncertainty slice, round); ``coverage_fraction=None``
    follows the round schedule.
    """

    budget: int
    embeddings_field: str
    batch_name: str | None = None
    coverage_fraction: float | None = None
    coverage_method: str = planner.DEFAULT_COVERAGE_METHOD
    targeting_source: str = "failures"
    uncertainty_field: str = DEFAULT_PRED_FIELD
    uncertainty_slice: str | None = None
    eval_key: str | None = None
    pred_field: str | None = None
    patches_field: str | None = None
    round_index: int | None = None
    neighbors_per_failure: int | None = None
    seed: int = 0
    dry_run: bool = False
    slice_name: str | None = None
    label_field: str | None = None

    @property
    def uncertainty(self) -> bool:
        """Targeting serves the model's uncertainty on the pool, not an evaluation's failures."""
        return self.targeting_source == "uncertainty"

    def validate(self) -> None:
        """Check what needs no dataset.

        Raises
        ------
        ValueError
            On a budget that is not a positive integer, no embeddings field, an unknown
            coverage method or targeting source, a non-integer seed, or failure settings
            (``eval_key``, ``pred_field``, ``patches_field``) with uncertainty targeting.
        """
        if isinstance(self.budget, bool) or not hasattr(self.budget, "__index__"):
            raise ValueError(f"budget must be an integer, got {self.budget!r}")
        if operator.index(self.budget) <= 0:
            raise ValueError(
                f"budget must be a positive number of units to label, got {self.budget}"
            )
        if not isinstance(self.embeddings_field, str) or not self.embeddings_field:
            raise ValueError(
                f"embeddings_field is required (a field holding one vector per sample), got "
                f"{self.embeddings_field!r}; compute embeddings first"
            )
        if self.coverage_method not in planner.COVERAGE_METHODS:
            raise ValueError(
                f"coverage_method must be one of {planner.COVERAGE_METHODS}, got "
                f"{self.coverage_method!r}"
            )
        if self.targeting_source not in planner.TARGETING_SOURCES:
            raise ValueError(
                f"targeting_source must be one of {planner.TARGETING_SOURCES}, got "
                f"{self.targeting_source!r}"
            )
        if isinstance(self.seed, bool) or not hasattr(self.seed, "__index__"):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        # Uncertainty targeting uses no evaluation: refuse its settings rather than ignore them.
        failure_settings = ("eval_key", "pred_field", "patches_field")
        named = [n for n in failure_settings if getattr(self, n) is not None]
        if self.uncertainty and named:
            raise ValueError(
                f"{', '.join(named)} select the failures to target; they do not apply with "
                "targeting_source='uncertainty'"
            )

    def resolved(self, **values) -> PlanRequest:
        """A copy with the settings the dataset decided (see :func:`.batches.plan`)."""
        return dataclasses.replace(self, **values)

    def settings(self) -> planner.PlanSettings:
        """What the pure planner needs of a resolved request."""
        return planner.PlanSettings(
            budget=int(self.budget),
            coverage_fraction=self.coverage_fraction,
            round_index=self.round_index,
            coverage_method=self.coverage_method,
            targeting_source=self.targeting_source,
            neighbors_per_failure=self.neighbors_per_failure,
            seed=int(self.seed),
        )


@dataclass(frozen=True)
class PlanDefaults:
    """What the operator's form and the panel preselect for the next plan of a dataset."""

    budget: int
    embeddings_fields: list
    embeddings_field: str | None
    evaluations: list
    eval_key: str | None
    round_index: int
    scheduled_fraction: float
    coverage_method: str
    batch_name: str
    label_field: str


def plan_defaults(
    dataset: fo.Dataset, slice_name: str | None = None, targeting_source: str = "failures"
) -> PlanDefaults:
    """The defaults of the next plan of ``dataset``.

    Parameters
    ----------
    dataset : Dataset
    slice_name : str, optional
        Grouped datasets: the slice whose embeddings stand for the scene; default the
        dataset's default slice.
    targeting_source : {"failures", "uncertainty"}, default="failures"
        Uncertainty targeting (predictions of a trained model) ends the cold start as an
        evaluation does.

    Returns
    -------
    PlanDefaults
        ``budget``: the latest plan's, else :data:`DEFAULT_BUDGET`; ``embeddings_field``:
        scene embeddings first, then ``embedding``, fields set on every sample before
        others; ``eval_key``: the latest targetable evaluation; ``round_index`` and its
        ``scheduled_fraction`` of coverage; the default coverage method, the next batch
        name and ``ground_truth`` as the label field.
    """
    if dataset.media_type == "group":
        slice_name = slice_name or dataset.default_group_slice
    fields = embedding_fields(dataset, slice_name)
    reference = dataset.select_group_slices(slice_name) if slice_name else dataset
    ranked = sorted(fields, key=lambda f: (f != DEFAULT_GROUP_FIELD, f != DEFAULT_EMBEDDINGS_FIELD))
    complete = [f for f in ranked if reference.count(f) == len(reference)]
    evaluations = targetable_evaluations(dataset)
    round_index = default_round(dataset, bool(evaluations) or targeting_source == "uncertainty")
    return PlanDefaults(
        budget=_last_budget(dataset),
        embeddings_fields=fields,
        embeddings_field=(complete or ranked or [None])[0],
        evaluations=evaluations,
        eval_key=evaluations[-1] if evaluations else None,
        round_index=round_index,
        scheduled_fraction=scheduled_coverage_fraction(round_index),
        coverage_method=planner.DEFAULT_COVERAGE_METHOD,
        batch_name=next_batch_name(dataset),
        label_field=DEFAULT_GT_FIELD,
    )


def _last_budget(dataset: fo.Dataset) -> int:
    planned = planned_batches(dataset)
    return plan_record(dataset, planned[-1])["plan"]["budget"] if planned else DEFAULT_BUDGET
