"""Output rows and the per-partition metrics (docs/CONTRACTS.md, "Staged output")."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from batch_inference import faults
from batch_inference.config import Encryption
from batch_inference.contract.formats import (
    FINGERPRINT_METADATA,
    JSON_LINES,
    ROWS_FORMAT,
    Metric,
    RowsFormat,
    metrics_name,
    metrics_partition,
    part_name,
    part_partition,
)
from batch_inference.errors import OutputWriteError
from batch_inference.s3io import S3Uri, get_bytes, is_missing_key, put_bytes

log = logging.getLogger(__name__)


def prediction_row(
    key: str, top: list[dict], model: str, run_id: str, precision: str = "fp32"
) -> dict:
    """A row for an image the model classified (``precision``: the arithmetic that did it)."""
    return {
        "key": key, "top_k": top, "model": model, "precision": precision, "run_id": run_id,
        "error": None,
    }  # fmt: skip


def error_row(
    key: str, error: dict[str, str], model: str, run_id: str, precision: str = "fp32"
) -> dict:
    """A row for an image that could not be classified (``error`` has ``type`` and ``message``)."""
    return {
        "key": key, "top_k": [], "model": model, "precision": precision, "run_id": run_id,
        "error": error,
    }  # fmt: skip


@dataclass
class PartitionMetrics:
    """Counters and timings of one partition; :meth:`as_dict` is the metrics part."""

    partition: int
    first_index: int
    end_index: int
    fingerprint: str
    rows: int = 0
    predicted: int = 0
    errors: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    download_seconds: float = 0.0
    decode_seconds: float = 0.0
    inference_seconds: float = 0.0
    wall_seconds: float = 0.0
    worker_peak_rss_mb: int | None = None
    worker_peak_address_space_mb: int | None = None
    precision: str = "fp32"
    int8_top1_agreement: float | None = None
    runtime: str = "mxnet"
    conversion_top1_agreement: float | None = None
    engine: str = "rdd"
    worker_environment: dict[str, str | None] | None = None

    def count_row(self, row: dict) -> None:
        """Account for one output row."""
        self.rows += 1
        if row["error"] is None:
            self.predicted += 1
        else:
            self.errors += 1
            kind = row["error"]["type"]
            self.errors_by_type[kind] = self.errors_by_type.get(kind, 0) + 1

    def as_dict(self) -> dict:
        """The contract's metrics object (:class:`~batch_inference.contract.formats.Metric`;
        seconds rounded to milliseconds)."""
        return {
            Metric.PARTITION: self.partition,
            Metric.ROWS: self.rows,
            Metric.PREDICTED: self.predicted,
            Metric.ERRORS: self.errors,
            Metric.ERRORS_BY_TYPE: dict(sorted(self.errors_by_type.items())),
            Metric.DOWNLOAD_SECONDS: round(self.download_seconds, 3),
            Metric.DECODE_SECONDS: round(self.decode_seconds, 3),
            Metric.INFERENCE_SECONDS: round(self.inference_seconds, 3),
            Metric.WALL_SECONDS: round(self.wall_seconds, 3),
            Metric.WORKER_PEAK_RSS_MB: self.worker_peak_rss_mb,
            Metric.WORKER_PEAK_ADDRESS_SPACE_MB: self.worker_peak_address_space_mb,
            Metric.PRECISION: self.precision,
            Metric.INT8_TOP1_AGREEMENT: self.int8_top1_agreement,
            Metric.RUNTIME: self.runtime,
            Metric.CONVERSION_TOP1_AGREEMENT: self.conversion_top1_agreement,
            Metric.ENGINE: self.engine,
            Metric.FIRST_INDEX: self.first_index,
            Metric.END_INDEX: self.end_index,
            Metric.FINGERPRINT: self.fingerprint,
            Metric.RESUMED: False,
            Metric.WORKER_ENVIRONMENT: self.worker_environment,
        }


def encode_rows(rows: list[dict]) -> bytes:
    """JSON Lines: one compact object per line, each line ``\\n``-terminated."""
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows).encode("utf-8")


class RowsEncoder(Protocol):
    """A rows format's bytes, produced as the rows come: what :meth:`add` returns is appended to
    the part as it is (a format may hold rows back, e.g. a columnar row group), and :meth:`finish`
    gives what ends the part (a trailer, the held-back rows; JSON Lines: nothing)."""

    def add(self, rows: list[dict]) -> bytes:
        """The bytes of ``rows`` that can be written now."""
        ...

    def finish(self) -> bytes:
        """The part's last bytes, once every row was added."""
        ...


