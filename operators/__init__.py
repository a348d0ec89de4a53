"""annoloop's FiftyOne operators: thin adapters from a form or SDK call to the core."""

from .demo import LoadDemoDataset, SimulateAnnotation
from .embeddings import ComputeEmbeddings, ComputeVisualization
from .quality import CheckGolden, CreateSplits, ValidateLabels
from .training import ApplyDetector, EvaluateModel, TrainDetector

OPERATORS = (LoadDemoDataset, SimulateAnnotation, TrainDetector, ApplyDetector, EvaluateModel, ComputeEmbeddings, ComputeVisualization, CreateSplits, ValidateLabels, CheckGolden)
