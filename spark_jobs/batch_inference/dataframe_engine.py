"""The ``predict_batch_udf`` engine: the same job as a DataFrame pipeline (``--engine``).

Three narrow stages, one Spark task per partition, one partition per manifest range, exactly as
the RDD engine assigns them (:func:`batch_inference.manifest.partition_range`):

1. ``mapInPandas`` (:func:`read_images`): the partition's keys from the manifest, downloaded and
   decoded with the RDD engine's code (:class:`batch_inference.partition.Prefetch`, bounded), one
   row per key: the tensor (zeros for a bad image) and the error, if any;
2. ``pyspark.ml.functions.predict_batch_udf`` (:func:`make_predict_fn`): the model of
   :func:`batch_inference.model.load_model`, loaded once per Python worker, called on Arrow
   batches of ``--batch-size`` rows; only the rows with an image go through the model, so a batch
   holds the same images as the RDD engine's batch;
3. ``mapInPandas`` (:func:`write_parts`): the rows of the contract (same ``top_k``, same row
   builders) streamed into the partition's rows part, then its metrics part; the task returns
   the metrics to the driver.

S3 is read and written from Python only (the JVM needs no S3 filesystem). Resume follows the
contract: the driver checks every partition's stored parts first
(:func:`batch_inference.output.completed_metrics`) and runs tasks only for the others.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from batch_inference.batching import top_k
from batch_inference.config import JobConfig
from batch_inference.manifest import Manifest, iter_keys, partition_range
from batch_inference.model import fetch_verified, load_model, parse_labels, set_omp_threads
from batch_inference.output import (
    completed_metrics,
    error_row,
    prediction_row,
)
from batch_inference.partition import (
    Prefetch,
    memory_peaks,
    new_metrics,
    report_partition,
    staged_rows,
)
from batch_inference.s3io import make_client, parse_s3_uri

log = logging.getLogger(__name__)

#: Columns of the decoded images (stage 1); ``tensor`` is the flattened ``(3, S, S)`` image.
IMAGES_SCHEMA = (
    "partition int, key string, ok boolean, tensor array<float>, error_type string, "
    "error_message string, download_seconds double, decode_seconds double, started double"
)
METRICS_SCHEMA = "metrics string"


def read_images(
    config: JobConfig, manifest: Manifest, partitions: int
) -> Callable[[Iterator], Iterator]:
    """Stage 1, for ``mapInPandas``: each input row names a partition; yields its keys' images."""

    def read(frames: Iterator) -> Iterator:
        import pandas as pd

        from batch_inference.job_logging import configure_logging

        configure_logging()
        size = config.preprocess.image_size
        blank = np.zeros(3 * size * size, dtype=np.float32)
        for frame in frames:
            for index in frame["partition"]:
                started = time.time()  # the task's start, for the metrics' wall_seconds
                start, end = partition_range(int(index), partitions, manifest.total)
                client = make_client(config.prefetch_threads + 2)
                with ThreadPoolExecutor(config.prefetch_threads) as pool:
                    keys = iter_keys(client, manifest, start, end)
                    for _, batch in Prefetch(pool, client, keys, config):
                        yield pd.DataFrame(
                            {
                                "partition": [int(index)] * len(batch),
                                "key": [item.key for item in batch],
                                "ok": [item.tensor is not None for item in batch],
                                "tensor": [  # copies: Prefetch reuses its arrays
                                    blank if item.tensor is None else item.tensor.ravel().copy()
                                    for item in batch
                                ],
                                "error_type": [(item.error or {}).get("type") for item in batch],
                                "error_message": [
                                    (item.error or {}).get("message") for item in batch
                                ],
                                "download_seconds": [item.download_seconds for item in batch],
                                "decode_seconds": [item.decode_seconds for item in batch],
                                "started": [started] * len(batch),
                            }
                        )

    return read


def prediction_type():
    """The struct ``predict_batch_udf`` returns per row: class probabilities (zeros for a row
    without an image), its share of the batch's model seconds and the model worker's memory."""
    from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

    return StructType(
        [
            StructField("probabilities", ArrayType(DoubleType())),
            StructField("seconds", DoubleType()),
            StructField("rss_mb", DoubleType()),
            StructField("address_space_mb", DoubleType()),
        ]
    )


def make_predict_fn(config: JobConfig) -> Callable[[], Callable[..., dict]]:
    """``make_predict_fn`` of ``predict_batch_udf``: binds the model once per Python worker.

    The returned function takes the batch's tensors ``(n, 3, S, S)`` and its ``ok`` flags and
    runs only the rows with an image through :meth:`batch_inference.runtime.BoundModel.predict`.
    """

    def make() -> Callable[..., dict]:
        from pyspark import TaskContext

        from batch_inference.job_logging import configure_logging

        configure_logging()
        context = TaskContext.get()
        set_omp_threads(config.omp_threads or (context.cpus() if context else 1))
        size = config.preprocess.image_size
        model = load_model(make_client(), config.model, config.batch_size, size)

        def predict(tensors: np.ndarray, ok: np.ndarray) -> dict[str, np.ndarray]:
            ok = ok.astype(bool)
            count = len(ok)
            probabilities = np.zeros((count, model.num_classes), dtype=np.float64)
            seconds = np.zeros(count, dtype=np.float64)
            if ok.any():
                started = time.perf_counter()
                probabilities[ok] = model.predict(tensors[ok].astype(np.float32, copy=False))
                seconds[ok] = (time.perf_counter() - started) / int(ok.sum())
            rss, address_space = memory_peaks()
            return {
                "probabilities": probabilities,
                "seconds": seconds,
                "rss_mb": np.full(count, math.nan if rss is None else float(rss)),
                "address_space_mb": np.full(
                    count, math.nan if address_space is None else float(address_space)
                ),
            }

        return predict

    return make


