"""annoloop's App panels (Python panels registered by the plugin).

* :class:`.loop_panel.AnnotationLoopPanel` (``annotation_loop``): the home of the loop:
  ledger, plateau, current batch, golden-set drift, quarantine, and a button per step.
* :class:`.planner_panel.BatchPlannerPanel` (``batch_planner``): budget and split
  controls, a dry-run preview, then "create batch".

:mod:`.state` reads what they show from the dataset into plain dicts.
"""

from .loop_panel import AnnotationLoopPanel
from .planner_panel import BatchPlannerPanel

PANELS = (AnnotationLoopPanel, BatchPlannerPanel)