class JsonLinesEncoder:
    """:data:`~batch_inference.contract.formats.JSON_LINES`: every row's line is whole on its
    own, so nothing is held back and nothing trails."""

    def add(self, rows: list[dict]) -> bytes:
        return encode_rows(rows)

    def finish(self) -> bytes:
        return b""


#: rows format name -> a new encoder of that format (one per part).
ENCODERS: dict[str, Callable[[], RowsEncoder]] = {JSON_LINES.name: JsonLinesEncoder}

#: Rows are uploaded in pieces of this size as they are produced (S3's minimum part is 5 MiB).
PIECE_BYTES = 8 * 1024 * 1024


class RowsPart:
    """A partition's rows part in ``rows_format``, streamed to S3 as its rows are produced.

    Up to ``piece_bytes`` of encoded rows are buffered; beyond that the part becomes a multipart
    upload and each full piece is uploaded at once, so a partition holds at most one piece of rows
    in memory, whatever its size. The object appears only when :meth:`close` completes the upload
    (or puts a part that never grew past one piece with one ``PutObject``): readers, resume and a
    retried task never see a partial part. :meth:`abort` discards an unfinished upload.
    """

    def __init__(
        self,
        client,
        target: S3Uri,
        encryption: Encryption,
        fingerprint: str,
        piece_bytes: int = PIECE_BYTES,
        rows_format: RowsFormat = ROWS_FORMAT,
    ) -> None:
        self.client, self.target, self.piece_bytes = client, target, piece_bytes
        self.content_type = rows_format.content_type
        self.encoder = ENCODERS[rows_format.name]()
        self.extra = encryption.put_object_args()
        self.metadata = {FINGERPRINT_METADATA: fingerprint}
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.pieces: list[dict] = []

    def add(self, rows: list[dict]) -> None:
        """Append rows; uploads a piece whenever a full one is buffered."""
        self.buffer += self.encoder.add(rows)
        self._upload_full_pieces()

    def _upload_full_pieces(self) -> None:
        while len(self.buffer) >= self.piece_bytes:
            piece = bytes(self.buffer[: self.piece_bytes])
            del self.buffer[: self.piece_bytes]
            self._upload_piece(piece)

    def close(self) -> None:
        """Make the part visible (its encoder's last bytes added): complete the multipart upload,
        or put the small part whole."""
        try:
            self.buffer += self.encoder.finish()
            self._upload_full_pieces()
            if self.upload_id is None:
                put_bytes(
                    self.client, self.target, bytes(self.buffer), self.content_type, self.extra,
                    self.metadata,
                )  # fmt: skip
                return
            if self.buffer:
                self._upload_piece(bytes(self.buffer))
            self.client.complete_multipart_upload(
                Bucket=self.target.bucket,
                Key=self.target.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.pieces},
            )
        except OutputWriteError:
            raise
        except Exception as exc:
            raise OutputWriteError(f"cannot write {self.target}: {exc}") from None

    def abort(self) -> None:
        """Discard an unfinished multipart upload (nothing was visible); never raises."""
        if self.upload_id is None:
            return
        try:
            self.client.abort_multipart_upload(
                Bucket=self.target.bucket, Key=self.target.key, UploadId=self.upload_id
            )
        except Exception as exc:  # a bucket lifecycle rule cleans what is left (docs/CONTRACTS.md)
            log.warning("cannot abort the upload of %s: %s", self.target, exc)

    def _upload_piece(self, piece: bytes) -> None:
        try:
            if self.upload_id is None:
                self.upload_id = self.client.create_multipart_upload(
                    Bucket=self.target.bucket,
                    Key=self.target.key,
                    ContentType=self.content_type,
                    Metadata=self.metadata,
                    **self.extra,
                )["UploadId"]
            number = len(self.pieces) + 1
            response = self.client.upload_part(
                Bucket=self.target.bucket,
                Key=self.target.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=piece,
            )
        except Exception as exc:
            raise OutputWriteError(f"cannot write {self.target}: {exc}") from None
        self.pieces.append({"PartNumber": number, "ETag": response["ETag"]})


