"""The objects the two sides exchange in S3 (docs/CONTRACTS.md): the key manifest that
``stage_manifest`` writes and the job reads, and the staged output (rows parts, metrics parts) that
the job writes and ``publish_results`` checks and publishes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

# --- key manifest: <dir>/manifest.json naming <dir>/shard-NNNNN.txt, one object URI a line

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """A manifest is missing, malformed or inconsistent; the message names the manifest and field.

    The job reports it as a systemic error (``batch_inference.job`` finds it by this class name).
    """


def shard_name(index: int) -> str:
    """``shard-00007.txt`` for the eighth shard."""
    return f"shard-{index:05d}.txt"


@dataclass(frozen=True)
class Shard:
    """One shard of a manifest document and how many keys it lists."""

    uri: str
    count: int


@dataclass(frozen=True)
class ManifestDocument:
    """A ``manifest.json`` that follows the format (see :func:`check_manifest`)."""

    total: int
    shards: tuple[Shard, ...]
    source: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The document as written to ``manifest.json``."""
        return {
            "version": MANIFEST_VERSION,
            "total": self.total,
            "source": self.source,
            "shards": [{"uri": shard.uri, "count": shard.count} for shard in self.shards],
        }


def check_manifest(uri: str, doc: Any) -> ManifestDocument:
    """Validate a parsed ``manifest.json``; :class:`ManifestError` names ``uri`` and the field."""
    if not isinstance(doc, dict):
        raise ManifestError(f"manifest {uri} must be a JSON object")
    if doc.get("version") != MANIFEST_VERSION:
        raise ManifestError(
            f"manifest {uri}: field 'version' must be {MANIFEST_VERSION}, "
            f"got {doc.get('version')!r}"
        )
    total = doc.get("total")
    if not isinstance(total, int) or total < 0:
        raise ManifestError(f"manifest {uri}: field 'total' must be an integer >= 0, got {total!r}")
    raw_shards = doc.get("shards")
    if not isinstance(raw_shards, list):
        raise ManifestError(f"manifest {uri}: field 'shards' must be a list")
    shards = []
    for i, item in enumerate(raw_shards):
        if not isinstance(item, dict):
            raise ManifestError(f"manifest {uri}: shards[{i}] must be an object")
        shard_uri, count = item.get("uri"), item.get("count")
        if not isinstance(shard_uri, str):
            raise ManifestError(f"manifest {uri}: shards[{i}].uri must be a string")
        if not isinstance(count, int) or count < 0:
            raise ManifestError(f"manifest {uri}: shards[{i}].count must be an integer >= 0")
        shards.append(Shard(shard_uri, count))
    counted = sum(shard.count for shard in shards)
    if counted != total:
        raise ManifestError(
            f"manifest {uri}: field 'total' is {total} but the shard counts add up to {counted}"
        )
    return ManifestDocument(total, tuple(shards), doc.get("source"))


# --- staged output: <output>/part-NNNNN.jsonl and <output>/_metrics/part-NNNNN.json

METRICS_DIR = "_metrics"
#: User metadata key (``x-amz-meta-fingerprint``) of both parts: the fingerprint of their run.
FINGERPRINT_METADATA = "fingerprint"
_METRICS_RE = re.compile(rf"^{METRICS_DIR}/part-(\d{{5,}})\.json$")


@dataclass(frozen=True)
class RowsFormat:
    """How a partition's rows part is stored: its name's suffix and its content type. The bytes
    are the job's encoder's (``batch_inference.output.ENCODERS[name]``), streamed as rows come."""

    name: str
    suffix: str
    content_type: str

    @property
    def part_pattern(self) -> re.Pattern[str]:
        """``part-NNNNN<suffix>``, the partition number captured."""
        return re.compile(rf"^part-(\d{{5,}}){re.escape(self.suffix)}$")


#: JSON Lines: one compact JSON object a row (an image), each line ``\n``-terminated.
JSON_LINES = RowsFormat("jsonl", ".jsonl", "application/x-ndjson")
#: The format of the rows parts the job stages and ``publish_results`` publishes.
ROWS_FORMAT = JSON_LINES


def part_name(partition: int, rows_format: RowsFormat = ROWS_FORMAT) -> str:
    """``part-00007.jsonl`` for partition 7 (relative to the output prefix)."""
    return f"part-{partition:05d}{rows_format.suffix}"


def metrics_name(partition: int) -> str:
    """``_metrics/part-00007.json`` for partition 7 (relative to the output prefix)."""
    return f"{METRICS_DIR}/part-{partition:05d}.json"


def part_partition(name: str, rows_format: RowsFormat = ROWS_FORMAT) -> int | None:
    """The partition whose rows part ``name`` (relative to the output prefix) is, else None."""
    match = rows_format.part_pattern.match(name)
    return int(match.group(1)) if match else None


def metrics_partition(name: str) -> int | None:
    """The partition whose metrics part ``name`` (relative to the output prefix) is, else None."""
    match = _METRICS_RE.match(name)
    return int(match.group(1)) if match else None


class Metric(str, Enum):
    """The fields of a metrics part (a JSON object; readers ignore fields they do not know).

    A ``str`` whose ``str()`` and format are its value, as ``enum.StrEnum`` (Python 3.11+) would
    give: the job runs on the EMR nodes' Python 3.9.
    """

    def __str__(self) -> str:  # format() and f-strings follow it too
        return self.value

    PARTITION = "partition"
    ROWS = "rows"
    PREDICTED = "predicted"
    ERRORS = "errors"
    ERRORS_BY_TYPE = "errors_by_type"
    DOWNLOAD_SECONDS = "download_seconds"
    DECODE_SECONDS = "decode_seconds"
    INFERENCE_SECONDS = "inference_seconds"
    WALL_SECONDS = "wall_seconds"
    WORKER_PEAK_RSS_MB = "worker_peak_rss_mb"
    WORKER_PEAK_ADDRESS_SPACE_MB = "worker_peak_address_space_mb"
    PRECISION = "precision"
    INT8_TOP1_AGREEMENT = "int8_top1_agreement"
    RUNTIME = "runtime"
    CONVERSION_TOP1_AGREEMENT = "conversion_top1_agreement"
    ENGINE = "engine"
    FIRST_INDEX = "first_index"
    END_INDEX = "end_index"
    FINGERPRINT = "fingerprint"
    RESUMED = "resumed"
    WORKER_ENVIRONMENT = "worker_environment"


#: The stages a partition times, each a ``<stage>_seconds`` metric.
STAGE_SECONDS: Sequence[Metric] = (
    Metric.DOWNLOAD_SECONDS,
    Metric.DECODE_SECONDS,
    Metric.INFERENCE_SECONDS,
    Metric.WALL_SECONDS,
)


def images_per_task_second(metrics: Iterable[Mapping[str, Any]]) -> float | None:
    """The measured rate of a run's partitions: rows over the sum of their ``wall_seconds`` (each
    partition is one task from its start to its last part written, model load and S3 included).

    What the pipeline's ``estimate.images_per_task_second`` models; ``None`` without any timed
    partition. A resumed partition counts with the rows and seconds of the attempt that did it.
    """
    rows = seconds = 0.0
    for m in metrics:
        rows += m.get(Metric.ROWS) or 0
        seconds += m.get(Metric.WALL_SECONDS) or 0.0
    return round(rows / seconds, 2) if seconds > 0 else None
