"""S3 URIs and the encryption of written objects, as both sides use them.

One URI type, :class:`S3Uri`, read by two rules:

* :meth:`S3Uri.parse`, strict: for URIs people write (pipeline files, Params, a user's manifest).
  ``s3://`` only, a valid bucket name, no empty, ``.`` or ``..`` key segment, no control
  character, at most 1024 key bytes; optionally a prefix (``/``-terminated) or an object;
* :func:`parse_s3_uri`, lenient: for what the job is handed and reads (its arguments, the
  manifest's keys): ``s3a://`` and ``s3n://`` too (Hadoop's names), and any key S3 can hold (a
  listed key may have empty segments); ``prefix=True`` reads the key as a prefix (``/`` added).

:meth:`S3Uri.join` builds URIs below a prefix only. The encryption of every object either side
writes is :func:`encryption_args` (``PutObject`` / ``ExtraArgs`` parameters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from batch_inference.contract.settings import SSE_MODES

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")  # legal in S3 keys, never in ours: log/CLI safety
MAX_KEY_BYTES = 1024
#: Schemes :func:`parse_s3_uri` accepts (Hadoop names S3 ``s3a`` and ``s3n``).
LENIENT_SCHEMES = ("s3", "s3a", "s3n")


class S3UriError(ValueError):
    """An S3 URI is malformed; the message names the field."""


@dataclass(frozen=True)
class S3Uri:
    """An ``s3://bucket/key`` URI. A key that is empty or ends in ``/`` is a prefix."""

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


def parse_s3_uri(uri: str, what: str = "URI", *, prefix: bool = False) -> S3Uri:
    """Parse ``s3://bucket/key`` leniently (see the module docstring); ``what`` names the field.

    :param prefix: read the key as a prefix: ``/`` is added when it lacks one.
    :raises ValueError: (not :class:`S3UriError`: an error row names the class, and always has)
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in LENIENT_SCHEMES:
        raise ValueError(f"{what} must be an s3:// URI, got {uri!r}")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"{what} has no bucket: {uri!r}")
    if prefix and key and not key.endswith("/"):
        key += "/"
    return S3Uri(bucket, key)


def encryption_args(mode: str | None, kms_key_id: str | None = None) -> dict[str, str]:
    """The S3 write parameters (``PutObject`` kwargs, ``ExtraArgs``) of an encryption setting.

    ``none`` (or no mode) gives ``{}``: the bucket's default; ``AES256`` gives
    ``ServerSideEncryption``; ``aws:kms`` adds ``SSEKMSKeyId`` when a key id is given (else the
    account's default KMS key). Raises ``ValueError`` for another mode, or a key id without
    ``aws:kms``.
    """
    mode = mode or "none"
    if mode not in SSE_MODES:
        raise ValueError(f"sse.mode: expected one of {', '.join(SSE_MODES)}, got {mode!r}")
    if kms_key_id and mode != "aws:kms":
        raise ValueError("kms_key_id is only valid with mode 'aws:kms'")
    if mode == "none":
        return {}
    args = {"ServerSideEncryption": mode}
    if kms_key_id:
        args["SSEKMSKeyId"] = kms_key_id
    return args
