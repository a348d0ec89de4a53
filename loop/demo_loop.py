"""Run the closed loop on the demo dataset through annoloop's own operators.

Every step is a ``foo.execute_operator`` call with the parameters the App's forms send, so the
main job exercises exactly what users click. Two strategies spend the same label budget on
copies of one prepared dataset (same frozen test set, golden set and embeddings):

* ``annoloop``: the planner's default schedule (cold-start coverage, then toward 30/70
  coverage/targeting of the previous round's test-set failures);
* ``random``: uniformly random scenes (the planner's ``random`` coverage method).

The detector starts from the model YAML (random weights: no checkpoint can be downloaded
here) and each round fine-tunes the previous round's weights on all labels so far.

Each round: plan a batch → the simulated annotator labels it (and re-labels the golden set) →
schema gate → golden-set check → train YOLO on the gate-passing labels → predict on the frozen
test set → evaluate (the round goes in the ledger).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

PLUGIN = "@annoloop/annoloop"
STRATEGIES = ("annoloop", "random")


@dataclass(frozen=True)
class LoopConfig:
    """Sizes of a demo loop run. The defaults finish in minutes on a 2-core CPU."""

    name: str = "annoloop-demo"
    scenes: int = 200
    rounds: int = 3
    budget: int = 30
    epochs: int = 15
    imgsz: int = 256
    train_batch: int = 8
    seed: int = 51
    test_fraction: float = 0.2
    golden_scenes: int = 10
    zcore_samples: int = 100_000


@dataclass
class StrategyRun:
    """What one strategy produced: its dataset, per-round results and stage timings."""

    strategy: str
    dataset_name: str
    rounds: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def run_operator(operator: str, dataset=None, view=None, **params) -> dict:
    """Execute ``@annoloop/annoloop/<operator>`` immediately through FiftyOne's executor."""
    import fiftyone.operators as foo

    ctx = {"params": params}
    if dataset is not None:
        ctx["dataset"] = dataset
    if view is not None:
        ctx["view"] = view
    return foo.execute_operator(f"{PLUGIN}/{operator}", ctx=ctx).result or {}


class _Timer:
    def __init__(self, seconds: dict[str, float], stage: str, log):
        self.seconds, self.stage, self.log = seconds, stage, log

    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        elapsed = time.perf_counter() - self.started
        self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + elapsed
        self.log(f"    {self.stage:<22} {elapsed:6.1f}s")


def prepare(config: LoopConfig, log=print) -> tuple[object, dict[str, float]]:
    """Demo dataset + frozen splits + embeddings + ZCore scores, shared by every strategy."""
    import fiftyone as fo

    seconds: dict[str, float] = {}
    log(f"Preparing '{config.name}' ({config.scenes} scenes)")
    with _Timer(seconds, "build demo dataset", log):
        run_operator(
            "load_demo_dataset",
            name=config.name,
            num_scenes=config.scenes,
            seed=config.seed,
            overwrite=True,
        )
    dataset = fo.load_dataset(config.name)
    with _Timer(seconds, "frozen splits", log):
        run_operator(
            "create_splits",
            dataset,
            test=config.test_fraction,
            golden=config.golden_scenes,
            seed=config.seed,
            source_field="oracle",
        )
    with _Timer(seconds, "embeddings", log):
        run_operator("compute_embeddings", dataset, model_kind="baseline", patches=False)
    with _Timer(seconds, "zcore", log):
        run_operator("compute_zcore", dataset, n_sample=config.zcore_samples, seed=config.seed)
    return dataset, seconds


