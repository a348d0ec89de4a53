"""The autolabel vocabulary: free-text prompts and the schema class each one stands for.

A prompt mapped to nothing (``None``) or to a non-schema class is a distractor: the labeler
(:mod:`.labeling`) drops its boxes and counts them as ``off_schema``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .base import normalise

__all__ = ["Vocabulary", "build_vocabulary"]


@dataclass(frozen=True)
class Vocabulary:
    """Prompts sent to the model and the schema class each one stands for.

    Attributes
    ----------
    classes : list of str
        The schema classes being labeled.
    prompts : list of str
        Texts sent to the detector.
    prompt_class : list of (str or None)
        Schema class of each prompt; None for a distractor / off-schema prompt.
    """

    classes: list[str]
    prompts: list[str]
    prompt_class: list[str | None]

    def to_dict(self) -> dict:
        """JSON form, as recorded on the run."""
        return {"classes": self.classes, "prompts": [list(p) for p in zip(self.prompts, self.prompt_class)]}


def build_vocabulary(
    classes: Sequence[str], prompts: Mapping[str, str | None] | Sequence[str] | None = None
) -> Vocabulary:
    """Map free-text prompts to schema classes.

    Parameters
    ----------
    classes : sequence of str
        Schema classes; non-empty, unique.
    prompts : mapping or sequence of str, optional
        ``{prompt: class or None}``, or prompts that are themselves class names; default
        one prompt per class, its name. A prompt's class is matched to ``classes`` exactly,
        else ignoring case and spacing; no match (or None) makes it off-schema.

    Raises
    ------
    ValueError
        On an empty or malformed class list, empty or repeated prompts, or prompts none of
        which reaches a schema class.
    """
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise ValueError(f"classes must be a list of class names; got {classes!r}")
    classes = [c.strip() if isinstance(c, str) else c for c in classes]
    if not classes:
        raise ValueError(
            "the class list is empty: pass classes, or give the label field a label schema "
            "(dataset.set_label_schemas) or classes (dataset.classes)"
        )
    bad = [c for c in classes if not isinstance(c, str) or not c]
    if bad:
        raise ValueError(f"classes must be non-empty strings; got {bad}")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(f"classes {repeated} are listed more than once")
    by_name = {normalise(c): c for c in reversed(classes)}

    def schema_class(name) -> str | None:
        if name is None:
            return None
        if not isinstance(name, str):
            raise ValueError(f"a prompt's class must be a str or None; got {name!r}")
        return name.strip() if name.strip() in classes else by_name.get(normalise(name))

    if prompts is None:
        pairs = [(c, c) for c in classes]
    elif isinstance(prompts, Mapping):
        pairs = [(p, schema_class(c)) for p, c in prompts.items()]
    elif isinstance(prompts, Sequence) and not isinstance(prompts, str):
        pairs = [(p, schema_class(p) if isinstance(p, str) else None) for p in prompts]
    else:
        raise ValueError(f"prompts must be a dict of prompt -> class or a list of str; got {prompts!r}")
    if not pairs:
        raise ValueError("prompts is empty; leave it unset to use the class names")
    texts = [p.strip() if isinstance(p, str) else p for p, _ in pairs]
    bad = [p for p in texts if not isinstance(p, str) or not p]
    if bad:
        raise ValueError(f"prompts must be non-empty strings; got {bad}")
    seen = Counter(normalise(p) for p in texts)
    repeated = sorted(p for p in texts if seen[normalise(p)] > 1)
    if repeated:
        raise ValueError(f"prompts {repeated} repeat each other (case and spacing ignored)")
    mapped = [c for _, c in pairs]
    if all(c is None for c in mapped):
        raise ValueError(
            f"no prompt maps to a schema class {classes}: every detection would be off-schema"
        )
    return Vocabulary(classes, texts, mapped)
