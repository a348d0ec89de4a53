"""Run the closed loop on the demo dataset through annoloop's own operators.

Every step is a ``foo.execute_operator`` call with the parameters the App's forms send, so the
main job exercises exactly what users click. Strategies spend the same label budget on
copies of one prepared dataset (same frozen test, mining and golden sets, same embeddings):

* ``annoloop``: the planner's default schedule — cold-start coverage, then toward 30/70
  coverage / targeting of the previous model's failures on the frozen **mining** split;
* ``random``: uniformly random scenes (the planner's ``random`` coverage method);
* ``coverage``: k-center coverage only;
* ``targeting``: mining-split failure targeting only (after the cold start);
* ``uncertainty``: the schedule, targeting the pool scenes the model is least sure about
  (its predictions on the unlabeled pool; no labels needed).

The **test** split only reports: each round predicts and evaluates it for the ledger, and
nothing the planner reads is computed on it.

The detector is ``yolov8n-lite0`` (YOLOv8n's neck and head on EfficientNet-Lite0, whose
ImageNet weights install offline with a pip package) with its backbone frozen: the first
round trains neck and head from the ImageNet features, and each later round fine-tunes the
previous round's weights on all labels so far, for a fixed number of optimizer steps (rounds are sized by steps, not epochs, so a small round
still trains), at the images' native 384x128 with rectangular batches so the demo's 8-15 px
objects keep their pixels.

Each round: plan a batch -> the simulated annotator labels it (and re-labels the golden set)
-> schema gate -> golden-set check -> train YOLO on the gate-passing labels -> predict and
evaluate the frozen test set (the ledger) -> predict what the next plan needs (the mining set
and its evaluation, or the pool).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

PLUGIN = "@annoloop/annoloop"
#: Strategy -> ``plan_batch`` parameters (``None`` values follow the planner's schedule).
STRATEGY_PLANS: dict[str, dict] = {
    "annoloop": {"targeting_source": "failures"},
    "random": {"coverage_method": "random", "coverage_fraction": 1.0},
    "coverage": {"coverage_method": "kcenter", "coverage_fraction": 1.0},
    "targeting": {"targeting_source": "failures", "coverage_fraction": 0.0},
    "uncertainty": {"targeting_source": "uncertainty"},
}
#: What the main job compares; the loop benchmark runs every strategy.
DEFAULT_STRATEGIES = ("annoloop", "random")

Log = Callable[[str], None]


@dataclass(frozen=True)
class LoopConfig:
    """Sizes of a demo loop run. The defaults fit the main job's 15 minutes on a 2-core CPU
    (measured: README)."""

    name: str = "annoloop-demo"
    scenes: int = 300
    night_fraction: float = 0.3
    rounds: int = 3
    budget: int = 30
    model: str = "yolov8n-lite0"
    freeze: int = 1
    steps: int = 150
    imgsz: int = 384
    train_batch: int = 8
    seed: int = 51
    test_fraction: float = 0.25
    mining_fraction: float = 0.15
    golden_scenes: int = 10
    zcore_samples: int = 100_000
    #: Coverage method of the strategies whose plans do not fix one (annoloop, targeting's
    #: cold start, uncertainty); plan_batch's default.
    coverage_method: str = "typical"
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    log_file: str | None = None

    def __post_init__(self) -> None:
        from ..selection.algorithms.planner import COVERAGE_METHODS

        if self.coverage_method not in COVERAGE_METHODS:
            raise ValueError(
                f"coverage_method must be one of {COVERAGE_METHODS}; got {self.coverage_method!r}"
            )
        unknown = [s for s in self.strategies if s not in STRATEGY_PLANS]
        if unknown or not self.strategies:
            raise ValueError(
                f"strategies must be a non-empty subset of {sorted(STRATEGY_PLANS)}; got "
                f"{list(self.strategies)}"
            )


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line flags of a :class:`LoopConfig` (shared by the main job and the loop
    benchmark), defaulting to its fields."""
    defaults = LoopConfig()
    parser.add_argument("--scenes", type=int, default=defaults.scenes, help="number of scenes (groups)")
    parser.add_argument(
        "--night-fraction", type=float, default=defaults.night_fraction, help="share of night scenes"
    )
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="labeling rounds per strategy")
    parser.add_argument("--budget", type=int, default=defaults.budget, help="scenes labeled per round")
    parser.add_argument("--model", default=defaults.model, help="detector (train_detector's model choices)")
    parser.add_argument(
        "--freeze", type=int, default=defaults.freeze, help="detector layers kept frozen (1: Lite0's backbone)"
    )
    parser.add_argument("--steps", type=int, default=defaults.steps, help="YOLO optimizer steps per round")
    parser.add_argument("--imgsz", type=int, default=defaults.imgsz, help="YOLO image size")
    parser.add_argument(
        "--coverage-method",
        default=defaults.coverage_method,
        help="plan_batch coverage method of annoloop, targeting's cold start and uncertainty",
    )


