"""The schema gate: check a flat table of labels against a label schema, vectorised.

One row per label (a sample key column ties rows to samples), one call per label field.
Each finding is a violation row ``(label row, sample, rule, class, detail)``; the glue
quarantines the offending labels/samples by tag and never deletes them.

Rules (stable ids, see :data:`RULES`):

``unknown_class``
    The label is not one of the schema's classes (or is missing / not a string). When it
    only differs by case or whitespace from a schema class (``" Car"`` vs ``"car"``), the
    detail says which.
``unknown_attribute``
    A value is set for an attribute the schema does not declare (FiftyOne's built-in label
    fields, :data:`BUILTIN_ATTRIBUTES`, are always allowed).
``missing_required_attribute``
    A ``required`` attribute has no value (``None`` / NaN, or no column at all).
``attribute_wrong_type``
    A value of the wrong type: ``bool`` for a bool attribute, an integer (integral floats
    accepted) for int, a real number for float, a string for str.
``attribute_value_out_of_set``
    A value outside the attribute's ``values``.
``attribute_out_of_range``
    A numeric value outside the attribute's closed ``range``.
``box_nan`` / ``box_non_positive_size`` / ``box_out_of_bounds``
    2D ``[x, y, w, h]``: a non-finite value; ``w <= 0`` or ``h <= 0``; outside [0, 1]
    by more than ``box_tolerance`` (default 1e-3).
``cuboid_nan`` / ``cuboid_non_positive_dimensions``
    3D ``location + dimensions + rotation``: a non-finite value; a dimension ``<= 0``.
``duplicate_label``
    Same sample, class and geometry (rounded to 1e-6) as an earlier row; the later rows
    are flagged.
``wrong_label_type``
    The row's ``kind`` is not the schema's (``"detection"`` for ``detections``,
    ``"cuboid"`` for ``cuboids``). Its geometry is then not checked.
``empty_sample``
    A sample that should be labeled has no label rows (row index -1).

Over ~400 lines because it is the rule catalogue: each rule is a short function, and half the
module is this documentation of what each rule checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .matching import encode
from .metrics import missing_mask

__all__ = [
    "BUILTIN_ATTRIBUTES",
    "RULES",
    "AttributeSpec",
    "LabelSchema",
    "SchemaReport",
    "load_schema",
    "validate_labels",
]

RULES = (
    "unknown_class",
    "unknown_attribute",
    "missing_required_attribute",
    "attribute_wrong_type",
    "attribute_value_out_of_set",
    "attribute_out_of_range",
    "box_out_of_bounds",
    "box_non_positive_size",
    "box_nan",
    "cuboid_non_positive_dimensions",
    "cuboid_nan",
    "duplicate_label",
    "wrong_label_type",
    "empty_sample",
)

#: Label fields FiftyOne defines itself; never reported as unknown attributes.
BUILTIN_ATTRIBUTES = frozenset(
    {
        "id",
        "_id",
        "_cls",
        "label",
        "tags",
        "attributes",
        "confidence",
        "index",
        "bounding_box",
        "mask",
        "mask_path",
        "location",
        "dimensions",
        "rotation",
        "quaternion",
    }
)

ATTRIBUTE_TYPES = ("categorical", "str", "bool", "int", "float", "any")
LABEL_TYPES = {"detections": ("detection", 4), "cuboids": ("cuboid", 9)}
# FiftyOne label-schema attribute types with no check here (dates, dicts, ids, lists).
_FIFTYONE_UNCHECKED = {"date", "datetime", "dict", "id", "list<str>", "list<int>", "list<float>"}
_NO_CLASS = "(none)"


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute: ``type`` in :data:`ATTRIBUTE_TYPES`, optional ``values`` (allowed
    set), optional closed ``range`` ``(lo, hi)``, and ``required``."""

    type: str = "any"
    values: tuple | None = None
    range: tuple[float, float] | None = None
    required: bool = False


@dataclass(frozen=True)
class LabelSchema:
    """What a label field may hold.

    ``label_type`` is ``"detections"`` (2D boxes) or ``"cuboids"`` (3D); ``classes`` is
    ``None`` when any class is allowed (a FiftyOne schema with a free-text class).
    """

    label_type: str
    classes: tuple[str, ...] | None
    attributes: dict[str, AttributeSpec] = field(default_factory=dict)


