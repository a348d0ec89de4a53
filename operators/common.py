"""What every annoloop operator shares: execution options and progress reporting."""

from __future__ import annotations

from typing import Callable

import fiftyone.operators as foo
import fiftyone.operators.types as types

#: SDK parameter that forces a mode: ``params={"delegate": True}`` queues the run, ``False``
#: runs it now (as voxel51's brain plugin does). The App uses its own Execute / Schedule
#: button instead (:meth:`AnnoloopOperator.resolve_execution_options`).
DELEGATE_PARAM = "delegate"


class AnnoloopOperator(foo.Operator):
    """An operator that runs now or on a worker, chosen with the App's native Execute /
    Schedule button; ``default_delegated`` is the button's preselected choice (heavy work
    schedules, quick work runs now).

    An SDK ``params={"delegate": ...}`` is binding; without it, SDK calls run immediately
    unless they pass ``request_delegation=True``.
    """

    default_delegated: bool = False
    operator_name: str
    operator_label: str
    operator_description: str

    @property
    def config(self) -> foo.OperatorConfig:
        # Every annoloop operator builds its form from the dataset and can run either way.
        return foo.OperatorConfig(
            name=self.operator_name,
            label=self.operator_label,
            description=self.operator_description,
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_delegation(self, ctx) -> bool | None:
        # None leaves the choice to the App's button or the SDK's ``request_delegation``.
        choice = ctx.params.get(DELEGATE_PARAM)
        return None if choice is None else bool(choice)

    def resolve_execution_options(self, ctx) -> foo.ExecutionOptions:
        return foo.ExecutionOptions(
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=self.default_delegated,
        )


def require_dataset(ctx):
    """The context's dataset, or a clear error for SDK calls made without one."""
    if ctx.dataset is None:
        raise ValueError("no dataset: open one or pass `dataset=`")
    return ctx.dataset


def no_dataset_form(inputs: types.Object) -> types.Property:
    """The form shown when the App has no dataset open."""
    inputs.view("no_dataset", types.Warning(label="Open a dataset first"))
    return types.Property(inputs)


def progress_reporter(ctx) -> Callable[[float, str], None]:
    """A ``progress(fraction, label)`` callback that reports through the operator context."""

    def report(fraction: float, label: str = "") -> None:
        ctx.set_progress(progress=max(0.0, min(1.0, float(fraction))), label=label)

    return report
