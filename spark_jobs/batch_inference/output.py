"""Output rows and the per-partition metrics (docs/CONTRACTS.md, "Staged output")."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from batch_inference.config import Encryption
from batch_inference.errors import OutputWriteError
from batch_inference.s3io import S3Uri, put_bytes

METRICS_DIR = "_metrics"


def part_name(partition: int) -> str:
    """``part-00007.jsonl`` for partition 7."""
    return f"part-{partition:05d}.jsonl"


def metrics_name(partition: int) -> str:
    """``_metrics/part-00007.json`` for partition 7."""
    return f"{METRICS_DIR}/part-{partition:05d}.json"


def prediction_row(key: str, top: list[dict], model: str, run_id: str) -> dict:
    """A row for an image the model classified."""
    return {"key": key, "top_k": top, "model": model, "run_id": run_id, "error": None}


def error_row(key: str, error: dict[str, str], model: str, run_id: str) -> dict:
    """A row for an image that could not be classified (``error`` has ``type`` and ``message``)."""
    return {"key": key, "top_k": [], "model": model, "run_id": run_id, "error": error}


@dataclass
class PartitionMetrics:
    """Counters and timings of one partition; :meth:`as_dict` is the metrics part."""

    partition: int
    first_index: int
    end_index: int
    rows: int = 0
    predicted: int = 0
    errors: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    download_seconds: float = 0.0
    decode_seconds: float = 0.0
    inference_seconds: float = 0.0
    wall_seconds: float = 0.0

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
        """The contract's metrics object (seconds rounded to milliseconds)."""
        return {
            "partition": self.partition,
            "rows": self.rows,
            "predicted": self.predicted,
            "errors": self.errors,
            "errors_by_type": dict(sorted(self.errors_by_type.items())),
            "download_seconds": round(self.download_seconds, 3),
            "decode_seconds": round(self.decode_seconds, 3),
            "inference_seconds": round(self.inference_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "first_index": self.first_index,
            "end_index": self.end_index,
        }


def encode_rows(rows: list[dict]) -> bytes:
    """JSON Lines: one compact object per line, each line ``\\n``-terminated."""
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows).encode("utf-8")


def write_partition(
    client,
    output: S3Uri,
    partition: int,
    rows: list[dict],
    metrics: dict,
    encryption: Encryption,
) -> None:
    """Write the rows part, then the metrics part; one ``PutObject`` each (atomic, replaceable)."""
    extra = encryption.put_object_args()
    for name, body, content_type in (
        (part_name(partition), encode_rows(rows), "application/x-ndjson"),
        (metrics_name(partition), json.dumps(metrics).encode("utf-8"), "application/json"),
    ):
        target = output.join(name)
        try:
            put_bytes(client, target, body, content_type, extra)
        except Exception as exc:
            raise OutputWriteError(f"cannot write {target}: {exc}") from None
