"""The sharded key manifest (format in docs/CONTRACTS.md): written from a listing, or validated.

The listing is streamed page by page into shards of at most ``shard_size`` keys: only one shard is
ever held in memory, and only the manifest's URI and counts leave this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from batch_inference.contract.formats import (
    MANIFEST_NAME,
    ManifestDocument,
    ManifestError,
    Shard,
    check_manifest,
    shard_name,
)

from emr_inference import s3
from emr_inference.s3 import S3Uri

if TYPE_CHECKING:  # the hook imports boto3: not when a DAG file is parsed
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManifestInfo:
    """What downstream tasks need to know about a manifest (the XCom of ``stage_manifest``)."""

    manifest_uri: str
    total: int
    shards: int
    #: bytes of the listed objects (None for a supplied manifest: its objects are not listed)
    bytes: int | None = None
    #: SHA-256 of the keys in order (of manifest.json for a supplied manifest): what was listed
    keys_sha256: str | None = None

    def as_xcom(self) -> dict[str, str | int | None]:
        """The ``{"manifest_uri", "total", "shards", "bytes", "keys_sha256"}`` XCom dict."""
        return asdict(self)


@dataclass
class Listing:
    """What :func:`matching_keys` has yielded so far: the objects' bytes, and a digest of each
    one's key, size and ETag (what the listing returns: a changed object under the same key
    changes it, at no extra request)."""

    bytes: int = 0
    _content: Any = field(default_factory=hashlib.sha256, repr=False)

    def add(self, key: str, entry: dict[str, Any]) -> None:
        """Account for the listed object ``key`` (its listing ``entry``)."""
        size = int(entry.get("Size", 0))
        self.bytes += size
        self._content.update(f"{key}\t{size}\t{entry.get('ETag', '')}\n".encode())

    @property
    def content_sha256(self) -> str:
        """Hex SHA-256 of the listed objects' keys, sizes and ETags, in order."""
        return self._content.hexdigest()


def matching_keys(
    hook: S3Hook,
    source: S3Uri,
    extensions: Iterable[str],
    sample_limit: int | None,
    listing: Listing | None = None,
) -> Iterator[str]:
    """Yield ``s3://`` URIs under ``source`` whose names end in one of ``extensions``.

    Extensions match case-insensitively (``.JPG`` is a ``.jpg``); an empty list matches every
    object; folder markers (keys ending in ``/``) never match. Stops after ``sample_limit`` keys.
    ``listing``, when given, accounts for the yielded objects (:class:`Listing`).
    """
    suffixes = tuple(ext.lower() for ext in extensions)
    count = 0
    for entry in s3.iter_objects(hook, source):
        key = entry["Key"]
        if key.endswith("/") or (suffixes and not key.lower().endswith(suffixes)):
            continue
        if sample_limit is not None and count >= sample_limit:
            return
        count += 1
        uri = f"s3://{source.bucket}/{key}"
        if listing is not None:
            listing.add(uri, entry)
        yield uri


def write_manifest(
    hook: S3Hook, source: S3Uri, keys: Iterable[str], dest: S3Uri, shard_size: int
) -> ManifestInfo:
    """Stream ``keys`` into ``dest``/shard-NNNNN.txt objects, then write ``dest``/manifest.json.

    Shards are written first and manifest.json last, so a manifest never names a missing shard.
    Shards left under ``dest`` by an earlier attempt and not part of this manifest are deleted.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size: must be at least 1, got {shard_size}")
    shards: list[Shard] = []
    batch: list[str] = []
    digest = hashlib.sha256()

    def flush() -> None:
        shard = dest.join(shard_name(len(shards)))
        s3.write_bytes(hook, shard, "".join(f"{key}\n" for key in batch).encode())
        shards.append(Shard(shard.uri, len(batch)))
        log.info("Wrote %s (%d keys)", shard.uri, len(batch))
        batch.clear()

    for key in keys:
        digest.update(f"{key}\n".encode())
        batch.append(key)
        if len(batch) == shard_size:
            flush()
    if batch:
        flush()

    total = sum(shard.count for shard in shards)
    manifest_uri = dest.join(MANIFEST_NAME)
    s3.write_json(hook, manifest_uri, ManifestDocument(total, tuple(shards), source.uri).as_json())
    current = {S3Uri.parse(shard.uri, "shard").key for shard in shards}
    stale = [
        entry["Key"]
        for entry in s3.iter_objects(hook, dest)
        if entry["Key"] not in current and entry["Key"] != manifest_uri.key
    ]
    s3.delete(hook, dest.bucket, stale)
    return ManifestInfo(manifest_uri.uri, total, len(shards), keys_sha256=digest.hexdigest())


def count_keys(keys: Iterable[str]) -> ManifestInfo:
    """What :func:`write_manifest` would say of ``keys`` (total, their SHA-256), writing nothing:
    no manifest, so ``manifest_uri`` is empty and ``shards`` 0."""
    digest, total = hashlib.sha256(), 0
    for key in keys:
        digest.update(f"{key}\n".encode())
        total += 1
    return ManifestInfo("", total, 0, keys_sha256=digest.hexdigest())


def validate_manifest(hook: S3Hook, manifest_uri: str) -> ManifestInfo:
    """Check a user-supplied manifest.json against the format
    (:func:`batch_inference.contract.formats.check_manifest`) and that its shards exist; errors
    name ``manifest_uri``."""
    uri = S3Uri.parse(manifest_uri, "manifest_uri", prefix=False)
    if not s3.exists(hook, uri):
        raise ManifestError(f"manifest_uri: {uri} does not exist")
    try:
        document = s3.read_json(hook, uri)
        manifest = check_manifest(f"manifest_uri: {uri}", document)
    except ManifestError:
        raise
    except ValueError as err:
        raise ManifestError(f"manifest_uri: {uri} is not valid JSON: {err}") from err
    for index, shard in enumerate(manifest.shards):
        field = f"manifest_uri: shards[{index}]"
        shard_uri = S3Uri.parse(shard.uri, field, prefix=False)
        if not s3.exists(hook, shard_uri):
            raise ManifestError(f"{field}: {shard_uri} does not exist")
    digest = hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())
    return ManifestInfo(
        uri.uri, manifest.total, len(manifest.shards), keys_sha256=digest.hexdigest()
    )