def _parse_attribute(name: str, spec: dict) -> AttributeSpec:
    if not isinstance(spec, dict):
        raise ValueError(f"attribute {name!r}: spec must be a dict; got {type(spec).__name__}")
    type_ = spec.get("type", "any")
    values = spec.get("values")
    if type_ in _FIFTYONE_UNCHECKED:
        type_, values = "any", None
    elif type_ == "str" and values is not None:
        type_ = "categorical"
    if type_ not in ATTRIBUTE_TYPES:
        raise ValueError(
            f"attribute {name!r}: unknown type {type_!r}; use one of {ATTRIBUTE_TYPES}"
        )
    rng = spec.get("range")
    if rng is not None:
        if len(rng) != 2 or not float(rng[0]) <= float(rng[1]):
            raise ValueError(f"attribute {name!r}: range must be [lo, hi] with lo <= hi; got {rng}")
        rng = (float(rng[0]), float(rng[1]))
    return AttributeSpec(
        type=type_,
        values=tuple(values) if values is not None else None,
        range=rng,
        required=bool(spec.get("required", False)),
    )


def load_schema(spec: dict, label_type: str | None = None) -> LabelSchema:
    """Build a :class:`LabelSchema` from a plain dict or a FiftyOne field label schema.

    Parameters
    ----------
    spec : dict
        Either the plain form::

            {"label_type": "detections", "classes": ["car", "person"],
             "attributes": {"occluded": {"type": "bool", "required": True},
                            "color": {"type": "categorical", "values": ["red", "blue"]},
                            "score": {"type": "float", "range": [0, 1]}}}

        or one field of FiftyOne's ``dataset.label_schemas`` (1.22)::

            {"type": "detections", "component": "dropdown", "classes": [...],
             "attributes": [{"name": "occluded", "type": "bool", "component": "toggle"},
                            {"name": "color", "type": "str", "component": "radio",
                             "values": ["red", "blue"]},
                            {"name": "score", "type": "float", "component": "slider",
                             "range": [0, 1]}]}

        ``attributes`` may be a list of dicts with ``name`` or a dict keyed by name, in
        either form. FiftyOne's ``str`` with ``values`` becomes ``categorical``; its
        ``date``/``datetime``/``dict``/``id``/``list<...>`` types are accepted unchecked.
        FiftyOne has no ``required`` setting; add ``"required": True`` to an attribute to
        enforce it.
    label_type : {"detections", "cuboids"}, optional
        Overrides ``spec["label_type"]``. FiftyOne stores 2D boxes and 3D cuboids alike as
        ``detections``, so pass ``"cuboids"`` for a 3D field.

    Raises
    ------
    ValueError
        On an unsupported label type, a malformed attribute, or duplicate names.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"schema spec must be a dict; got {type(spec).__name__}")
    fo_type = spec.get("type")
    if fo_type is not None and fo_type not in ("detections", "detection"):
        raise ValueError(f"only Detections label schemas are supported; got type {fo_type!r}")
    kind = label_type or spec.get("label_type") or "detections"
    if kind not in LABEL_TYPES:
        raise ValueError(f"label_type must be one of {sorted(LABEL_TYPES)}; got {kind!r}")

    raw = spec.get("attributes") or {}
    if isinstance(raw, list):
        names = [a.get("name") if isinstance(a, dict) else None for a in raw]
        if None in names:
            raise ValueError("every entry of an 'attributes' list needs a 'name'")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate attribute names in {names}")
        raw = {n: {k: v for k, v in a.items() if k != "name"} for n, a in zip(names, raw)}
    attributes = {name: _parse_attribute(name, s) for name, s in raw.items()}
    classes = spec.get("classes")
    return LabelSchema(kind, tuple(classes) if classes is not None else None, attributes)


@dataclass
class SchemaReport:
    """Violations, one per (label row, rule), sorted by row then rule.

    Attributes
    ----------
    row : ndarray of int64
        Label row, or -1 for sample-level findings (``empty_sample``).
    sample : ndarray
        Sample key of the finding.
    rule : ndarray of str
        Rule id.
    label : ndarray of object
        The row's class (as given; ``None`` for sample-level findings).
    detail : ndarray of object
        Human-readable detail.
    n_labels : int
        Rows checked.
    """

    row: np.ndarray
    sample: np.ndarray
    rule: np.ndarray
    label: np.ndarray
    detail: np.ndarray
    n_labels: int

    def bad_rows(self) -> np.ndarray:
        """Sorted label rows with at least one violation."""
        return np.unique(self.row[self.row >= 0])

    def bad_samples(self) -> np.ndarray:
        """Sorted sample keys with at least one violation (row- or sample-level)."""
        return np.unique(self.sample) if len(self.sample) else self.sample

    def summary(self) -> dict:
        """JSON summary: totals, and counts by rule, by class and by rule then class.

        Classes are keyed by ``str(label)``; ``"(none)"`` stands for a missing label and for
        sample-level findings.
        """
        by_rule_class: dict[str, dict[str, int]] = {}
        if len(self.rule):
            keys = np.where(np.equal(self.label, None), _NO_CLASS, self.label).astype(str)
            rules, rule_code = np.unique(self.rule, return_inverse=True)
            classes, class_code = np.unique(keys, return_inverse=True)
            pair, counts = np.unique(rule_code * len(classes) + class_code, return_counts=True)
            for p, n in zip(pair, counts):
                r, c = divmod(int(p), len(classes))
                by_rule_class.setdefault(str(rules[r]), {})[str(classes[c])] = int(n)
        by_class: dict[str, int] = {}
        for per in by_rule_class.values():
            for c, n in per.items():
                by_class[c] = by_class.get(c, 0) + n
        return {
            "n_labels": int(self.n_labels),
            "n_violations": int(len(self.rule)),
            "n_bad_labels": int(len(self.bad_rows())),
            "n_bad_samples": int(len(self.bad_samples())),
            "by_rule": {r: sum(p.values()) for r, p in sorted(by_rule_class.items())},
            "by_class": dict(sorted(by_class.items())),
            "by_rule_and_class": {
                r: dict(sorted(p.items())) for r, p in sorted(by_rule_class.items())
            },
        }


class _Findings:
    """Accumulates (rule, rows, detail) pieces; ``detail`` is one string or one per row."""

    def __init__(self):
        self.rows: list[np.ndarray] = []
        self.rules: list[np.ndarray] = []
        self.details: list[np.ndarray] = []

    def add(self, rule: str, rows, detail) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        d = np.empty(rows.size, dtype=object)
        d[:] = detail
        self.rows.append(rows)
        self.rules.append(np.full(rows.size, RULES.index(rule)))
        self.details.append(d)


def _normalise(name: str) -> str:
    return " ".join(name.split()).casefold()


def _is_instance(col: np.ndarray, types, exclude=()) -> np.ndarray:
    """Per-element ``isinstance`` for object columns (one ufunc call, not a Python loop)."""
    test = np.frompyfunc(lambda v: isinstance(v, types) and not isinstance(v, exclude), 1, 1)
    return test(col).astype(bool)


def _check_classes(f: _Findings, schema: LabelSchema, label: np.ndarray):
    """unknown_class; returns (rows with a str label, their class codes) for duplicates."""
    if label.dtype.kind == "U":
        str_rows = np.arange(len(label))
    else:
        is_str = _is_instance(label, str) if label.dtype.kind == "O" else np.zeros(len(label), bool)
        str_rows = np.flatnonzero(is_str)
        bad = np.flatnonzero(~is_str)
        f.add(
            "unknown_class",
            bad,
            [
                (
                    "label is missing"
                    if v is None
                    else f"label {v!r} is not a str ({type(v).__name__})"
                )
                for v in label[bad].tolist()
            ],
        )
    names, (codes,) = encode(label[str_rows].astype(str))
    if schema.classes is not None:
        variants = {_normalise(c): c for c in schema.classes}
        known = np.isin(names, np.asarray(schema.classes, dtype=str))
        notes = np.array(
            [
                (
                    f"{u!r} is a case/whitespace variant of schema class {variants[_normalise(u)]!r}"
                    if _normalise(u) in variants
                    else f"{u!r} is not a schema class"
                )
                for u in names.tolist()
            ],
            dtype=object,
        )
        bad = ~known[codes]
        f.add("unknown_class", str_rows[bad], notes[codes[bad]])
    return str_rows, codes


def _check_geometry(f: _Findings, label_type: str, geom: np.ndarray, check: np.ndarray, tol: float):
    """Box or cuboid rules on rows where ``check``; returns rows with finite geometry."""
    finite = np.isfinite(geom).all(axis=1)
    prefix = "box" if label_type == "detections" else "cuboid"
    nan_rows = np.flatnonzero(check & ~finite)
    f.add(f"{prefix}_nan", nan_rows, [f"non-finite geometry {g.tolist()}" for g in geom[nan_rows]])
    ok = check & finite
    if label_type == "detections":
        x, y, w, h = geom.T
        rows = np.flatnonzero(ok & ((w <= 0) | (h <= 0)))
        f.add(
            "box_non_positive_size",
            rows,
            [f"w={a:.6g}, h={b:.6g}" for a, b in zip(w[rows], h[rows])],
        )
        out = (x < -tol) | (y < -tol) | (x + w > 1 + tol) | (y + h > 1 + tol)
        rows = np.flatnonzero(ok & out)
        f.add(
            "box_out_of_bounds",
            rows,
            [
                f"[x, y, w, h] = {np.round(g, 6).tolist()} leaves [0, 1] (tolerance {tol:g})"
                for g in geom[rows]
            ],
        )
    else:
        rows = np.flatnonzero(ok & (geom[:, 3:6] <= 0).any(axis=1))
        f.add(
            "cuboid_non_positive_dimensions",
            rows,
            [f"dimensions {g.tolist()}" for g in geom[rows, 3:6]],
        )
    return ok


def _check_duplicates(
    f: _Findings, sample: np.ndarray, rows: np.ndarray, codes: np.ndarray, geom: np.ndarray
):
    """Flag rows repeating an earlier row's sample, class and (rounded) geometry."""
    if rows.size < 2:
        return
    keys = sample[rows]
    if keys.dtype.kind not in "iu":
        _, keys = np.unique(keys, return_inverse=True)
    # One fixed-width byte key per row (+ 0.0 turns -0.0 into 0.0), deduplicated exactly.
    bits = (np.round(geom[rows], 6) + 0.0).view(np.int64)
    key = np.ascontiguousarray(
        np.column_stack([keys.astype(np.int64), codes.astype(np.int64), bits])
    )
    _, first, inverse = np.unique(
        key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).ravel(),
        return_index=True,
        return_inverse=True,
    )
    first = first[inverse.ravel()]
    dup = np.flatnonzero(first != np.arange(rows.size))
    f.add(
        "duplicate_label",
        rows[dup],
        [f"same sample, class and geometry as row {r}" for r in rows[first[dup]]],
    )


