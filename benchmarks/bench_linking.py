"""Link errors injected into demo scenes by the simulated annotator, and what the linking
kernel (:func:`annoloop.quality.algorithms.linking.link_labels`) catches, per rule.

Each seed renders ``--scenes`` demo scenes, labels them once with a perfect annotator (the
baseline: every alarm is false) and once with link errors at ``--rate`` per kind on the
clear objects (:func:`annoloop.demo.algorithms.annotator.clear_objects`), and compares the
violations with what the annotator did.

Usage (``annoloop`` importable, e.g. after ``source scripts/env.sh``)::

    python benchmarks/bench_linking.py --scenes 200 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from annoloop.core.algorithms import pinhole
from annoloop.demo.algorithms import annotator as an
from annoloop.demo.algorithms import camera as cam
from annoloop.demo.algorithms import render
from annoloop.demo.algorithms import scenes as sc
from annoloop.quality.algorithms.linking import LINK_RULES, link_labels

SIZE = (384, 128)


def _eligible(scene, cameras, labels) -> np.ndarray:
    """Objects clear in every camera that labels them."""
    n = len(scene.labels)
    corners = pinhole.cuboid_corners(scene.location, scene.dimensions, scene.rotation)
    clear, seen = np.ones(n, bool), np.zeros(n, bool)
    wh = np.array(SIZE * 2, float)
    for camera, lab in zip(cameras, labels):
        px, _, _ = pinhole.project_corners(corners, camera.intrinsics, camera.extrinsics)
        c = np.clip(px, 0, wh)
        ok = np.zeros(n, bool)
        ok[lab.rows[~lab.occluded & ~lab.truncated]] = True
        here = an.clear_objects(np.hstack([c[:, :2], c[:, 2:] - c[:, :2]]) / wh, np.zeros(n, int), ok)
        clear[lab.rows] &= here[lab.rows]
        seen[lab.rows] = True
    return clear & seen


def _expected(cub, box, rows) -> set:
    """The violations the annotator's link errors must raise in one camera image."""
    cub_label = dict(zip(cub.source_row.tolist(), cub.labels))
    box_label = dict(zip(rows[box.source_row].tolist(), box.labels))
    out = set()
    for k, obj in enumerate(rows.tolist()):
        c_err, b_err = cub.link_error[obj], box.link_error[k]
        if c_err == "dropped" and b_err != "dropped":
            out.add(("link_missing_cuboid", obj))
        elif b_err == "dropped" and c_err != "dropped":
            out.add(("link_missing_box", obj))
        elif c_err != "dropped" and b_err != "dropped":
            if b_err == "shifted":
                out.add(("link_misaligned", obj))
            if cub_label[obj] != box_label[obj]:
                out.add(("link_class_mismatch", obj))
    return out


def simulate(num_scenes: int, seed: int, rate: float) -> dict:
    """``{rule: [injected, caught, false alarms]}`` plus ``clean_alarms`` and ``seconds``
    (time in the kernel) over ``num_scenes`` demo scenes."""
    cameras = cam.stereo_rig(SIZE)
    profile = an.AnnotatorProfile(
        link_drop_box_rate=rate, link_drop_cuboid_rate=rate, link_relabel_rate=rate,
        link_shift_rate=rate,
    )
    rng = np.random.default_rng(seed)
    table = {r: [0, 0, 0] for r in LINK_RULES}
    clean_alarms, seconds = 0, 0.0
    for scene in sc.sample_scenes(num_scenes, seed):
        parts = sc.expand_parts(scene)
        labels = [render.render_camera(scene, c, parts)[1] for c in cameras]
        n = len(scene.labels)
        eligible = _eligible(scene, cameras, labels)
        cub = an.annotate_cuboids(
            scene.labels, scene.location, scene.dimensions, scene.rotation,
            np.zeros(n, int), 1, profile, rng, link_eligible=eligible,
        )
        clean = np.hstack([scene.location, scene.dimensions, scene.rotation])
        geometry = np.hstack([cub.location, cub.dimensions, cub.rotation])
        for camera, lab in zip(cameras, labels):
            box = an.annotate_boxes(
                [scene.labels[r] for r in lab.rows], lab.boxes, np.zeros(len(lab.rows), int),
                1, profile, rng, link_eligible=eligible[lab.rows],
            )
            calib = (camera.intrinsics[None], camera.extrinsics[None], np.array([SIZE]))
            start = time.perf_counter()
            base = link_labels(np.zeros(n, int), scene.labels, clean, np.zeros(len(lab.rows), int),
                               [scene.labels[r] for r in lab.rows], lab.boxes, *calib)
            report = link_labels(np.zeros(len(cub.labels), int), cub.labels, geometry,
                                 np.zeros(len(box.labels), int), box.labels, box.boxes, *calib)
            seconds += time.perf_counter() - start
            clean_alarms += len(base.rule)
            expected = _expected(cub, box, lab.rows)
            got = {
                (r, int(lab.rows[box.source_row][b]) if b >= 0 else int(cub.source_row[c]))
                for r, c, b in zip(report.rule, report.cuboid_row, report.box_row)
            }
            for r in LINK_RULES:
                e, g = {x for x in expected if x[0] == r}, {x for x in got if x[0] == r}
                table[r][0] += len(e)
                table[r][1] += len(e & g)
                table[r][2] += len(g - e)
    return {**table, "clean_alarms": clean_alarms, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rate", type=float, default=0.1)
    args = parser.parse_args()
    print("| seed | rule | injected | caught | false alarms | clean-label alarms (baseline) | kernel s |")
    print("|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        out = simulate(args.scenes, seed, args.rate)
        for r in LINK_RULES:
            print(f"| {seed} | {r} | {out[r][0]} | {out[r][1]} | {out[r][2]} | "
                  f"{out['clean_alarms']} | {out['seconds']:.2f} |")


if __name__ == "__main__":
    main()
