"""Distributed MXNet image inference as a Spark RDD job.

The driver (:mod:`batch_inference.job`) spreads a sharded key manifest over ``N`` partitions; each
partition (:mod:`batch_inference.partition`) downloads and decodes its images with a bounded
prefetch, runs them through the model in fixed-size batches and writes one JSON Lines part and one
metrics part to S3. The formats are specified in ``docs/CONTRACTS.md``.

Importing this package is cheap: no Spark, MXNet or NumPy at module level here.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