def _check_attribute(
    f: _Findings, name: str, spec: AttributeSpec, col: np.ndarray, present: np.ndarray
):
    """Type, value-set and range rules for one declared attribute column."""
    kind = col.dtype.kind
    numeric = None
    if spec.type == "bool":
        ok = present & (kind == "b" or (kind == "O" and _is_instance(col, (bool, np.bool_))))
    elif spec.type in ("int", "float"):
        if kind in "iuf":
            ok = present.copy()
        elif kind == "O":
            ok = present & _is_instance(
                col, (int, float, np.integer, np.floating), (bool, np.bool_)
            )
        else:
            ok = np.zeros(len(col), bool)
        numeric = np.full(len(col), np.nan)
        numeric[ok] = col[ok].astype(np.float64)
        if spec.type == "int":
            ok &= numeric == np.round(numeric)
    elif spec.type == "str":
        ok = present & (kind == "U" or (kind == "O" and _is_instance(col, str)))
    else:  # categorical and any: no type of their own
        ok = present
    wrong = np.flatnonzero(present & ~ok)
    f.add(
        "attribute_wrong_type",
        wrong,
        [f"{name}={v!r} is not {spec.type}" for v in col[wrong].tolist()],
    )

    if spec.values is not None:
        rows = np.flatnonzero(ok)
        values = np.empty(len(spec.values), dtype=object)
        values[:] = spec.values
        out = rows[~np.isin(col[rows].astype(object), values)]
        f.add(
            "attribute_value_out_of_set",
            out,
            [f"{name}={v!r} not in {list(spec.values)}" for v in col[out].tolist()],
        )
    if spec.range is not None and numeric is not None:
        lo, hi = spec.range
        out = np.flatnonzero(ok & ((numeric < lo) | (numeric > hi)))
        f.add(
            "attribute_out_of_range",
            out,
            [f"{name}={v:g} outside [{lo:g}, {hi:g}]" for v in numeric[out]],
        )


