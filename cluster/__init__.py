"""Moving batches to the trainer (Ray generation actors, a bounded queue) and hosting the evaluator actors."""
from cluster.batch import Batch, BatchSource
from cluster.config import ClusterConfig

__all__ = ["Batch", "BatchSource", "ClusterConfig"]
