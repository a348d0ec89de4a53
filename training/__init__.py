"""Training: YOLO export and fine-tuning, prediction, evaluation, the ledger, autolabel runs."""
