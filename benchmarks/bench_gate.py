"""Throughput of the schema gate on a real FiftyOne dataset, bulk versus a per-sample loop.

The dataset: ``--samples`` image samples (default 100,000), each with ``--labels`` 2D boxes
(default 10) carrying a bool and a str attribute, checked against a FiftyOne label schema
(``dataset.set_label_schemas``). A share ``--bad`` of the labels (default 2 %) is broken
(unknown class, box out of bounds, negative size, unknown attribute, wrong attribute type),
so the gate has tags and records to write.

What is timed:

* **bulk**: :func:`annoloop.quality.gate.gate_label_field` end to end on the whole dataset:
  the bulk read, the pure validator, and the writes (records, label tags, sample tags),
  plus the same read and validation timed on their own for a breakdown, and a second run
  with nothing changed (no writes needed);
* **naive** (baseline, same rules): a loop over ``--naive-samples`` samples (default 2,000)
  of a copy of the dataset that loads each sample, runs the same pure validator on that
  sample's labels, sets its records and tags, and saves it. Its per-sample time gives the
  projected time at full size and the ratio.

The two must agree: the benchmark checks that the naive loop found exactly the bulk gate's
violations on the shared samples.

Usage (``annoloop`` importable, e.g. after ``source scripts/env.sh``)::

    python benchmarks/bench_gate.py                          # 100k samples x 10 labels
    python benchmarks/bench_gate.py --samples 10000 --naive-samples 500
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

import numpy as np

CLASSES = ("car", "truck", "van", "pedestrian", "cyclist")
BAD_KINDS = (
    "unknown_class",
    "box_out_of_bounds",
    "box_non_positive_size",
    "unknown_attribute",
    "attribute_wrong_type",
)
SCHEMA = {
    "type": "detections",
    "component": "dropdown",
    "classes": list(CLASSES),
    "attributes": [
        {"name": "occluded", "type": "bool", "component": "toggle"},
        {"name": "annotator", "type": "str", "component": "text"},
    ],
}


def build_dataset(name: str, n_samples: int, n_labels: int, bad: float, seed: int, base: int):
    """A flat image dataset with random boxes; returns it and the number of broken labels.

    ``base`` distinct samples are made in Python (label objects are slow to build), then
    the dataset doubles itself server-side (``add_collection``) up to ``n_samples``; the
    copies get new sample ids and file paths, so every sample is its own.
    """
    import fiftyone as fo

    rng = np.random.default_rng(seed)
    dataset = fo.Dataset(name)
    dataset.add_sample_field(
        "ground_truth", fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections
    )
    dataset.add_sample_field("ground_truth.detections.occluded", fo.BooleanField)
    dataset.add_sample_field("ground_truth.detections.annotator", fo.StringField)
    base = min(base, n_samples)
    m = base * n_labels
    xy = rng.uniform(0.0, 0.7, (m, 2))
    wh = rng.uniform(0.05, 0.3, (m, 2))
    classes = rng.integers(0, len(CLASSES), m)
    occluded = rng.random(m) < 0.3
    broken = np.flatnonzero(rng.random(m) < bad)
    kind_of = dict(zip(broken.tolist(), rng.integers(0, len(BAD_KINDS), len(broken)).tolist()))
    samples = []
    for s in range(base):
        dets = []
        for j in range(s * n_labels, (s + 1) * n_labels):
            label, box = CLASSES[classes[j]], [*xy[j], *wh[j]]
            extra = {"occluded": bool(occluded[j]), "annotator": "team-a"}
            k = kind_of.get(j)
            if k == 0:
                label = "bus"
            elif k == 1:
                box = [0.9, 0.9, 0.3, 0.3]
            elif k == 2:
                box[2] = -box[2]
            elif k == 3:
                extra["colour"] = "red"
            elif k == 4:
                extra["annotator"] = None
                extra["difficulty"] = 3
            dets.append(fo.Detection(label=label, bounding_box=box, **extra))
        samples.append(
            fo.Sample(filepath=f"/bench/{s:07d}.jpg", ground_truth=fo.Detections(detections=dets))
        )
    dataset.add_samples(samples, progress=False)
    while len(dataset) < n_samples:
        dataset.add_collection(dataset.limit(n_samples - len(dataset)), new_ids=True)
    dataset.set_values("filepath", [f"/bench/{i:07d}.jpg" for i in range(n_samples)])
    dataset.set_label_schemas({"ground_truth": SCHEMA})
    copies, rest = divmod(n_samples, base)
    n_bad = len(broken) * copies + int(np.sum(broken < rest * n_labels))
    return dataset, n_bad


def naive_gate(view, label_field: str, spec: dict, violations_field: str) -> set:
    """The baseline: one sample at a time, same rules, one save per sample."""
    import fiftyone as fo

    from annoloop.quality.algorithms.schema_rules import BUILTIN_ATTRIBUTES, load_schema, validate_labels
    from annoloop.core.names import QUARANTINE_TAG

    schema = load_schema(spec)
    view.add_sample_field(
        violations_field,
        fo.ListField,
        subfield=fo.EmbeddedDocumentField,
        embedded_doc_type=fo.DynamicEmbeddedDocument,
    )
    found = set()
    for sample in view.iter_samples(progress=False):
        dets = sample[label_field].detections if sample[label_field] else []
        names = sorted({n for d in dets for n in d.field_names} - BUILTIN_ATTRIBUTES)
        geometry = [
            d.bounding_box if d.bounding_box and len(d.bounding_box) == 4 else [np.nan] * 4
            for d in dets
        ]
        attributes = {}
        for n in names:
            col = np.empty(len(dets), dtype=object)
            col[:] = [d[n] if d.has_field(n) else None for d in dets]
            attributes[n] = col
        labels = np.empty(len(dets), dtype=object)
        labels[:] = [d.label for d in dets]
        report = validate_labels(
            schema,
            np.zeros(len(dets), np.int64),
            labels,
            np.asarray(geometry, float).reshape(-1, 4),
            attributes,
        )
        records = []
        for row, rule, label, detail in zip(report.row, report.rule, report.label, report.detail):
            label_id = dets[row].id if row >= 0 else None
            records.append(
                fo.DynamicEmbeddedDocument(
                    field=label_field, rule=str(rule), label=label, label_id=label_id, detail=detail
                )
            )
            found.add((sample.filepath, label_id, str(rule)))
        bad_rows = set(report.bad_rows().tolist())
        for j, d in enumerate(dets):
            if j in bad_rows and QUARANTINE_TAG not in (d.tags or []):
                d.tags = [*(d.tags or []), QUARANTINE_TAG]
        sample[violations_field] = records or None
        if records and QUARANTINE_TAG not in sample.tags:
            sample.tags.append(QUARANTINE_TAG)
        sample.save()
    return found


def bulk_found(view, violations_field: str) -> set:
    filepaths, records = view.values(["filepath", violations_field])
    return {(fp, r.label_id, r.rule) for fp, recs in zip(filepaths, records) for r in recs or []}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=10, help="labels per sample")
    parser.add_argument("--bad", type=float, default=0.02, help="share of broken labels")
    parser.add_argument("--naive-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", type=int, default=2000, help="distinct samples built in Python")
    args = parser.parse_args(argv)

    import fiftyone as fo

    from annoloop.quality.gate import gate_label_field, resolve_schema
    from annoloop.quality.labels import read_detections
    from annoloop.quality.algorithms.schema_rules import load_schema, validate_labels

    name = f"bench-gate-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    dataset, n_bad = build_dataset(name, args.samples, args.labels, args.bad, args.seed, args.base)
    build_s = time.perf_counter() - t0
    log(f"built in {build_s:.1f} s")
    naive_ds = dataset.limit(args.naive_samples).clone(f"{name}-naive")
    try:
        spec = resolve_schema(dataset, "ground_truth")
        # Breakdown: the bulk read and the pure validator on their own.
        t0 = time.perf_counter()
        rows = read_detections(dataset, "ground_truth", False, extra={"tags": "tags"})
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        schema = load_schema(spec)
        report = validate_labels(
            schema, rows.sample, rows.label, rows.geometry, rows.attributes, kind=rows.kind
        )
        validate_s = time.perf_counter() - t0
        log(f"read {read_s:.2f} s, validate {validate_s:.2f} s")

        marks = {}
        t0 = time.perf_counter()
        summary = gate_label_field(
            dataset,
            "ground_truth",
            progress=lambda f, msg: marks.setdefault(msg.split()[0], time.perf_counter()),
        )
        bulk_s = time.perf_counter() - t0
        write_s = bulk_s - (marks["writing"] - t0)
        t0 = time.perf_counter()
        again = gate_label_field(dataset, "ground_truth")
        rerun_s = time.perf_counter() - t0
        log(f"bulk {bulk_s:.2f} s (writes {write_s:.2f} s), again {rerun_s:.2f} s")

        t0 = time.perf_counter()
        naive = naive_gate(naive_ds, "ground_truth", spec, "qa_violations")
        naive_s = time.perf_counter() - t0
        shared = dataset.limit(args.naive_samples)
        agree = naive == bulk_found(shared, "qa_violations")
    finally:
        naive_ds.delete()
        dataset.delete()

    n_labels = summary["total"]["n_labels"]
    per_naive = naive_s / args.naive_samples
    projected = per_naive * args.samples
    print(f"\n## Schema gate: {args.samples:,} samples x {args.labels} labels ({n_labels:,})\n")
    print(f"Dataset built in {build_s:.1f} s; {n_bad:,} labels broken on purpose.")
    print(
        f"Bulk found {summary['total']['n_violations']:,} violations on "
        f"{summary['total']['n_bad_labels']:,} labels in {summary['quarantined']:,} samples "
        f"(pure validator alone: {len(report.rule):,}); "
        f"naive loop agrees with bulk on its {args.naive_samples:,} samples: {agree}.\n"
    )
    n, m = f"{args.samples:,}", f"{args.naive_samples:,}"
    print("| step | samples | seconds | labels / s |")
    print("|---|---:|---:|---:|")
    table = [
        ("bulk read (`read_detections`, one `values()` call)", n, read_s, n_labels),
        ("pure validator (`validate_labels`, one call)", n, validate_s, n_labels),
        ("writes (records, label tags, sample tags)", n, write_s, None),
        ("**bulk gate, end to end**", n, bulk_s, n_labels),
        ("bulk gate again, nothing changed", n, rerun_s, n_labels),
        ("naive per-sample loop (same rules)", m, naive_s, args.naive_samples * args.labels),
        (f"naive, projected to {n} samples", n, projected, None),
    ]
    for step, count, seconds, labels in table:
        rate = f"{labels / seconds:,.0f}" if labels else ""
        print(f"| {step} | {count} | {seconds:.2f} | {rate} |")
    print(f"\nSpeed-up of the bulk gate over the per-sample loop: **{projected / bulk_s:.1f}x** "
          f"({per_naive * 1e3:.2f} ms vs {bulk_s / args.samples * 1e3:.3f} ms per sample).")
    assert again["newly_tagged"] == again["released"] == 0
    assert agree, "the naive loop and the bulk gate disagree"


if __name__ == "__main__":
    main()
