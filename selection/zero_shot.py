"""Prompt embeddings for zero-shot scene categorization with a CLIP-style checkpoint (glue).

:func:`prompt_embeddings` embeds one text prompt per attribute value with the checkpoint's
text tower, after checking that the embeddings field the prediction will read was written by
the same checkpoint (cosine similarity between two models' spaces means nothing).
:func:`annoloop.quality.scene_attributes.categorize_scenes` then takes them as
``text_embeddings``.
"""

from __future__ import annotations

from collections.abc import Sequence

import fiftyone as fo

from .embed import INFO_KEY
from .embedding_units import UNGROUPED
from .embeddings.models import TransformersEmbedder

__all__ = ["DEFAULT_PROMPT", "prompt_embeddings"]

#: How a value becomes a prompt (``{}`` is the value, underscores read as spaces).
DEFAULT_PROMPT = "a photo of a driving scene: {}"


def prompt_embeddings(
    dataset: fo.Dataset,
    embeddings_field: str,
    model: str,
    values: Sequence[str],
    *,
    prompt: str = DEFAULT_PROMPT,
    allow_download: bool = False,
    device: str | None = None,
) -> tuple[str | None, dict]:
    """``(slice, {value: prompt embedding})``: the slice whose ``embeddings_field`` this
    checkpoint wrote (None on a flat dataset) and the prompts in its space.

    Parameters
    ----------
    dataset : Dataset
    embeddings_field : str
        Image embeddings that ``compute_embeddings(model="hf:<model>")`` wrote.
    model : str
        The CLIP-style checkpoint: a local directory or a cached hub id.
    values : sequence of str
        The attribute's values (at least two).
    prompt : str
        Template with one ``{}`` (underscores in a value read as spaces).

    Raises
    ------
    ValueError
        On fewer than two values, a template without ``{}``, a field this checkpoint did
        not write on any slice, or a checkpoint without a text tower.

    Examples
    --------
    >>> slice_name, prompts = prompt_embeddings(dataset, "clip", "/models/clip-vit-b32",
    ...                                         ["day", "night"])  # doctest: +SKIP
    >>> categorize_scenes(dataset, "time_of_day", embeddings_field="clip",
    ...                   slice_name=slice_name, text_embeddings=prompts)  # doctest: +SKIP
    """
    values = [str(v) for v in values]
    if len(set(values)) < 2:
        raise ValueError(f"values must name at least two different values; got {values}")
    if prompt.count("{}") != 1:
        raise ValueError(f"prompt must hold one '{{}}' for the value; got {prompt!r}")
    recorded = dataset.info.get(INFO_KEY, {}).get(embeddings_field, {})
    name = f"hf:{model}"
    mine = [key for key, entry in recorded.items() if entry.get("model") == name]
    if not mine:
        found = sorted({e.get("model") for e in recorded.values()} - {None})
        raise ValueError(
            f"'{embeddings_field}' was written by {found or 'no model'}, not '{name}': run "
            f"compute_embeddings with model '{name}' into its own field first, and pass that "
            "field (similarities between two models' spaces mean nothing)"
        )
    embedder = TransformersEmbedder(model, allow_download=allow_download, device=device)
    texts = [prompt.format(v.replace("_", " ")) for v in values]
    vectors = embedder.embed_texts(texts).tolist()
    return (None if mine[0] == UNGROUPED else mine[0]), dict(zip(values, vectors))
