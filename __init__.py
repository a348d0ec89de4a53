"""annoloop: a FiftyOne plugin bundle for a tight curate → annotate → train → evaluate loop.

The same checkout is two things:

* a FiftyOne plugin (``@annoloop/annoloop``): FiftyOne's loader imports this file and calls
  :func:`register`;
* a Python package for SDK users (``import annoloop``) when the checkout is importable under
  that name (``pip install -e .`` or the README's scripts).

Nothing heavy is imported here: FiftyOne re-imports plugins often, and SDK users pay only for
what they use.
"""

__version__ = "0.1.0"


def register(p) -> None:
    """Register every annoloop operator and panel with FiftyOne's plugin context ``p``."""
    from .operators import OPERATORS
    from .panels import PANELS

    for cls in (*OPERATORS, *PANELS):
        p.register(cls)
