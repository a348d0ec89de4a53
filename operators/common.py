"""What every annoloop operator shares: execution options, the run's target and progress."""

from __future__ import annotations

from typing import Callable

import fiftyone.operators as foo
import fiftyone.operators.types as types
from fiftyone.operators.constants import ViewTarget

from ..core.views import unique_values

#: SDK parameter that forces a mode: ``params={"delegate": True}`` queues the run,
#: ``False`` runs it now (as voxel51's brain plugin does). The App uses its own
#: Execute / Schedule button instead (:meth:`AnnoloopOperator.resolve_execution_options`).
DELEGATE_PARAM = "delegate"


class AnnoloopOperator(foo.Operator):
    """An operator that runs now or on a worker, from the App's native execute / schedule
    button; ``default_delegated`` is the button's preselected choice (heavy work schedules,
    quick work runs now).

    An SDK ``params={"delegate": ...}`` is binding; without it, SDK calls run immediately
    unless they pass ``request_delegation=True``.
    """

    default_delegated: bool = False
    #: Hidden from the App's operator browser (a step other operators queue, not a user action).
    unlisted: bool = False
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
            unlisted=self.unlisted,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def schedules_by_default(self, ctx) -> bool:
        """Whether the App preselects "Schedule" for this call (override to size by params)."""
        return self.default_delegated

    def resolve_delegation(self, ctx) -> bool | None:
        choice = ctx.params.get(DELEGATE_PARAM)
        return None if choice is None else bool(choice)

    def resolve_execution_options(self, ctx) -> foo.ExecutionOptions:
        return foo.ExecutionOptions(
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=self.schedules_by_default(ctx),
        )


def run_target(
    ctx,
    inputs: types.Object | None = None,
    action: str = "Process",
    default: str = ViewTarget.DATASET,
):
    """The samples a run acts on, and (with ``inputs``) the form's choice of them.

    The form offers the whole dataset (the default: an open saved view must not silently
    shrink a run), the current view or the selection, and says how many the run covers.
    ``default`` is the form's preselected target: an operator whose very action is on
    the open view (simulated annotation of a batch) preselects ``ViewTarget.CURRENT_VIEW``.
    An SDK call without ``view_target`` acts on the ``view=`` it passes (else the dataset);
    with ``view_target`` it follows it.
    """
    if inputs is not None:
        inputs.view_target(ctx, default_target=default, action_description=action)
    target = ctx.target_view()
    if inputs is not None:
        inputs.view("target_count", types.Notice(label=f"This run covers {_size(target)}"))
    return target


def _size(collection) -> str:
    if collection.media_type == "group":
        return f"{len(unique_values(collection, 'group.id')):,} scenes"
    return f"{collection.count():,} samples"


def require_dataset(ctx):
    """The context's dataset, or a clear error for SDK calls made without one."""
    if ctx.dataset is None:
        raise ValueError("no dataset: open one or pass `dataset=`")
    return ctx.dataset


def no_dataset_form(inputs: types.Object) -> types.Property:
    """The form shown when the App has no dataset open."""
    inputs.view("no_dataset", types.Warning(label="Open a dataset first"))
    return types.Property(inputs)


def overwrite_toggle(inputs: types.Object, existing: str | None, description: str) -> None:
    """The ``overwrite`` toggle; when ``existing`` (what a run would replace) is set, a
    notice says so before the user submits."""
    if existing:
        inputs.view(
            "overwrite_notice",
            types.Notice(label=f"{existing}: turn on Overwrite to replace it, or change the name"),
        )
    inputs.bool("overwrite", default=False, label="Overwrite", description=description)


def whole_number(value):
    """Form numbers may arrive as floats (``1000.0``); whole ones become ints, others stay
    as they are for the core to reject with a clear message."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def queue_sibling(operator: foo.Operator, ctx, name: str, view, params: dict) -> str:
    """Schedule this plugin's operator ``name`` on ``view`` as a delegated operation, as the
    App's Schedule button does (any worker may take it); returns the operation's id."""
    uri = operator.uri.rsplit("/", 1)[0] + "/" + name
    queued = foo.execute_operator(
        uri, ctx=dict(dataset=ctx.dataset, view=view, params=params), request_delegation=True
    )
    return str(queued.result["id"])


def progress_reporter(ctx) -> Callable[[float, str], None]:
    """A ``progress(fraction, label)`` callback that reports through the operator context."""

    def report(fraction: float, label: str = "") -> None:
        ctx.set_progress(progress=max(0.0, min(1.0, float(fraction))), label=label)

    return report