def run_strategy(dataset, strategy: str, config: LoopConfig, log=print) -> StrategyRun:
    """All rounds of one strategy on ``dataset`` (modified in place)."""
    from ..training.constants import GOLDEN_SPLIT_TAG

    run = StrategyRun(strategy, dataset.name)
    weights = None  # each round fine-tunes the previous round's model
    for round_index in range(config.rounds):
        log(f"  [{strategy}] round {round_index + 1}/{config.rounds}")
        plan_params = dict(
            budget=config.budget,
            embeddings_field="group_embedding",
            seed=config.seed + round_index,
            round_index=round_index,
        )
        if strategy == "random":
            plan_params.update(coverage_method="random", coverage_fraction=1.0)
        with _Timer(run.seconds, "plan batch", log):
            plan = run_operator("plan_batch", dataset, **plan_params)
        batch = plan["batch"]  # also the tag on every slice of the picked scenes
        with _Timer(run.seconds, "annotate (simulated)", log):
            # The golden set is re-annotated with every batch so annotator drift is measured.
            to_label = dataset.match_tags([batch, GOLDEN_SPLIT_TAG])
            run_operator("simulate_annotation", dataset, view=to_label, batch=batch, seed=round_index)
        with _Timer(run.seconds, "schema gate", log):
            gate = run_operator(
                "validate_labels",
                dataset,
                label_field="ground_truth",
                batch_tag=batch,
                allow_empty=True,  # the annotator writes an empty list where a camera sees nothing
            )
        with _Timer(run.seconds, "golden check", log):
            golden = run_operator("check_golden", dataset, candidate_field="ground_truth")
        run_name = f"{strategy}_round{round_index + 1}"
        with _Timer(run.seconds, "train", log):
            trained = run_operator(
                "train_detector",
                dataset,
                run_name=run_name,
                slice="left",
                epochs=config.epochs,
                imgsz=config.imgsz,
                batch=config.train_batch,
                warmup_epochs=1.0,
                checkpoint=weights,
                seed=config.seed,
                overwrite=True,
            )
        # Continue from the last epoch: `best.pt` can be an early epoch while val mAP is ~0.
        last = os.path.join(os.path.dirname(trained["weights"]), "last.pt")
        weights = last if os.path.isfile(last) else trained["weights"]
        with _Timer(run.seconds, "predict test set", log):
            run_operator("apply_detector", dataset, run_name=run_name, conf=0.05)
        with _Timer(run.seconds, "evaluate", log):
            evaluation = run_operator(
                "evaluate_model", dataset, run_name=run_name, gt_field="oracle", batch_name=batch
            )
        run.rounds.append(
            {
                "round": round_index + 1,
                "batch": batch,
                "n_coverage": plan.get("n_coverage"),
                "n_targeting": plan.get("n_targeting"),
                "fallback_reason": plan.get("fallback_reason"),
                "quarantined": gate.get("quarantined", 0),
                "alarms": golden.get("new_alarms", []),
                "golden": golden.get("per_batch", {}).get(batch, {}),
                "train_images": trained.get("num_train", 0) + trained.get("num_val", 0),
                "map": evaluation["map"],
                "per_class_recall": evaluation.get("per_class_recall", {}),
                "night_recall": _night_recall(dataset),
            }
        )
        log(f"    -> mAP {evaluation['map']:.4f} with {run.rounds[-1]['train_images']} training images")
    return run


def _night_recall(dataset) -> float | None:
    """Recall on night scenes of the test set, from the per-sample tp/fn counts of ``eval``."""
    from fiftyone import ViewField as F

    from ..training.views import test_set

    night = test_set(dataset, "left").match(F("time_of_day") == "night")
    tp, fn = sum(night.values("eval_tp")), sum(night.values("eval_fn"))
    return tp / (tp + fn) if tp + fn else None


def run_demo_loop(config: LoopConfig, log=print) -> dict:
    """Prepare the demo, then run every strategy on its own copy; return everything measured."""
    import fiftyone as fo

    from ..training.constants import BASELINE_LEDGER_INFO_KEY, LEDGER_INFO_KEY

    started = time.perf_counter()
    dataset, prep_seconds = prepare(config, log)
    copies = {"annoloop": dataset}
    random_name = f"{config.name}-random"
    if fo.dataset_exists(random_name):
        fo.delete_dataset(random_name)
    copies["random"] = dataset.clone(random_name, persistent=True)
    runs = {}
    for strategy in STRATEGIES:
        log(f"Strategy '{strategy}' on '{copies[strategy].name}'")
        runs[strategy] = run_strategy(copies[strategy], strategy, config, log)
    # The Annotation loop panel draws the random strategy's ledger as the baseline.
    copies["random"].reload()
    dataset.reload()
    dataset.info[BASELINE_LEDGER_INFO_KEY] = copies["random"].info.get(LEDGER_INFO_KEY, [])
    dataset.save()
    return {
        "config": asdict(config),
        "prepare_seconds": prep_seconds,
        "strategies": {s: asdict(r) for s, r in runs.items()},
        "total_seconds": time.perf_counter() - started,
    }
