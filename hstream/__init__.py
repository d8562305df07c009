"""hstream: Hadoop Streaming jobs on a manager and workers, without Hadoop."""

__version__ = "0.1.0"
