"""The benchmarks' shared setting: the job's layout under ``local[2]``, the simulated S3 latency
and the buckets (:mod:`bench.run_all` and the benchmarks it runs read them from here)."""

from __future__ import annotations

MASTER = "local[2]"
WORKERS, TASK_THREADS, BATCH_SIZE = 2, 1, 64  # the job's layout under local[2]
LATENCY_SECONDS = 0.020
HIGH_LATENCY_SECONDS = 0.100  # benchmark 3b: a slow S3 request (cold objects, another region)
MODELS_BUCKET, OUTPUT_BUCKET = "models", "output"
