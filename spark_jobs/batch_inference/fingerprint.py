"""The run fingerprint: what a partition's output depends on, so a re-run can resume safely.

Two runs with the same fingerprint write the same rows for the same manifest positions, whatever
their batch size, prefetch or cluster shape. It covers the manifest (SHA-256 of ``manifest.json``;
the shards it lists are immutable per run), the model's files (per file, the given SHA-256 or else
the object's ETag) and every job setting the rows depend on (the contract's ``ROW_SETTINGS``: the
model's URIs, name and input, the preprocessing, ``top_k``, precision and the int8 gate, the run id
written into every row, the encryption the objects are written with). Partitioning is not in it: a
partition is only reused when its stored ``[first_index, end_index)`` matches too.
"""

from __future__ import annotations

import hashlib
import json

from batch_inference.config import JobConfig, ModelSpec
from batch_inference.contract.settings import ROW_SETTINGS, fingerprinted
from batch_inference.errors import ModelLoadError
from batch_inference.s3io import parse_s3_uri


def model_identity(client, spec: ModelSpec) -> dict[str, str]:
    """Per model file, ``sha256:<hex>`` when a digest is given, else ``etag:<ETag>``.

    One ``HeadObject`` per file without a digest, on the driver.
    """
    identity = {}
    for part in ("symbol", "params", "labels", "onnx"):
        uri, digest = getattr(spec, f"{part}_uri"), getattr(spec, f"{part}_sha256")
        if uri is None:  # no ONNX file (runtime mxnet), or no MXNet files (the pipeline's ONNX)
            continue
        if digest:
            identity[part] = f"sha256:{digest.strip().lower()}"
            continue
        target = parse_s3_uri(uri, f"--model-{part}")
        try:
            head = client.head_object(Bucket=target.bucket, Key=target.key)
        except Exception as exc:
            raise ModelLoadError(f"cannot read --model-{part} {uri}: {exc}") from None
        etag = head["ETag"].strip('"')
        identity[part] = f"etag:{etag}"
    return identity


def run_fingerprint(config: JobConfig, manifest_sha256: str, model: dict[str, str]) -> str:
    """Hex SHA-256 of everything that changes a partition's rows (see the module docstring)."""
    document = {
        "manifest_sha256": manifest_sha256,
        "model_files": model,
        "settings": fingerprinted(ROW_SETTINGS, lambda setting: setting.job_value(config)),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
