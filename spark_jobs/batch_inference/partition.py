"""One partition's work: keys from the manifest, bounded prefetch, batched inference, one write.

A partition that an earlier attempt or run already completed for the same run fingerprint (see
:mod:`batch_inference.fingerprint`) is not redone: its stored metrics are returned instead.

A thread pool downloads and decodes the next ``prefetch_depth`` batches while the current batch
runs through the model, so S3 latency, decoding and compute overlap instead of alternating. The
queue of batches in flight is bounded: each image is decoded straight into its slot of one of
``prefetch_depth + 1`` batch arrays allocated once per partition and reused, so memory stays at
``(prefetch_depth + 1) * batch_size`` decoded images whatever the partition's size, and a batch of
good images reaches the model without being stacked (copied) first.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from batch_inference import faults
from batch_inference.batching import chunked, top_k
from batch_inference.config import JobConfig, Preprocess
from batch_inference.contract.s3 import S3Uri
from batch_inference.environment import worker_environment
from batch_inference.errors import (
    CORRUPT_IMAGE,
    DOWNLOAD_FAILED,
    MISSING_OBJECT,
    ImageError,
    WorkerLimitError,
)
from batch_inference.images import decode_image
from batch_inference.manifest import Manifest, iter_keys, partition_range
from batch_inference.model import load_model, set_omp_threads
from batch_inference.output import (
    PartitionMetrics,
    RowsPart,
    completed_metrics,
    error_row,
    part_name,
    prediction_row,
    write_metrics,
)
from batch_inference.runtime import BoundModel
from batch_inference.s3io import get_bytes, is_missing_key, make_client, parse_s3_uri

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One key after download and decode: a tensor, or the error row's ``error`` object."""

    key: str
    tensor: np.ndarray | None
    error: dict[str, str] | None
    download_seconds: float
    decode_seconds: float


def prepare(client, key: str, spec: Preprocess, out: np.ndarray | None = None) -> Prepared:
    """Download and decode one image (into ``out``, a ``(3, size, size)`` float32 slot, if given);
    never raises for a bad object, returns its error instead."""
    started = time.perf_counter()
    try:
        data = get_bytes(client, parse_s3_uri(key, "manifest key"))
    except Exception as exc:
        kind = MISSING_OBJECT if is_missing_key(exc) else DOWNLOAD_FAILED
        message = f"{type(exc).__name__}: {exc}"
        return Prepared(key, None, {"type": kind, "message": message}, _since(started), 0.0)
    return decode_prepared(key, data, spec, _since(started), out)


def decode_prepared(
    key: str,
    data: bytes,
    spec: Preprocess,
    download_seconds: float,
    out: np.ndarray | None = None,
) -> Prepared:
    """Decode the bytes of ``key`` (into ``out``, if given); a bad image becomes its error, never
    an exception."""
    started = time.perf_counter()
    try:
        tensor, error = decode_image(data, spec, out=out), None
    except ImageError as exc:
        tensor, error = None, exc.as_dict()
    except Exception as exc:  # a decoder bug on a hostile file is still a bad image
        tensor, error = None, {"type": CORRUPT_IMAGE, "message": f"{type(exc).__name__}: {exc}"}
    return Prepared(key, tensor, error, download_seconds, _since(started))


def _since(start: float) -> float:
    return time.perf_counter() - start


def classify_batch(
    prepared: list[Prepared],
    model: BoundModel,
    config: JobConfig,
    inputs: np.ndarray | None = None,
) -> tuple[list[dict], float]:
    """Rows for one batch in key order, and the seconds spent in the model.

    ``inputs`` is the batch array the tensors were decoded into (slot ``i`` for ``prepared[i]``):
    when every image is good it goes to the model as it is, otherwise the good ones are gathered.
    """
    tensors = [item.tensor for item in prepared if item.tensor is not None]
    probabilities: Iterator[np.ndarray] = iter(())
    seconds = 0.0
    if tensors:
        started = time.perf_counter()
        if inputs is not None and len(tensors) == len(prepared):
            batch = inputs[: len(prepared)]
        else:
            batch = np.stack(tensors)
        probabilities = iter(model.predict(batch))
        seconds = _since(started)
    rows = []
    for item in prepared:
        if item.tensor is None:
            assert item.error is not None  # prepare gives a tensor or an error
            rows.append(
                error_row(item.key, item.error, config.model.name, config.run_id, config.precision)
            )
        else:
            top = top_k(next(probabilities), model.labels, config.top_k)
            rows.append(
                prediction_row(item.key, top, config.model.name, config.run_id, config.precision)
            )
    return rows, seconds


