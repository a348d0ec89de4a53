"""Scene attributes (time of day, weather, camera defects) from a few labeled scenes.

:func:`fit_attribute_probe` fits a linear probe (logistic regression) on the embeddings of the
few scenes whose attribute value is known and predicts a value and a confidence (the winning
class probability) for every scene. Embeddings per sample are averaged per scene first
(:func:`scene_means`), so all slices of a scene get one answer.

:func:`zero_shot_attribute` needs no labeled scene: with a CLIP-style model, each value's
text prompt is embedded in the images' space, and each scene takes the value whose prompt
is most similar (softmax over scaled cosine similarities as the confidence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AttributePrediction", "fit_attribute_probe", "scene_means", "zero_shot_attribute"]


@dataclass(frozen=True)
class AttributePrediction:
    """One attribute's predictions for every scene.

    Attributes
    ----------
    values : ndarray of str, shape (n_scenes,)
        Predicted value per scene.
    confidence : ndarray of float, shape (n_scenes,)
        Probability of the predicted value, in ``(0, 1]``.
    classes : tuple of str
        The values the probe knows, sorted.
    """

    values: np.ndarray
    confidence: np.ndarray
    classes: tuple[str, ...]


def scene_means(embeddings: np.ndarray, scene_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average per-sample embeddings per scene.

    Parameters
    ----------
    embeddings : ndarray, shape (n_samples, dim)
    scene_ids : ndarray, shape (n_samples,)
        Scene (group) key per sample.

    Returns
    -------
    scenes : ndarray, shape (n_scenes,)
        Sorted unique scene keys.
    means : ndarray, shape (n_scenes, dim)
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    scenes, inverse = np.unique(np.asarray(scene_ids), return_inverse=True)
    sums = np.zeros((len(scenes), embeddings.shape[1]))
    np.add.at(sums, inverse, embeddings)
    return scenes, sums / np.bincount(inverse)[:, None]


def fit_attribute_probe(
    embeddings: np.ndarray,
    labels: np.ndarray,
    labeled: np.ndarray,
    *,
    min_per_value: int = 1,
    attribute: str = "attribute",
) -> AttributePrediction:
    """Fit a logistic-regression probe on the labeled scenes and predict every scene.

    Parameters
    ----------
    embeddings : ndarray, shape (n_scenes, dim)
    labels : ndarray of str, shape (n_scenes,)
        Known values; only entries where ``labeled`` is true are read (never leaks the rest).
    labeled : ndarray of bool, shape (n_scenes,)
    min_per_value : int
        Fewest labeled scenes each value needs.
    attribute : str
        Name used in error messages.

    Returns
    -------
    AttributePrediction

    Raises
    ------
    ValueError
        Fewer than two values among the labeled scenes, or a value with fewer than
        ``min_per_value`` labeled scenes.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(embeddings, dtype=np.float64)
    labeled = np.asarray(labeled, dtype=bool)
    if x.ndim != 2 or len(x) != len(labeled) or len(labels) != len(labeled):
        raise ValueError(
            f"embeddings {x.shape}, labels ({len(labels)},) and labeled ({len(labeled)},) "
            "must describe the same scenes: pass one row/entry per scene"
        )
    y = np.asarray(labels, dtype=object)[labeled].astype(str)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(
            f"{attribute!r}: the labeled scenes show {len(classes)} value(s) {list(classes)}; "
            "label scenes of at least two different values"
        )
    short = {str(c): int(n) for c, n in zip(classes, counts) if n < min_per_value}
    if short:
        raise ValueError(
            f"{attribute!r}: values {short} have fewer than {min_per_value} labeled scenes; "
            "label more scenes of those values or lower min_per_value"
        )
    scaler = StandardScaler().fit(x[labeled])
    probe = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(x[labeled]), y)
    proba = probe.predict_proba(scaler.transform(x))
    best = proba.argmax(axis=1)
    return AttributePrediction(
        values=np.asarray(probe.classes_, dtype=object)[best].astype(str),
        confidence=proba[np.arange(len(x)), best],
        classes=tuple(str(c) for c in probe.classes_),
    )


def zero_shot_attribute(
    embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    values,
    *,
    temperature: float = 100.0,
) -> AttributePrediction:
    """Each scene's value by the prompt closest to its image embedding (CLIP-style).

    Parameters
    ----------
    embeddings : ndarray, shape (n_scenes, dim)
        Image embeddings in the model's joint space.
    text_embeddings : ndarray, shape (n_values, dim)
        One prompt embedding per value, same space.
    values : sequence of str, length n_values
    temperature : float, default=100.0
        Scale of the cosine similarities before the softmax (CLIP's trained logit scale is
        about 100).

    Returns
    -------
    AttributePrediction

    Examples
    --------
    >>> import numpy as np
    >>> p = zero_shot_attribute(np.array([[1.0, 0.1], [0.0, 1.0]]), np.eye(2), ["day", "night"])
    >>> p.values.tolist()
    ['day', 'night']
    """
    x = np.asarray(embeddings, dtype=np.float64)
    t = np.asarray(text_embeddings, dtype=np.float64)
    names = [str(v) for v in values]
    if x.ndim != 2 or t.ndim != 2 or x.shape[1] != t.shape[1] or len(t) != len(names):
        raise ValueError(
            f"embeddings {x.shape} and text_embeddings {t.shape} must share their dimension, "
            f"with one text embedding per value ({len(names)})"
        )
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"values must be at least two distinct names; got {names}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number; got {temperature!r}")
    order = np.argsort(names)
    t = t[order]
    logits = temperature * _unit_rows(x) @ _unit_rows(t).T
    logits -= logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    proba /= proba.sum(axis=1, keepdims=True)
    best = proba.argmax(axis=1)
    classes = tuple(names[i] for i in order)
    return AttributePrediction(
        values=np.asarray(classes, dtype=object)[best].astype(str),
        confidence=proba[np.arange(len(x)), best],
        classes=classes,
    )


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
