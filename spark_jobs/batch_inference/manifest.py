"""The sharded key manifest (format: :mod:`batch_inference.contract.formats`): ranges, shard reads.

The driver reads only ``manifest.json`` (the shard list and counts). Partition ``p`` of ``N`` gets
manifest positions ``[p*total//N, (p+1)*total//N)`` and reads only the shards covering that range,
so the assignment is deterministic and no process ever holds the whole key list.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from batch_inference.contract.formats import ManifestError, Shard, check_manifest
from batch_inference.s3io import get_bytes, parse_s3_uri


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json``."""

    uri: str
    total: int
    shards: tuple[Shard, ...]
    source: str | None = None
    #: hex SHA-256 of the ``manifest.json`` bytes (part of the run fingerprint)
    sha256: str = ""


def parse_manifest(uri: str, body: bytes) -> Manifest:
    """Validate and parse a manifest document; errors name the bad field."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ManifestError(f"manifest {uri} is not valid JSON: {exc}") from None
    checked = check_manifest(uri, doc)
    return Manifest(
        uri=uri,
        total=checked.total,
        shards=checked.shards,
        source=checked.source,
        sha256=hashlib.sha256(body).hexdigest(),
    )


def read_manifest(client, uri: str) -> Manifest:
    """Download and parse ``manifest.json``."""
    try:
        body = get_bytes(client, parse_s3_uri(uri, "--manifest"))
    except ManifestError:
        raise
    except Exception as exc:
        raise ManifestError(f"cannot read manifest {uri}: {exc}") from None
    return parse_manifest(uri, body)


def partition_range(partition: int, partitions: int, total: int) -> tuple[int, int]:
    """Manifest positions ``[start, end)`` of ``partition`` out of ``partitions``."""
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} out of range for {partitions} partitions")
    return partition * total // partitions, (partition + 1) * total // partitions


def shards_for_range(
    shards: tuple[Shard, ...], start: int, end: int
) -> list[tuple[Shard, int, int]]:
    """The shards covering ``[start, end)``, each with the slice ``[lo, hi)`` to take from it."""
    covering = []
    offset = 0
    for shard in shards:
        lo, hi = max(start, offset), min(end, offset + shard.count)
        if lo < hi:
            covering.append((shard, lo - offset, hi - offset))
        offset += shard.count
    return covering


def iter_keys(client, manifest: Manifest, start: int, end: int) -> Iterator[str]:
    """The object URIs at manifest positions ``[start, end)``, in manifest order."""
    for shard, lo, hi in shards_for_range(manifest.shards, start, end):
        try:
            text = get_bytes(client, parse_s3_uri(shard.uri, "shard uri")).decode("utf-8")
        except Exception as exc:
            raise ManifestError(f"cannot read manifest shard {shard.uri}: {exc}") from None
        lines = text.splitlines()
        if len(lines) != shard.count:
            raise ManifestError(
                f"manifest shard {shard.uri} has {len(lines)} keys, the manifest says {shard.count}"
            )
        yield from lines[lo:hi]