def config_from_arguments(args: argparse.Namespace, **fields) -> LoopConfig:
    """A :class:`LoopConfig` from the flags of :func:`add_config_arguments` and ``fields``."""
    return LoopConfig(
        scenes=args.scenes,
        night_fraction=args.night_fraction,
        rounds=args.rounds,
        budget=args.budget,
        model=args.model,
        freeze=args.freeze,
        steps=args.steps,
        imgsz=args.imgsz,
        coverage_method=args.coverage_method,
        **fields,
    )


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


@contextlib.contextmanager
def _output_to(log_file: str | None) -> Iterator[None]:
    """Send everything written to stdout/stderr (Ultralytics' training log, FiftyOne's
    progress bars, C-level output too) to ``log_file``; a no-op when it is None."""
    if log_file is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@contextlib.contextmanager
def _stage(seconds: dict[str, float], stage: str, *, log: Log, log_file: str | None) -> Iterator[None]:
    """Time one stage (its output to ``log_file``), add it to ``seconds``, log one line."""
    started = time.perf_counter()
    try:
        with _output_to(log_file):
            yield
    finally:
        elapsed = time.perf_counter() - started
        seconds[stage] = seconds.get(stage, 0.0) + elapsed
        log(f"    {stage:<24} {elapsed:6.1f}s")


def prepare(config: LoopConfig, log: Log = print) -> tuple[object, dict[str, float]]:
    """Demo dataset + frozen splits + embeddings + ZCore scores, shared by every strategy."""
    import fiftyone as fo

    seconds: dict[str, float] = {}
    log(f"Preparing '{config.name}' ({config.scenes} scenes, {config.night_fraction:.0%} night)")
    stage = functools.partial(_stage, seconds, log=log, log_file=config.log_file)
    with stage("build demo dataset"):
        run_operator(
            "load_demo_dataset",
            name=config.name,
            num_scenes=config.scenes,
            night_fraction=config.night_fraction,
            seed=config.seed,
            overwrite=True,
        )
    dataset = fo.load_dataset(config.name)
    with stage("frozen splits"):
        run_operator(
            "create_splits",
            dataset,
            test=config.test_fraction,
            mining=config.mining_fraction,
            golden=config.golden_scenes,
            seed=config.seed,
            source_field="oracle",
        )
    with stage("embeddings"):
        run_operator("compute_embeddings", dataset, model_kind="baseline", patches=False)
    with stage("zcore"):
        run_operator("compute_zcore", dataset, n_sample=config.zcore_samples, seed=config.seed)
    return dataset, seconds


