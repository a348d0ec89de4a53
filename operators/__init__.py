"""annoloop's FiftyOne operators: thin adapters from a form or SDK call to the core."""

from .annotation import LoadBatch, SendBatch
from .autolabel import Autolabel, ReviewAutolabels
from .demo import LoadDemoDataset, SimulateAnnotation
from .embeddings import ComputeEmbeddings, ComputeVisualization
from .planning import PlanBatch
from .quality import (
    CheckGolden,
    CheckIncomingDrift,
    CheckSensorLinks,
    CreateSplits,
    ValidateLabels,
)
from .scene_attributes import CategorizeScenes
from .training import ApplyDetector, EvaluateModel, TrainDetector
from .zcore import ComputeZCore, ComputeZCoreShard

# In the order of the loop: demo, curate, split, plan, annotate, gate, golden, train, evaluate,
# autolabel.
OPERATORS = (
    LoadDemoDataset,
    SimulateAnnotation,
    ComputeEmbeddings,
    ComputeZCore,
    ComputeZCoreShard,
    ComputeVisualization,
    CreateSplits,
    PlanBatch,
    SendBatch,
    LoadBatch,
    ValidateLabels,
    CheckSensorLinks,
    CheckGolden,
    CheckIncomingDrift,
    CategorizeScenes,
    TrainDetector,
    ApplyDetector,
    EvaluateModel,
    Autolabel,
    ReviewAutolabels,
)