def _peak(current: int | None, value: float) -> int | None:
    if math.isnan(value):
        return current
    return max(current or 0, int(value))


def write_partition(
    index: int,
    partitions: int,
    config: JobConfig,
    manifest: Manifest,
    fingerprint: str,
    frames: Iterator,
) -> dict:
    """Stage 3 for partition ``index``: the scored ``frames`` into its rows part, then its
    metrics part (the RDD engine's format); returns the metrics. ``wall_seconds`` counts from
    the partition's first stage (the ``started`` column), the three stages run in one task."""
    started = time.time()
    start, end = partition_range(index, partitions, manifest.total)
    client = make_client()
    output = parse_s3_uri(config.output_uri, "--output")
    spec = config.model
    labels = parse_labels(
        fetch_verified(client, spec.labels_uri, spec.labels_sha256, "--model-labels"),
        spec.labels_uri,
    )
    metrics = new_metrics(config, index, (start, end), fingerprint)
    name, run_id, precision = spec.name, config.run_id, config.precision
    with staged_rows(client, output, config, metrics) as part:
        for frame in frames:
            rows = []
            for item in frame.itertuples(index=False):
                if item.partition != index:
                    raise RuntimeError(
                        f"partition {index}: got a row of partition {item.partition}"
                    )
                prediction = item.prediction
                started = min(started, item.started)
                metrics.download_seconds += item.download_seconds
                metrics.decode_seconds += item.decode_seconds
                metrics.inference_seconds += prediction["seconds"]
                metrics.worker_peak_rss_mb = _peak(metrics.worker_peak_rss_mb, prediction["rss_mb"])
                metrics.worker_peak_address_space_mb = _peak(
                    metrics.worker_peak_address_space_mb, prediction["address_space_mb"]
                )
                if item.error_type is None:
                    probabilities = np.asarray(prediction["probabilities"], dtype=np.float64)
                    top = top_k(probabilities, labels, config.top_k)
                    rows.append(prediction_row(item.key, top, name, run_id, precision))
                else:
                    error = {"type": item.error_type, "message": item.error_message}
                    rows.append(error_row(item.key, error, name, run_id, precision))
            for row in rows:
                metrics.count_row(row)
            part.add(rows)
    metrics.wall_seconds = time.time() - started
    return report_partition(client, output, config, metrics)


def write_parts(
    config: JobConfig, manifest: Manifest, partitions: int, todo: list[int], fingerprint: str
) -> Callable[[Iterator], Iterator]:
    """Stage 3, for ``mapInPandas``: Spark partition ``i`` is job partition ``todo[i]``."""

    def write(frames: Iterator) -> Iterator:
        import pandas as pd
        from pyspark import TaskContext

        from batch_inference.job_logging import configure_logging

        configure_logging()
        task = TaskContext.get()
        assert task is not None  # set in a Spark task, where this runs
        index = todo[task.partitionId()]
        result = write_partition(index, partitions, config, manifest, fingerprint, frames)
        yield pd.DataFrame({"metrics": [json.dumps(result)]})

    return write


def resumable(
    config: JobConfig, manifest: Manifest, partitions: int, fingerprint: str
) -> dict[int, dict]:
    """The stored metrics (``resumed: true``) of the partitions already complete for this run
    fingerprint, checked from the driver with the contract's rule; empty with ``--no-resume``."""
    if not config.resume:
        return {}
    client = make_client(16)
    output = parse_s3_uri(config.output_uri, "--output")

    def check(index: int) -> dict | None:
        start, end = partition_range(index, partitions, manifest.total)
        return completed_metrics(client, output, index, start, end, fingerprint)

    with ThreadPoolExecutor(16) as pool:
        found = pool.map(check, range(partitions))
        return {index: stored for index, stored in enumerate(found) if stored is not None}


def run_partitions(
    spark, config: JobConfig, manifest: Manifest, partitions: int, fingerprint: str
) -> list[dict]:
    """Every partition's metrics: the stored ones of resumed partitions, and those of the
    partitions this call runs through ``predict_batch_udf``."""
    from pyspark.ml.functions import predict_batch_udf

    stored = resumable(config, manifest, partitions, fingerprint)
    todo = [index for index in range(partitions) if index not in stored]
    if stored:
        log.info("%d partitions already complete for this run fingerprint", len(stored))
    if not todo:
        return list(stored.values())
    # Arrow batches of --batch-size rows: the model sees the RDD engine's batches, and a batch
    # of tensors (600 KB an image at 224 px) never grows to Spark's default of 10,000 rows.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.batch_size))
    size = config.preprocess.image_size
    predict = predict_batch_udf(
        make_predict_fn(config),
        return_type=prediction_type(),
        batch_size=config.batch_size,
        input_tensor_shapes=[[3, size, size], None],
    )
    indices = spark.sparkContext.parallelize([(index,) for index in todo], len(todo))
    images = spark.createDataFrame(indices, "partition int").mapInPandas(
        read_images(config, manifest, partitions), IMAGES_SCHEMA
    )
    scored = images.withColumn("prediction", predict("tensor", "ok")).drop("tensor", "ok")
    written = scored.mapInPandas(
        write_parts(config, manifest, partitions, todo, fingerprint), METRICS_SCHEMA
    )
    return [*stored.values(), *(json.loads(row.metrics) for row in written.collect())]
