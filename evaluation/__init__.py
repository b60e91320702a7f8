"""Test sets by name, metrics and scoring: one home for every evaluation path (evaluator actors,
the in-process evaluator and ``python -m inference.evaluate``)."""
