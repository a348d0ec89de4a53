"""Names the training code shares with the schema gate, the frozen splits and the planner.

They live in one place so that the tag a gate writes and the tag an export refuses can never
drift apart.
"""

#: Sample or label tag the schema gate puts on labels that violate the label schema.
QUARANTINE_TAG = "qa:quarantine"
#: Sample tag of the frozen test set: evaluated on, never trained on, never selected.
TEST_SPLIT_TAG = "split:test"
#: Sample tag of the frozen mining (validation) set: labeled, never trained on or selected;
#: the only evaluation the planner may mine failures from, so selection never sees the test set.
MINING_SPLIT_TAG = "split:mining"
#: Sample tag of the frozen golden set used to score annotators; never trained on.
GOLDEN_SPLIT_TAG = "split:golden"
#: Every tag whose samples (and their whole group) a training export refuses.
FROZEN_SPLIT_TAGS = (TEST_SPLIT_TAG, MINING_SPLIT_TAG, GOLDEN_SPLIT_TAG)

#: Default label fields and evaluation key of the loop.
DEFAULT_GT_FIELD = "ground_truth"
DEFAULT_PRED_FIELD = "predictions"
DEFAULT_EVAL_KEY = "eval"
#: Evaluation key of the mining split, the planner's source of failures.
MINING_EVAL_KEY = "eval_mining"

#: ``dataset.info`` key holding the ledger of rounds (a JSON list, oldest round first).
LEDGER_INFO_KEY = "annoloop_ledger"
#: ``dataset.info`` key of a random-selection baseline's ledger (same form), shown beside it.
BASELINE_LEDGER_INFO_KEY = "annoloop_ledger_random"
#: ``dataset.info`` key of the ledgers a ``create_splits(reset=True)`` archived (a JSON list of
#: ``{archived_at, frozen_created_at, rounds, baseline_rounds}``, oldest first).
LEDGER_ARCHIVE_INFO_KEY = "annoloop_ledger_archive"
#: FiftyOne custom-run ``method`` and key prefix of training run records.
TRAIN_RUN_METHOD = "annoloop.train"
TRAIN_RUN_KEY_PREFIX = "annoloop_train_"

#: Tags of planned batches start with this (``batch:v1``, ``batch:v2``, ...); golden QA
#: splits its history by the same tags.
BATCH_TAG_PREFIX = "batch:"
#: Tags naming the share a pick came from: ``source:coverage`` or ``source:targeting``.
SOURCE_TAG_PREFIX = "source:"
#: Per-sample coverage scores that ``compute_zcore`` writes and ``coverage_method="zcore"`` reads.
ZCORE_FIELD = "zcore"

#: Tags of newly arrived raw batches start with this (``incoming:week-2``); the demo's
#: ``add_demo_scenes`` writes them and the incoming-drift check reads them.
INCOMING_TAG_PREFIX = "incoming:"
#: Sample tag of the units an incoming-drift check found novel.
NOVEL_TAG = "drift:novel"
