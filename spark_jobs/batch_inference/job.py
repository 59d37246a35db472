"""The driver: read the manifest index, run one task per partition, check what came back.

Only the per-partition metrics dicts travel back to the driver; predictions go from the
executors straight to S3. The driver fails the run (:class:`~batch_inference.errors.JobFailed`)
when a partition hit a systemic error (model, manifest, output) or the error rate is too high.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator

from batch_inference.config import JobConfig
from batch_inference.contract.formats import images_per_task_second
from batch_inference.contract.settings import (
    KEYS_PER_PARTITION_MIN,
    derived_partition_keys,
    job_default,
)
from batch_inference.errors import JobFailed, ManifestError, ModelLoadError
from batch_inference.fingerprint import model_identity, run_fingerprint
from batch_inference.job_logging import configure_logging
from batch_inference.manifest import Manifest, read_manifest
from batch_inference.output import remove_stale_parts
from batch_inference.s3io import make_client, parse_s3_uri

log = logging.getLogger(__name__)

#: The bound of the default settings: 25 images per task-second (ResNet-18 fp32 on one core,
#: docs/BENCHMARKS.md) x 300 s = 7,500 keys, five minutes a partition.
DEFAULT_PARTITION_KEYS = derived_partition_keys(
    job_default("estimate.images_per_task_second"), job_default("partition_seconds")
)

# How the driver names each systemic error found in a failed task's Python traceback.
_SYSTEMIC_CAUSES = {
    "ModelLoadError": "the model could not be loaded",
    "ManifestError": "the manifest could not be read",
    "OutputWriteError": "the output could not be written",
    "WorkerLimitError": "a Python worker ran out of its limits",
}
_SYSTEMIC_PATTERN = re.compile(
    r"(?:batch_inference\.errors\.)?\b(" + "|".join(_SYSTEMIC_CAUSES) + r"): ([^\r\n]+)"
)


def resolve_partitions(
    requested: int, total: int, default_parallelism: int, max_keys: int = DEFAULT_PARTITION_KEYS
) -> int:
    """The partition count: ``requested``, or ``defaultParallelism * 2`` capped at one partition
    per 100 keys (>= 1); in both cases at least ``total / max_keys``.

    ``max_keys`` is :meth:`JobConfig.partition_keys`: by default the keys of ``partition_seconds``
    at the estimated rate. The bound keeps every partition to minutes at any scale: a failed task
    redoes only it, and the step's progress moves one partition at a time.
    Above ``defaultParallelism`` a derived count is a multiple of it, so the last wave of tasks
    keeps every core busy (3 partitions on 2 cores leave one core idle for a third of the run).
    """
    bounded = math.ceil(total / max_keys)
    if requested > 0:
        return max(requested, bounded)
    count = min(default_parallelism * 2, math.ceil(total / KEYS_PER_PARTITION_MIN))
    if count < bounded:
        count = math.ceil(bounded / default_parallelism) * default_parallelism
    elif count > default_parallelism:
        count -= count % default_parallelism
    return max(1, count)


def systemic_cause(error_text: str) -> str | None:
    """The systemic error named in a failed Spark job's message, as a sentence, if any."""
    match = _SYSTEMIC_PATTERN.search(error_text)
    if match is None:
        return None
    return f"{_SYSTEMIC_CAUSES[match.group(1)]}: {match.group(2).strip()}"


def summarise(metrics: list[dict], total: int, partitions: int, max_error_rate: float) -> dict:
    """Totals over the partitions' metrics.

    Raises ``JobFailed`` when a partition is missing, rows do not add up or errors are too many.
    """
    seen = sorted(item["partition"] for item in metrics)
    if seen != list(range(partitions)):
        raise JobFailed(f"expected metrics of partitions 0..{partitions - 1}, got {seen}")
    rows = sum(item["rows"] for item in metrics)
    errors = sum(item["errors"] for item in metrics)
    by_type: dict[str, int] = {}
    for item in metrics:
        for kind, count in item["errors_by_type"].items():
            by_type[kind] = by_type.get(kind, 0) + count
    if rows != total:
        raise JobFailed(f"the partitions wrote {rows} rows but the manifest lists {total} keys")
    rate = errors / rows if rows else 0.0
    resumed = [item for item in metrics if item.get("resumed")]
    summary = {
        "partitions": partitions,
        "resumed_partitions": len(resumed),
        "resumed_rows": sum(item["rows"] for item in resumed),
        "rows": rows,
        "predicted": rows - errors,
        "errors": errors,
        "error_rate": rate,
        "errors_by_type": dict(sorted(by_type.items())),
        # measured: what estimate.images_per_task_second should be (docs/CONTRACTS.md)
        "images_per_task_second": images_per_task_second(metrics),
    }
    if rate > max_error_rate:
        raise JobFailed(
            f"error rate {rate:.2%} ({errors} of {rows} rows) is above --max-error-rate "
            f"{max_error_rate:.2%}; errors by type: {summary['errors_by_type']}"
        )
    return summary