def _check_attributes(f: _Findings, schema: LabelSchema, attributes: dict, n: int):
    for name, values in attributes.items():
        col = np.asarray(values)
        if col.shape != (n,):
            raise ValueError(f"attributes[{name!r}] must have shape ({n},); got {col.shape}")
        present = ~missing_mask(col)
        spec = schema.attributes.get(name)
        if spec is not None:
            _check_attribute(f, name, spec, col, present)
        elif name not in BUILTIN_ATTRIBUTES:
            f.add(
                "unknown_attribute",
                np.flatnonzero(present),
                f"attribute {name!r} is not in the schema",
            )
    for name, spec in schema.attributes.items():
        if spec.required:
            rows = (
                np.arange(n)
                if name not in attributes
                else np.flatnonzero(missing_mask(np.asarray(attributes[name])))
            )
            f.add("missing_required_attribute", rows, f"required attribute {name!r} has no value")


def validate_labels(
    schema: LabelSchema,
    sample,
    label,
    geometry,
    attributes=None,
    *,
    kind=None,
    expected_samples=None,
    box_tolerance: float = 1e-3,
) -> SchemaReport:
    """Check every label row against ``schema``; see the module docstring for the rules.

    Parameters
    ----------
    schema : LabelSchema
    sample : array-like of shape (n,)
        Sample key of each label row (ints or strings).
    label : array-like of shape (n,)
        Class of each row, as stored: strings, with ``None`` (or anything else) reported.
    geometry : array-like of shape (n, 4) or (n, 9)
        ``[x, y, w, h]`` for ``detections``; ``location + dimensions + rotation`` for
        ``cuboids``. NaN where a value is absent (it is reported, not raised).
    attributes : dict[str, array-like of shape (n,)], optional
        Attribute columns, ``None``/NaN where a row has no value.
    kind : array-like of shape (n,), optional
        Each row's label kind (``"detection"``, ``"cuboid"``, ``"polyline"``...); enables
        ``wrong_label_type``.
    expected_samples : array-like, optional
        Keys of the samples that should be labeled; enables ``empty_sample``.
    box_tolerance : float, default 1e-3
        Slack for ``box_out_of_bounds``.

    Returns
    -------
    SchemaReport

    Raises
    ------
    ValueError
        On inconsistent shapes or an unknown label type (problems with the call, not with
        the labels).
    """
    if schema.label_type not in LABEL_TYPES:
        raise ValueError(
            f"schema.label_type must be one of {sorted(LABEL_TYPES)}; got {schema.label_type!r}"
        )
    expected_kind, n_cols = LABEL_TYPES[schema.label_type]
    sample = np.asarray(sample)
    if sample.ndim != 1:
        raise ValueError(f"sample must be 1-D; got shape {sample.shape}")
    n = len(sample)
    label = np.asarray(label)
    if label.shape != (n,):
        raise ValueError(f"label must have shape ({n},); got {label.shape}")
    geom = np.asarray(geometry, dtype=np.float64)
    if n == 0:
        geom = geom.reshape(0, n_cols)
    if geom.shape != (n, n_cols):
        raise ValueError(
            f"geometry for {schema.label_type} must have shape ({n}, {n_cols}); got {geom.shape}"
        )
    if box_tolerance < 0:
        raise ValueError(f"box_tolerance must be >= 0; got {box_tolerance}")

    f = _Findings()
    check = np.ones(n, bool)
    if kind is not None:
        kind = np.asarray(kind)
        if kind.shape != (n,):
            raise ValueError(f"kind must have shape ({n},); got {kind.shape}")
        check = np.asarray(kind == expected_kind, dtype=bool)
        wrong = np.flatnonzero(~check)
        f.add(
            "wrong_label_type",
            wrong,
            [f"a {k!r}, expected a {expected_kind!r}" for k in kind[wrong].tolist()],
        )

    str_rows, codes = _check_classes(f, schema, label)
    finite = _check_geometry(f, schema.label_type, geom, check, box_tolerance)
    keep = finite[str_rows]
    _check_duplicates(f, sample, str_rows[keep], codes[keep], geom)
    _check_attributes(f, schema, attributes or {}, n)

    rows = np.concatenate(f.rows) if f.rows else np.zeros(0, np.int64)
    rules = np.concatenate(f.rules) if f.rules else np.zeros(0, np.int64)
    details = np.concatenate(f.details) if f.details else np.zeros(0, object)
    samples = sample[rows]
    labels = label[rows].astype(object)

    if expected_samples is not None:
        expected = np.asarray(expected_samples)
        if n and (expected.dtype.kind in "U") != (sample.dtype.kind in "U"):
            raise ValueError(
                f"expected_samples ({expected.dtype}) and sample ({sample.dtype}) keys must be of one kind"
            )
        empty = expected[~np.isin(expected, sample)]
        rows = np.concatenate([rows, np.full(len(empty), -1)])
        rules = np.concatenate([rules, np.full(len(empty), RULES.index("empty_sample"))])
        details = np.concatenate(
            [details, np.full(len(empty), "sample has no labels", dtype=object)]
        )
        samples = np.concatenate([samples, empty]) if n else empty
        labels = np.concatenate([labels, np.full(len(empty), None, dtype=object)])

    order = np.lexsort((rules, np.where(rows < 0, n, rows)))
    return SchemaReport(
        row=rows[order],
        sample=samples[order],
        rule=np.asarray(RULES)[rules[order]],
        label=labels[order],
        detail=details[order],
        n_labels=n,
    )
