"""Streaming batches to the trainer (Ray generation actors, a bounded queue) and scoring models in parallel."""
from cluster.batch import Batch, BatchSource
from cluster.config import ClusterConfig, EvaluationConfig

__all__ = ["Batch", "BatchSource", "ClusterConfig", "EvaluationConfig"]