def partition_task(
    config: JobConfig, manifest: Manifest, partitions: int, fingerprint: str
) -> Callable[[int, Iterable], Iterator[dict]]:
    """The function Spark runs for each partition (pickled with the config and manifest index)."""

    def task(index: int, _elements: Iterable) -> Iterator[dict]:
        from pyspark import TaskContext

        from batch_inference.partition import process_partition

        configure_logging()
        context = TaskContext.get()
        if context and context.attemptNumber() > 0:
            log.warning("partition %d: attempt %d (retry)", index, context.attemptNumber())
        threads = config.omp_threads or (context.cpus() if context else 1)
        yield process_partition(index, partitions, config, manifest, fingerprint, threads)

    return task


def run_engine(
    spark, config: JobConfig, manifest: Manifest, partitions: int, fingerprint: str
) -> list[dict]:
    """Every partition's metrics, from the engine ``config.engine`` names."""
    if config.engine == "predict_batch_udf":
        from batch_inference.dataframe_engine import run_partitions

        return run_partitions(spark, config, manifest, partitions, fingerprint)
    rdd = spark.sparkContext.parallelize(range(partitions), partitions)
    return rdd.mapPartitionsWithIndex(
        partition_task(config, manifest, partitions, fingerprint)
    ).collect()


def run_job(config: JobConfig) -> dict:
    """Run the whole job; returns the summary, raises ``JobFailed`` with the cause on failure."""
    from pyspark.sql import SparkSession

    started = time.monotonic()
    client = make_client()
    try:
        manifest = read_manifest(client, config.manifest_uri)
    except ManifestError as exc:
        raise JobFailed(f"the manifest could not be read: {exc}") from None
    if config.model.runtime != "mxnet":
        from batch_inference.convert import prepare_runtime

        try:
            config = prepare_runtime(client, config, manifest)
        except ModelLoadError as exc:
            raise JobFailed(f"the model could not be loaded: {exc}") from None
    if config.precision == "int8":
        from batch_inference.int8 import prepare_int8

        try:
            config = prepare_int8(client, config, manifest)
        except ModelLoadError as exc:
            raise JobFailed(f"the model could not be loaded: {exc}") from None
    try:
        fingerprint = run_fingerprint(config, manifest.sha256, model_identity(client, config.model))
    except ModelLoadError as exc:
        raise JobFailed(f"the model could not be loaded: {exc}") from None
    spark = (
        SparkSession.builder.appName(f"batch-inference {config.model.name} {config.run_id}")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    try:
        context = spark.sparkContext
        max_keys, bound_source = config.partition_keys()
        partitions = resolve_partitions(
            config.partitions, manifest.total, context.defaultParallelism, max_keys
        )
        log.info(
            "run %s: %d keys from %s in %d partitions of at most %d keys (%s), model %r (%s, "
            "%s), batch size %d, output %s, run fingerprint %s (resume %s, engine %s)",
            config.run_id,
            manifest.total,
            config.manifest_uri,
            partitions,
            max_keys,
            bound_source,
            config.model.name,
            config.model.runtime,
            config.precision,
            config.batch_size,
            config.output_uri,
            fingerprint,
            "on" if config.resume else "off",
            config.engine,
        )
        output = parse_s3_uri(config.output_uri, "--output", prefix=True)
        try:
            remove_stale_parts(client, output, partitions)
        except Exception as exc:  # publishing will refuse the output, naming the extra parts
            log.warning("cannot remove stale parts from %s: %s", output, exc)
        try:
            metrics = run_engine(spark, config, manifest, partitions, fingerprint)
        except Exception as exc:
            cause = systemic_cause(str(exc))
            if cause is None:
                raise
            raise JobFailed(cause) from None
    finally:
        spark.stop()
    summary = summarise(metrics, manifest.total, partitions, config.max_error_rate)
    summary["wall_seconds"] = round(time.monotonic() - started, 3)
    log.info("run %s finished: %s", config.run_id, summary)
    return summary
