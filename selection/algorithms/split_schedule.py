"""How a batch budget splits into a coverage share and a targeting share.

Cold start has no model and therefore no failures to target, so round 0 is all coverage.
From then on the split moves linearly toward the 30 % coverage / 70 % targeting balance
recommended for feedback-driven annotation loops::

    coverage_fraction(round) = max(0.30, 1.00 - 0.35 * round)
    round 0 -> 1.00, round 1 -> 0.65, round 2 and later -> 0.30

An explicit fraction overrides the schedule. Whatever was asked, a round with no failure
queries is all coverage, and :class:`SplitDecision` says why in ``fallback_reason``.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

#: Coverage share the schedule converges to (30 % coverage / 70 % targeting).
FINAL_COVERAGE_FRACTION = 0.30
#: How much coverage share each round after the cold start hands to targeting.
COVERAGE_STEP_PER_ROUND = 0.35


@dataclass(frozen=True)
class SplitDecision:
    """The coverage / targeting counts for one batch.

    Attributes
    ----------
    coverage_fraction : float
        Fraction of the budget given to coverage (after any fallback).
    n_coverage, n_targeting : int
        Picks per share; they sum to the budget.
    fallback_reason : str or None
        Why the split differs from the scheduled / requested one, or None.
    """

    coverage_fraction: float
    n_coverage: int
    n_targeting: int
    fallback_reason: str | None


def scheduled_coverage_fraction(round_index: int) -> float:
    """Coverage fraction the default schedule gives round ``round_index`` (0-based).

    Parameters
    ----------
    round_index : int
        0 for the cold-start batch, 1 for the first batch planned after an evaluation, ...

    Returns
    -------
    float
        ``max(FINAL_COVERAGE_FRACTION, 1 - COVERAGE_STEP_PER_ROUND * round_index)``.
    """
    _check_round(round_index)
    # Rounded so that records read 0.3, not 0.30000000000000004.
    return round(max(FINAL_COVERAGE_FRACTION, 1.0 - COVERAGE_STEP_PER_ROUND * round_index), 6)


def decide_split(
    budget: int,
    *,
    round_index: int = 0,
    n_failures: int = 0,
    coverage_fraction: float | None = None,
) -> SplitDecision:
    """Split ``budget`` picks into coverage and targeting counts.

    Parameters
    ----------
    budget : int
        Total picks, > 0.
    round_index : int, default=0
        Loop round; selects the scheduled fraction when ``coverage_fraction`` is None.
    n_failures : int, default=0
        Number of failure queries available for targeting. With none, every pick is coverage.
    coverage_fraction : float or None, default=None
        Explicit coverage fraction in [0, 1]; overrides the schedule.

    Returns
    -------
    SplitDecision
        ``n_coverage = round(budget * fraction)`` (halves round up), the rest is targeting.

    Raises
    ------
    ValueError
        If ``budget`` <= 0, ``round_index`` < 0, ``n_failures`` < 0 or the fraction lies
        outside [0, 1].
    """
    if isinstance(budget, bool) or not hasattr(budget, "__index__"):
        raise ValueError(f"budget must be an integer, got {budget!r}")
    budget = operator.index(budget)
    if budget <= 0:
        raise ValueError(f"budget must be a positive number of samples, got {budget}")
    if n_failures < 0:
        raise ValueError(f"n_failures must be >= 0, got {n_failures}")
    fraction = scheduled_coverage_fraction(round_index)
    if coverage_fraction is not None:
        fraction = float(coverage_fraction)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"coverage_fraction must lie in [0, 1], got {coverage_fraction!r}")
    n_coverage = min(budget, math.floor(budget * fraction + 0.5))
    if n_coverage < budget and n_failures == 0:
        reason = (
            f"no failure queries to target: all {budget} picks are coverage instead of "
            f"{n_coverage} coverage + {budget - n_coverage} targeting"
        )
        return SplitDecision(1.0, budget, 0, reason)
    return SplitDecision(fraction, n_coverage, budget - n_coverage, None)


def _check_round(round_index: int) -> None:
    if isinstance(round_index, bool) or not isinstance(round_index, int) or round_index < 0:
        raise ValueError(f"round_index must be an integer >= 0, got {round_index!r}")
