"""Proof on the demo dataset: golden-set QA catches annotator drift, the gate catches broken
labels.

Part 1, drift. The demo (``--scenes`` scenes: left/right cameras and a LiDAR sweep) gets frozen
splits with a golden set of ``--golden`` scenes. The simulated annotator then labels the golden
set batch after batch: ``--clean`` clean batches (the demo's clean profile, a new seed each),
then one batch per kind of drift: a class renamed (``van`` -> ``vehicle``), boxes loosened
(+25 %), misses raised (3 % -> 20 %), and the demo's drifted profile (all at once). After
each batch ``check_golden`` scores it against the golden labels on every slice (2D boxes,
3D cuboids) and reports the alarms of that batch. Expected: every drifted batch raises at
least one alarm of its kind, no clean batch raises any.

Part 2, gate. ``--pool`` scenes outside the frozen splits are labelled by the clean annotator
and tagged as a batch; ``--per-rule`` labels (or samples) per rule are then broken on purpose
on camera and point-cloud slices. ``gate_label_field`` runs against the field's FiftyOne label
schema. Expected: every injected violation caught with its rule, nothing flagged on clean
labels, not one label deleted or changed (tags aside), and after the fix a re-run releases
every quarantined sample.

Usage (``annoloop`` importable, e.g. after ``source scripts/env.sh``)::

    python benchmarks/bench_drift.py
    python benchmarks/bench_drift.py --scenes 120 --golden 30 --pool 30
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
import uuid

import numpy as np
from fiftyone import ViewField as F

CLASSES = ["car", "cyclist", "pedestrian", "truck", "van"]
SCHEMA = {
    "type": "detections",
    "component": "dropdown",
    "classes": CLASSES,
    "attributes": [
        {"name": "annotator", "type": "str", "component": "text"},
        {"name": "batch", "type": "str", "component": "text"},
    ],
}
SLICES = ("left", "right", "pcd")
#: Drift kind -> the alarm rules that count as catching it.
EXPECTED_RULES = {
    "rename": {"new_class", "class_rename", "class_split"},
    "loose": {"iou_drop"},
    "misses": {"miss_rate_rise", "recall_drop"},
    "all": {
        "new_class",
        "class_rename",
        "class_split",
        "iou_drop",
        "miss_rate_rise",
        "recall_drop",
        "f1_drop",
    },
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def batches(n_clean: int):
    """``(name, kind, profile)``: clean batches, then one per kind of drift."""
    from annoloop.demo.algorithms.annotator import CLEAN, DRIFTED

    out = [(f"batch-{i:03d}", "clean", CLEAN) for i in range(n_clean)]
    out += [
        ("batch-rename", "rename", dataclasses.replace(CLEAN, rename={"van": "vehicle"})),
        ("batch-loose", "loose", dataclasses.replace(CLEAN, looseness=0.25)),
        ("batch-misses", "misses", dataclasses.replace(CLEAN, miss_rate=0.2)),
        ("batch-drifted", "all", DRIFTED),
    ]
    return out


def run_drift(dataset, n_clean: int) -> list[dict]:
    from annoloop.demo.annotation import annotate_batch
    from annoloop.quality.golden import check_golden
    from annoloop.core.names import GOLDEN_SPLIT_TAG

    golden = dataset.select_groups(dataset.match_tags(GOLDEN_SPLIT_TAG).distinct("group.id"))
    rows = []
    for i, (name, kind, profile) in enumerate(batches(n_clean)):
        annotate_batch(golden, name, profile=profile, seed=100 + i)
        result = check_golden(dataset, "ground_truth")
        alarms = result["new_alarms"]
        overall = {s: m["overall"] for s, m in result["per_batch"][name].items()}
        caught = any(a["rule"] in EXPECTED_RULES.get(kind, ()) for a in alarms)
        rows.append(
            {"batch": name, "kind": kind, "alarms": alarms, "overall": overall, "caught": caught}
        )
        log(f"{name}: {len(alarms)} alarms")
    return rows


def pool_batch(dataset, n_pool: int, tag: str):
    """Tag ``n_pool`` scenes outside the frozen splits as a batch; return the grouped view."""
    from annoloop.core.names import FROZEN_SPLIT_TAGS

    left = dataset.select_group_slices("left")
    free = left.match_tags(list(FROZEN_SPLIT_TAGS), bool=False).values("group.id")[:n_pool]
    for name in SLICES:
        dataset.select_groups(free).select_group_slices(name).tag_samples(tag)
    return dataset.select_groups(free)


def label_snapshot(dataset) -> dict:
    """Every ground_truth label, without its tags, as canonical JSON by (slice, label id)."""
    out = {}
    for name in SLICES:
        for dets in dataset.select_group_slices(name).values(F("ground_truth.detections")):
            for d in dets or []:
                # JSON text, so that the NaNs injected on purpose compare equal to themselves
                content = {k: v for k, v in d.items() if k != "tags"}
                out[(name, str(d["_id"]))] = json.dumps(content, sort_keys=True, default=str)
    return out


def inject(pool, per_rule: int, rng) -> tuple[set, dict]:
    """Break labels of the pool batch; return expected findings and the originals to restore."""
    import fiftyone as fo

    expected, originals = set(), {}
    used = set()

    def pick(slice_name: str, min_labels: int, k: int):
        view = pool.select_group_slices(slice_name)
        view = view.match(F("ground_truth.detections").length() >= min_labels)
        candidates = [s for s in view if s.id not in used]
        chosen = [candidates[i] for i in rng.choice(len(candidates), size=k, replace=False)]
        for s in chosen:
            used.add(s.id)
            originals[s.id] = (slice_name, copy.deepcopy(s.ground_truth))
        return chosen

    def break_2d(rule, edit):
        for s in pick(str(rng.choice(["left", "right"])), 1, per_rule):
            det = s.ground_truth.detections[0]
            extra = edit(s, det)
            s.save()
            expected.add((s.id, (extra or det).id, rule))

    break_2d("unknown_class", lambda s, d: setattr(d, "label", "Van "))
    break_2d("box_out_of_bounds", lambda s, d: setattr(d, "bounding_box", [0.8, 0.2, 0.4, 0.1]))
    break_2d("box_non_positive_size", lambda s, d: setattr(d, "bounding_box", [0.2, 0.2, 0.0, 0.1]))
    break_2d("box_nan", lambda s, d: setattr(d, "bounding_box", [float("nan"), 0.2, 0.1, 0.1]))
    break_2d("unknown_attribute", lambda s, d: d.set_field("colour", "red"))

    def duplicate(s, d):
        dup = fo.Detection(
            label=d.label, bounding_box=list(d.bounding_box), annotator="simulated", batch=d.batch
        )
        s.ground_truth.detections.append(dup)
        return dup

    break_2d("duplicate_label", duplicate)
    for s in pick("pcd", 1, per_rule):
        s.ground_truth.detections[0].dimensions = [4.0, 0.0, 1.5]
        s.save()
        expected.add((s.id, s.ground_truth.detections[0].id, "cuboid_non_positive_dimensions"))
    for s in pick("pcd", 1, per_rule):
        s.ground_truth.detections[0].location = [float("nan"), 0.0, 1.0]
        s.save()
        expected.add((s.id, s.ground_truth.detections[0].id, "cuboid_nan"))
    for s in pick("pcd", 1, per_rule):
        flat = fo.Detection(
            label="car", bounding_box=[0.1, 0.1, 0.2, 0.2], annotator="simulated", batch="pool"
        )
        s.ground_truth.detections.append(flat)
        s.save()
        expected.add((s.id, flat.id, "wrong_label_type"))
    # Labels that arrive by other routes skip FiftyOne's field validation: an int batch name.
    chosen = pick("pcd", 1, per_rule)
    pool.select_group_slices("pcd").set_label_values(
        "ground_truth.detections.batch",
        [
            {"sample_id": s.id, "label_id": s.ground_truth.detections[0].id, "value": 7}
            for s in chosen
        ],
        validate=False,
    )
    expected |= {(s.id, s.ground_truth.detections[0].id, "attribute_wrong_type") for s in chosen}
    for s in pick(str(rng.choice(["left", "right"])), 1, per_rule):
        s.ground_truth = None  # skipped by the annotator
        s.save()
        expected.add((s.id, None, "empty_sample"))
    return expected, originals


def found_violations(dataset) -> set:
    found = set()
    for name in SLICES:
        for sid, records in zip(*dataset.select_group_slices(name).values(["id", "qa_violations"])):
            found |= {(sid, r.label_id, r.rule) for r in records or [] if r.field == "ground_truth"}
    return found


def run_gate(dataset, n_pool: int, per_rule: int, seed: int) -> dict:
    from annoloop.demo.annotation import annotate_batch
    from annoloop.demo.algorithms.annotator import CLEAN
    from annoloop.quality.gate import gate_label_field

    tag = "batch:pool-1"
    pool = pool_batch(dataset, n_pool, tag)
    annotate_batch(pool, "pool-1", profile=CLEAN, seed=seed)
    dataset.add_dynamic_sample_fields()
    dataset.set_label_schemas({"ground_truth": SCHEMA})
    # The annotator writes an empty list where a camera sees no object: an answer, not a skip.
    gate = dict(batch_tag=tag, allow_empty=True)
    clean = gate_label_field(pool, "ground_truth", **gate)

    expected, originals = inject(pool, per_rule, np.random.default_rng(seed))
    before = label_snapshot(dataset)
    t0 = time.perf_counter()
    result = gate_label_field(pool, "ground_truth", **gate)
    gate_s = time.perf_counter() - t0
    found = found_violations(dataset)
    unchanged = label_snapshot(dataset) == before

    for name in SLICES:
        restore = {sid: labels for sid, (s, labels) in originals.items() if s == name}
        dataset.select_group_slices(name).set_values("ground_truth", restore, key_field="id")
    fixed = gate_label_field(pool, "ground_truth", **gate)
    return {
        "clean": clean,
        "result": result,
        "expected": expected,
        "found": found,
        "unchanged": unchanged,
        "n_labels": len(before),
        "fixed": fixed,
        "gate_s": gate_s,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=240)
    parser.add_argument("--golden", type=int, default=48, help="golden scenes")
    parser.add_argument("--clean", type=int, default=3, help="clean batches before the drift")
    parser.add_argument("--pool", type=int, default=60, help="scenes in the gated batch")
    parser.add_argument("--per-rule", type=int, default=5, help="violations injected per rule")
    parser.add_argument("--seed", type=int, default=51)
    args = parser.parse_args(argv)

    from annoloop.demo.dataset import load_demo_dataset
    from annoloop.quality.frozen import create_splits
    from annoloop.quality.frozen_check import check_frozen

    t0 = time.perf_counter()
    dataset = load_demo_dataset(
        f"bench-drift-{uuid.uuid4().hex[:8]}",
        num_scenes=args.scenes,
        seed=args.seed,
        image_size=(192, 64),
    )
    try:
        splits = create_splits(dataset, test=0.1, golden=args.golden, seed=args.seed)
        log(f"demo + splits in {time.perf_counter() - t0:.1f} s")
        drift = run_drift(dataset, args.clean)
        gate = run_gate(dataset, args.pool, args.per_rule, args.seed)
        frozen_ok = check_frozen(dataset).ok
    finally:
        dataset.delete()

    golden_counts = splits["counts"]["golden"]
    print(f"\n## Golden-set drift detection on the demo ({args.scenes} scenes)\n")
    print(
        f"Golden set: {golden_counts['scenes']} scenes ({golden_counts['samples']} samples on "
        f"{len(SLICES)} slices); IoU 0.5; baseline = first batch; default drift rules.\n"
    )
    print(
        "| batch | annotator | recall left / right / pcd | mean IoU pcd "
        "| alarms raised (rule, class, slice) | verdict |"
    )
    print("|---|---|---|---:|---|---|")
    for row in drift:
        o = row["overall"]
        recall = " / ".join(
            f"{o[s]['recall']:.2f}" if o.get(s) and o[s]["recall"] is not None else "-"
            for s in SLICES
        )
        iou = o["pcd"]["mean_iou"]
        alarms = "; ".join(
            f"{a['rule']}({a['class'] or 'all'}, {a['slice']})" for a in row["alarms"]
        ) or "none"
        if row["kind"] == "clean":
            verdict = "ok (no alarm)" if not row["alarms"] else "FALSE ALARM"
        else:
            verdict = "caught" if row["caught"] else "MISSED"
        print(f"| {row['batch']} | {row['kind']} | {recall} | {iou:.3f} | {alarms} | {verdict} |")
    drifted = [r for r in drift if r["kind"] != "clean"]
    clean = [r for r in drift if r["kind"] == "clean"]
    print(
        f"\nDrifted batches caught: **{sum(r['caught'] for r in drifted)}/{len(drifted)}**; "
        f"clean batches flagged: **{sum(bool(r['alarms']) for r in clean)}/{len(clean)}**."
    )

    expected, found = gate["expected"], gate["found"]
    n_batch = gate["result"]["total"]["n_labels"]
    print(f"\n## Schema gate on an annotated batch ({args.pool} scenes, {n_batch} labels)\n")
    print(
        f"Clean batch before injection: {gate['clean']['total']['n_violations']} violations. "
        f"Gate after injection: {gate['gate_s']:.2f} s.\n"
    )
    print("| rule | injected | caught | flagged on clean labels |")
    print("|---|---:|---:|---:|")
    rules = sorted({r for _, _, r in expected} | {r for _, _, r in found})
    for rule in rules:
        inj = {v for v in expected if v[2] == rule}
        false = {v for v in found if v[2] == rule} - expected
        print(f"| {rule} | {len(inj)} | {len(inj & found)} | {len(false)} |")
    total = (len(expected), len(expected & found), len(found - expected))
    print("| **total** | " + " | ".join(f"**{v}**" for v in total) + " |")
    print(
        f"\nCatch rate {len(expected & found) / len(expected):.0%}; "
        "labels deleted or changed by the gate "
        f"(all {gate['n_labels']} labels of the field compared, tags aside): "
        f"{'none' if gate['unchanged'] else 'SOME'}; after fixing the labels a re-run released "
        f"{gate['fixed']['released']} samples and left {gate['fixed']['quarantined']} quarantined; "
        f"frozen splits unchanged: {frozen_ok}."
    )


if __name__ == "__main__":
    main()
