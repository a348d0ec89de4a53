"""What every annoloop operator shares: the run-now / schedule choice and progress reporting."""

from __future__ import annotations

from typing import Callable

import fiftyone.operators as foo
import fiftyone.operators.types as types

DELEGATE_PARAM = "delegate"


class AnnoloopOperator(foo.Operator):
    """An operator whose form offers "run now" or "schedule on a worker".

    ``default_delegated`` is the form's preselected choice. An explicit choice (the form's
    radio, or ``params={"delegate": True}`` from the SDK) is binding; without one, SDK calls
    run immediately unless they pass ``request_delegation=True``.
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
        choice = ctx.params.get(DELEGATE_PARAM)
        return None if choice is None else bool(choice)

    def add_execution_mode(self, ctx, inputs: types.Object) -> None:
        """Append the run-now / schedule radio to a form."""
        choices = types.RadioGroup()
        choices.add_choice(False, label="Run now", description="Runs in the App's server; best for small data")
        choices.add_choice(
            True,
            label="Schedule",
            description="Queues a delegated operation; run `fiftyone delegated launch` to execute it",
        )
        inputs.enum(
            DELEGATE_PARAM,
            choices.values(),
            default=self.default_delegated,
            label="Execution mode",
            view=choices,
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