def run_strategy(dataset, strategy: str, config: LoopConfig, log: Log = print) -> StrategyRun:
    """All rounds of one strategy on ``dataset`` (modified in place)."""
    from ..core.names import GOLDEN_SPLIT_TAG, MINING_EVAL_KEY

    run = StrategyRun(strategy, dataset.name)
    plan_defaults = STRATEGY_PLANS[strategy]
    weights = None  # each round fine-tunes the previous round's model
    started = time.perf_counter()
    for round_index in range(config.rounds):
        log(f"  [{strategy}] round {round_index + 1}/{config.rounds}")
        stage = functools.partial(_stage, run.seconds, log=log, log_file=config.log_file)
        plan_params = dict(
            budget=config.budget,
            embeddings_field="group_embedding",
            seed=config.seed + round_index,
            round_index=round_index,
            coverage_method=config.coverage_method,
        )
        plan_params.update(plan_defaults)  # random and coverage fix their own method
        if round_index == 0:
            plan_params.pop("targeting_source", None)  # cold start: no model to target yet
        elif plan_defaults.get("targeting_source") == "failures":
            plan_params["eval_key"] = MINING_EVAL_KEY
        with stage("plan batch"):
            plan = run_operator("plan_batch", dataset, **plan_params)
        batch = plan["batch"]  # also the tag on every slice of the picked scenes
        with stage("annotate (simulated)"):
            # The golden set is re-annotated with every batch so annotator drift is measured.
            to_label = dataset.match_tags([batch, GOLDEN_SPLIT_TAG])
            run_operator("simulate_annotation", dataset, view=to_label, batch=batch, seed=round_index)
        with stage("schema gate"):
            gate = run_operator(
                "validate_labels",
                dataset,
                label_field="ground_truth",
                batch_tag=batch,
                allow_empty=True,  # the annotator writes an empty list where a camera sees nothing
            )
        with stage("golden check"):
            golden = run_operator("check_golden", dataset, candidate_field="ground_truth")
        run_name = f"{strategy}_round{round_index + 1}"
        with stage("train"):
            trained = run_operator(
                "train_detector",
                dataset,
                run_name=run_name,
                slice="left",
                model=config.model,
                freeze=config.freeze,
                steps=config.steps,
                imgsz=config.imgsz,
                rect=True,
                batch=config.train_batch,
                val_fraction=0.1,
                val_each_epoch=False,
                warmup_epochs=1.0,
                checkpoint=weights,
                seed=config.seed,
                overwrite=True,
            )
        # Continue from the last epoch: `best.pt` can be an early epoch while val mAP is ~0.
        last = os.path.join(os.path.dirname(trained["weights"]), "last.pt")
        weights = last if os.path.isfile(last) else trained["weights"]
        with stage("predict + evaluate test"):
            run_operator("apply_detector", dataset, run_name=run_name, target="test", conf=0.05)
            evaluation = run_operator(
                "evaluate_model", dataset, run_name=run_name, gt_field="oracle", batch_name=batch
            )
        if round_index + 1 < config.rounds:
            with stage("predict for next plan"):
                _predict_for_next_plan(dataset, run_name, plan_defaults)
        run.rounds.append(
            {
                "round": round_index + 1,
                "batch": batch,
                "n_coverage": plan.get("n_coverage"),
                "n_targeting": plan.get("n_targeting"),
                "eval_key": plan.get("eval_key"),
                "fallback_reason": plan.get("fallback_reason"),
                "quarantined": gate.get("quarantined", 0),
                "alarms": golden.get("new_alarms", []),
                "golden": golden.get("per_batch", {}).get(batch, {}),
                "labels": config.budget * (round_index + 1),
                "train_images": trained.get("num_train", 0) + trained.get("num_val", 0),
                "epochs": trained.get("epochs"),
                "map": evaluation["map"],
                "per_class_recall": evaluation.get("per_class_recall", {}),
                "night_recall": night_recall(dataset),
                "night_picks": night_picks(dataset, batch),
                "state": evaluation.get("plateau", {}).get("state"),
            }
        )
        r = run.rounds[-1]
        log(
            f"    -> test mAP {r['map']:.4f}, night recall {_fmt(r['night_recall'])}, "
            f"{r['train_images']} training images ({time.perf_counter() - started:.0f}s so far)"
        )
    return run


def _predict_for_next_plan(dataset, run_name: str, plan_defaults: dict) -> None:
    """What the strategy's next plan reads: the mining split's failures or the pool's
    predictions. Never the test split."""
    source = plan_defaults.get("targeting_source")
    if source == "failures":
        run_operator("apply_detector", dataset, run_name=run_name, target="mining", conf=0.05)
        run_operator(
            "evaluate_model", dataset, run_name=run_name, gt_field="oracle", split="mining"
        )
    elif source == "uncertainty":
        run_operator("apply_detector", dataset, run_name=run_name, target="pool", conf=0.05)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def night_recall(dataset) -> float | None:
    """Recall on night scenes of the test set, from the per-sample tp/fn counts of ``eval``."""
    from fiftyone import ViewField as F

    from ..core.views import test_set

    night = test_set(dataset, "left").match(F("time_of_day") == "night")
    tp, fn = sum(night.values("eval_tp")), sum(night.values("eval_fn"))
    return tp / (tp + fn) if tp + fn else None


def night_picks(dataset, batch: str) -> int:
    """How many of the scenes picked for ``batch`` are night scenes (the rare slice)."""
    from fiftyone import ViewField as F

    return dataset.match_tags(batch).match(F("time_of_day") == "night").count()


def run_demo_loop(config: LoopConfig, log: Log = print) -> dict:
    """Prepare the demo, then run every strategy on its own copy; return everything measured."""
    import fiftyone as fo

    from ..core.names import BASELINE_LEDGER_INFO_KEY, LEDGER_INFO_KEY

    started = time.perf_counter()
    dataset, prep_seconds = prepare(config, log)
    copies = {}
    for strategy in config.strategies:
        name = config.name if strategy == config.strategies[0] else f"{config.name}-{strategy}"
        if name != config.name and fo.dataset_exists(name):
            fo.delete_dataset(name)
        copies[strategy] = dataset if name == config.name else dataset.clone(name, persistent=True)
    runs = {}
    for strategy in config.strategies:
        log(f"Strategy '{strategy}' on '{copies[strategy].name}'")
        runs[strategy] = run_strategy(copies[strategy], strategy, config, log)
    if "random" in copies and copies["random"] is not dataset:
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
