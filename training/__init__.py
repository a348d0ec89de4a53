"""Training, prediction, evaluation and autolabel model runners."""