def write_metrics(
    client, output: S3Uri, partition: int, metrics: dict, encryption: Encryption
) -> None:
    """Write the metrics part (one ``PutObject``), after the rows part it describes.

    It carries ``metrics["fingerprint"]`` as user metadata, as the rows part does; coming last, a
    metrics part always describes a complete rows part (see :func:`completed_metrics`).
    """
    faults.inject(faults.AFTER_ROWS_PART, partition)
    target = output.join(metrics_name(partition))
    metadata = {FINGERPRINT_METADATA: metrics[Metric.FINGERPRINT]}
    body = json.dumps(metrics).encode("utf-8")
    try:
        put_bytes(client, target, body, "application/json", encryption.put_object_args(), metadata)
    except Exception as exc:
        raise OutputWriteError(f"cannot write {target}: {exc}") from None


def completed_metrics(
    client, output: S3Uri, partition: int, first_index: int, end_index: int, fingerprint: str
) -> dict | None:
    """The stored metrics of ``partition`` if an earlier attempt or run already completed it.

    Complete means: its metrics part exists with this ``fingerprint`` and the same manifest range,
    and its rows part exists and was written with this fingerprint too (a rows part replaced by a
    run with another fingerprint that died before its metrics part is not reused). One
    ``GetObject`` and one ``HeadObject``. Returns the stored metrics with ``resumed: true``, or
    ``None`` when the partition must be (re)done; an unreadable part means redo, never fail.
    """
    metrics_uri, part_uri = output.join(metrics_name(partition)), output.join(part_name(partition))
    try:
        stored = json.loads(get_bytes(client, metrics_uri))
    except Exception as exc:
        if not is_missing_key(exc):
            log.warning(
                "partition %d: cannot read %s (%s); redoing it", partition, metrics_uri, exc
            )
        return None
    expected = {
        Metric.PARTITION: partition,
        Metric.FIRST_INDEX: first_index,
        Metric.END_INDEX: end_index,
        Metric.FINGERPRINT: fingerprint,
    }
    different = [name for name, value in expected.items() if stored.get(name) != value]
    if different:
        log.info(
            "partition %d: %s differs from this run's (%s); redoing it",
            partition,
            metrics_uri,
            ", ".join(different),
        )
        return None
    try:
        head = client.head_object(Bucket=part_uri.bucket, Key=part_uri.key)
    except Exception as exc:
        log.warning(
            "partition %d: metrics part found but not %s (%s); redoing it", partition, part_uri, exc
        )
        return None
    if head.get("Metadata", {}).get(FINGERPRINT_METADATA) != fingerprint:
        log.info("partition %d: %s was written by another run; redoing it", partition, part_uri)
        return None
    return {**stored, Metric.RESUMED: True}


def remove_stale_parts(client, output: S3Uri, partitions: int) -> list[str]:
    """Delete parts and metrics parts of partitions ``>= partitions`` (left by an earlier run of
    the same output with more partitions); returns the deleted keys. Other objects are kept."""
    prefix = output.join("").key
    stale = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=output.bucket, Prefix=prefix
    ):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix) :]
            partition = part_partition(name)
            if partition is None:
                partition = metrics_partition(name)
            if partition is not None and partition >= partitions:
                stale.append(item["Key"])
    for start in range(0, len(stale), 1000):  # DeleteObjects takes at most 1000 keys
        batch = [{"Key": key} for key in stale[start : start + 1000]]
        client.delete_objects(Bucket=output.bucket, Delete={"Objects": batch, "Quiet": True})
    if stale:
        log.info("removed %d parts of partitions >= %d from %s", len(stale), partitions, output)
    return stale