def memory_peaks(status_path: str = "/proc/self/status") -> tuple[int | None, int | None]:
    """This Python worker's peak resident set and peak address space so far, in MiB.

    From Linux's ``VmHWM`` and ``VmPeak`` (what YARN's memory check and the address-space limit of
    ``spark.executor.pyspark.memory`` measure); ``(None, None)`` where there is no such file.
    """
    try:
        with open(status_path, encoding="ascii") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except OSError:
        return None, None

    def mib(name: str) -> int | None:
        value = fields.get(name, "").split()
        return -(-int(value[0]) // 1024) if value else None  # kB -> MiB, rounded up

    return mib("VmHWM"), mib("VmPeak")


def thread_limit_error(error: Exception, threads: int) -> WorkerLimitError:
    """The job's error for a prefetch thread the operating system refused to start: it names the
    worker's address-space limit, which each thread's stack counts against."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    limit = (
        "not limited"
        if soft == resource.RLIM_INFINITY
        else f"limited to {soft // 2**20} MiB (spark.executor.pyspark.memory / executor cores)"
    )
    return WorkerLimitError(
        f"cannot start prefetch thread ({error}): this Python worker's address space is {limit}, "
        f"and each of its {threads} prefetch threads maps a stack; lower prefetch_threads or "
        "raise the worker's memory (docs/SIZING.md)"
    )


class Prefetch:
    """Batches of :class:`Prepared` keys, downloaded and decoded by ``pool`` ahead of their use,
    each batch into a reused ``(batch_size, 3, S, S)`` float32 array.

    At most ``config.prefetch_depth`` batches are in flight: they are submitted at construction
    (so the first batches download while the caller loads the model) and topped up each time a
    batch is taken, so the next batches download and decode while the current one is used.
    Iterating yields ``(array, prepared)``; the array (slot ``i`` holds ``prepared[i]``'s tensor)
    is the caller's until it asks for the next batch, then it is reused: ``prefetch_depth + 1``
    arrays in all.
    """

    def __init__(self, pool: ThreadPoolExecutor, client, keys: Iterator[str], config: JobConfig):
        self.pool, self.client, self.config = pool, client, config
        self.batches = chunked(keys, config.batch_size)
        size = config.preprocess.image_size
        self.free = deque(
            np.empty((config.batch_size, 3, size, size), dtype=np.float32)
            for _ in range(config.prefetch_depth + 1)
        )
        self.pending: deque[tuple[np.ndarray, list[Future]]] = deque()
        self._top_up()

    def _top_up(self) -> None:
        spec = self.config.preprocess
        while len(self.pending) < self.config.prefetch_depth:
            batch = next(self.batches, None)
            if batch is None:
                return
            inputs = self.free.popleft()
            try:
                futures = [
                    self.pool.submit(prepare, self.client, key, spec, inputs[slot])
                    for slot, key in enumerate(batch)
                ]
            except RuntimeError as exc:
                if "can't start new thread" not in str(exc):
                    raise
                raise thread_limit_error(exc, self.config.prefetch_threads) from None
            self.pending.append((inputs, futures))

    def __iter__(self) -> Iterator[tuple[np.ndarray, list[Prepared]]]:
        while self.pending:
            inputs, futures = self.pending.popleft()
            self._top_up()
            yield inputs, [future.result() for future in futures]
            self.free.append(inputs)


def classify_range(
    client,
    manifest: Manifest,
    positions: tuple[int, int],
    config: JobConfig,
    metrics: PartitionMetrics,
    part: RowsPart,
    index: int,
) -> None:
    """Classify the keys at manifest ``positions`` batch by batch into ``part``, counting them in
    ``metrics``; the next batches download and decode while the model runs (bounded)."""
    with ThreadPoolExecutor(
        config.prefetch_threads, thread_name_prefix=f"prefetch-{index}"
    ) as pool:
        batches = Prefetch(pool, client, iter_keys(client, manifest, *positions), config)
        model = load_model(client, config.model, config.batch_size, config.preprocess.image_size)
        for inputs, current in batches:
            batch_rows, seconds = classify_batch(current, model, config, inputs)
            metrics.inference_seconds += seconds
            for item in current:
                metrics.download_seconds += item.download_seconds
                metrics.decode_seconds += item.decode_seconds
            for row in batch_rows:
                metrics.count_row(row)
            part.add(batch_rows)  # streamed: the partition holds at most one piece of rows


def process_partition(
    index: int,
    partitions: int,
    config: JobConfig,
    manifest: Manifest,
    fingerprint: str,
    omp_threads: int,
) -> dict:
    """Classify partition ``index`` of ``partitions``, write its parts, return its metrics dict.

    With ``config.resume``, a partition already complete for ``fingerprint`` is skipped and its
    stored metrics come back with ``resumed: true``.
    """
    started = time.perf_counter()
    faults.inject(faults.AT_START, index)
    start, end = partition_range(index, partitions, manifest.total)
    client = make_client(config.prefetch_threads + 2)
    output = parse_s3_uri(config.output_uri, "--output", prefix=True)
    if config.resume:
        stored = completed_metrics(client, output, index, start, end, fingerprint)
        if stored is not None:
            log.info(
                "partition %d: keys [%d, %d) already complete for run fingerprint %s; resumed",
                index,
                start,
                end,
                fingerprint[:12],
            )
            return stored
    set_omp_threads(omp_threads)
    metrics = new_metrics(config, index, (start, end), fingerprint)
    with staged_rows(client, output, config, metrics) as part:
        if end > start:
            classify_range(client, manifest, (start, end), config, metrics, part, index)
    metrics.wall_seconds = _since(started)
    metrics.worker_peak_rss_mb, metrics.worker_peak_address_space_mb = memory_peaks()
    return report_partition(client, output, config, metrics)


def new_metrics(
    config: JobConfig, index: int, span: tuple[int, int], fingerprint: str
) -> PartitionMetrics:
    """The metrics of job partition ``index`` over manifest positions ``span``, before any row
    (with the interpreter and package versions of the Python worker that runs it)."""
    return PartitionMetrics(
        partition=index,
        first_index=span[0],
        end_index=span[1],
        fingerprint=fingerprint,
        precision=config.precision,
        int8_top1_agreement=config.int8_agreement,
        runtime=config.model.runtime,
        conversion_top1_agreement=config.conversion_agreement,
        engine=config.engine,
        worker_environment=worker_environment(),
    )


@contextlib.contextmanager
def staged_rows(
    client, output: S3Uri, config: JobConfig, metrics: PartitionMetrics
) -> Iterator[RowsPart]:
    """The partition's rows part, filled inside the block (both engines): after it, every key of
    the partition must have its row, then the part is completed; on any error it is aborted, so
    no part of a failed attempt is ever visible."""
    part = RowsPart(
        client, output.join(part_name(metrics.partition)), config.encryption, metrics.fingerprint
    )
    expected = metrics.end_index - metrics.first_index
    try:
        yield part
        if metrics.rows != expected:
            raise RuntimeError(
                f"partition {metrics.partition}: {metrics.rows} rows for {expected} keys"
            )
        part.close()
    except BaseException:
        part.abort()
        raise


def report_partition(client, output: S3Uri, config: JobConfig, metrics: PartitionMetrics) -> dict:
    """Write the partition's metrics part (after its rows part) and log it; returns the metrics."""
    result = metrics.as_dict()
    write_metrics(client, output, metrics.partition, result, config.encryption)
    log.info(
        "partition %d: keys [%d, %d): %d predicted, %d errors %s in %.1fs (%s)",
        metrics.partition,
        metrics.first_index,
        metrics.end_index,
        metrics.predicted,
        metrics.errors,
        result["errors_by_type"],
        metrics.wall_seconds,
        metrics.engine,
    )
    return result
