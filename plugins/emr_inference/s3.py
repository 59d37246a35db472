"""S3 URIs and the few S3 operations the pipeline needs, built on the Amazon provider's S3Hook.

Every call goes through ``S3Hook(aws_conn_id)``: the Airflow connection decides credentials,
region and endpoint (``extra.endpoint_url`` points it at a local S3 server). Objects the pipeline
writes are encrypted as the request's ``sse`` asks: :func:`s3_hook` puts the SSE arguments into
the hook's ``extra_args`` (used by ``load_bytes``/``load_file``), :func:`copy` passes them to
``copy_object``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import NO_ACL, S3Hook

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")  # legal in S3 keys, never in ours: log/CLI safety
MAX_KEY_BYTES = 1024
SSE_MODES = ("none", "AES256", "aws:kms")


class S3UriError(ValueError):
    """An S3 URI in the request is malformed; the message names the field."""


@dataclass(frozen=True)
class S3Uri:
    """A validated ``s3://bucket/key`` URI. A key ending in ``/`` is a prefix."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str, field: str, *, prefix: bool | None = None) -> S3Uri:
        """Parse and strictly validate ``uri``; errors name ``field``.

        :param prefix: True requires a prefix (key ending in ``/``, or empty: the whole bucket),
            False requires an object key, None accepts either.
        """
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise S3UriError(f"{field}: expected an s3://bucket/key URI, got {uri!r}")
        bucket, _, key = uri[len("s3://") :].partition("/")
        _check_bucket(bucket, field, uri)
        if _CONTROL_RE.search(key):
            raise S3UriError(f"{field}: key of {uri!r} contains a control character")
        if len(key.encode()) > MAX_KEY_BYTES:
            raise S3UriError(f"{field}: key of {uri!r} is longer than {MAX_KEY_BYTES} bytes")
        segments = key.split("/")
        if key.endswith("/"):
            segments = segments[:-1]
        if key and any(segment in ("", ".", "..") for segment in segments):
            raise S3UriError(f"{field}: key of {uri!r} has an empty, '.' or '..' path segment")
        is_prefix = key == "" or key.endswith("/")
        if prefix is True and not is_prefix:
            raise S3UriError(f"{field}: {uri!r} must be a prefix ending in '/'")
        if prefix is False and is_prefix:
            raise S3UriError(f"{field}: {uri!r} must name an object, not a prefix")
        return cls(bucket, key)

    @property
    def uri(self) -> str:
        """The ``s3://bucket/key`` string."""
        return f"s3://{self.bucket}/{self.key}"

    def join(self, *names: str) -> S3Uri:
        """The URI of ``names`` under this prefix (``a/`` joined with ``b``, ``c`` is ``a/b/c``)."""
        if self.key and not self.key.endswith("/"):
            raise S3UriError(f"cannot join below object key {self.uri!r}: not a prefix")
        return S3Uri(self.bucket, self.key + "/".join(name.strip("/") for name in names))

    def __str__(self) -> str:
        return self.uri


def _check_bucket(bucket: str, field: str, uri: str) -> None:
    """Apply the S3 bucket naming rules (general purpose buckets)."""
    if (
        not _BUCKET_RE.fullmatch(bucket)  # match() lets "bucket\n" through
        or ".." in bucket
        or ".-" in bucket
        or "-." in bucket
        or _IPV4_RE.match(bucket)
        or bucket.startswith(("xn--", "sthree-"))
        or bucket.endswith(("-s3alias", "--ol-s3"))
    ):
        raise S3UriError(f"{field}: {bucket!r} in {uri!r} is not a valid S3 bucket name")


def sse_extra_args(sse: Mapping[str, Any] | None) -> dict[str, str]:
    """Turn the request's ``sse`` into S3 write parameters (``ExtraArgs`` / ``PutObject`` kwargs).

    ``{"mode": "none"}`` or ``None`` gives ``{}``; ``AES256`` gives ``ServerSideEncryption``;
    ``aws:kms`` adds ``SSEKMSKeyId`` when a key id is given (else the account's default KMS key).
    """
    mode = (sse or {}).get("mode") or "none"
    kms_key_id = (sse or {}).get("kms_key_id")
    if mode not in SSE_MODES:
        raise ValueError(f"sse.mode: expected one of {SSE_MODES}, got {mode!r}")
    if kms_key_id and mode != "aws:kms":
        raise ValueError(f"sse.kms_key_id: only valid with sse.mode 'aws:kms', not {mode!r}")
    if mode == "none":
        return {}
    args = {"ServerSideEncryption": mode}
    if kms_key_id:
        args["SSEKMSKeyId"] = kms_key_id
    return args


def s3_hook(aws_conn_id: str | None, sse: Mapping[str, Any] | None = None) -> S3Hook:
    """An S3Hook for the connection whose uploads carry the request's SSE arguments."""
    return S3Hook(aws_conn_id=aws_conn_id, extra_args=sse_extra_args(sse))


def iter_objects(hook: S3Hook, prefix: S3Uri, page_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Yield the listing entries (``Key``, ``Size``, ...) under ``prefix``, page by page."""
    yield from hook.iter_file_metadata(
        prefix=prefix.key, bucket_name=prefix.bucket, page_size=page_size
    )


def exists(hook: S3Hook, uri: S3Uri) -> bool:
    """Whether the object exists."""
    return hook.head_object(key=uri.key, bucket_name=uri.bucket) is not None


def read_text(hook: S3Hook, uri: S3Uri) -> str:
    """The object's content as UTF-8 text."""
    return hook.read_key(key=uri.key, bucket_name=uri.bucket)


def read_json(hook: S3Hook, uri: S3Uri) -> Any:
    """The object's content parsed as JSON."""
    return json.loads(read_text(hook, uri))


def write_bytes(hook: S3Hook, uri: S3Uri, data: bytes) -> None:
    """Put ``data`` at ``uri`` (one PutObject, replacing any object there)."""
    hook.load_bytes(data, key=uri.key, bucket_name=uri.bucket, replace=True)


def write_json(hook: S3Hook, uri: S3Uri, value: Any) -> None:
    """Put ``value`` as indented JSON at ``uri``."""
    write_bytes(hook, uri, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def copy(hook: S3Hook, source: S3Uri, dest: S3Uri) -> None:
    """Server-side copy, re-encrypting the destination with the hook's SSE arguments."""
    hook.copy_object(
        source_bucket_key=source.key,
        dest_bucket_key=dest.key,
        source_bucket_name=source.bucket,
        dest_bucket_name=dest.bucket,
        acl_policy=NO_ACL,  # buckets with ACLs disabled (the S3 default) reject a canned ACL
        **hook.extra_args,
    )


def delete(hook: S3Hook, bucket: str, keys: list[str]) -> None:
    """Delete ``keys`` from ``bucket`` (batched by the hook, 1000 per request)."""
    if keys:
        hook.delete_objects(bucket=bucket, keys=keys)
