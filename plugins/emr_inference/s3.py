"""The few S3 operations the pipeline needs, built on the Amazon provider's S3Hook; URIs and
encryption are the contract's (:mod:`batch_inference.contract.s3`).

Every call goes through ``S3Hook(aws_conn_id)``: the Airflow connection decides credentials,
region and endpoint (``extra.endpoint_url`` points it at a local S3 server). Objects the pipeline
writes are encrypted as the request's ``sse`` asks: :func:`s3_hook` puts the SSE arguments into
the hook's ``extra_args`` (used by ``load_bytes``/``load_file``), :func:`copy` passes them to
``copy_object``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from batch_inference.contract.s3 import S3Uri as S3Uri  # the Airflow side's URI type
from batch_inference.contract.s3 import S3UriError as S3UriError
from batch_inference.contract.s3 import encryption_args

if TYPE_CHECKING:  # the hook imports boto3: not when a DAG file is parsed
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook


def sse_extra_args(sse: Mapping[str, Any] | None) -> dict[str, str]:
    """The request's ``sse`` (``{"mode", "kms_key_id"}`` or None) as S3 write parameters
    (:func:`batch_inference.contract.s3.encryption_args`)."""
    return encryption_args((sse or {}).get("mode"), (sse or {}).get("kms_key_id"))


def s3_hook(aws_conn_id: str | None, sse: Mapping[str, Any] | None = None) -> S3Hook:
    """An S3Hook for the connection whose uploads carry the request's SSE arguments."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

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
    from airflow.providers.amazon.aws.hooks.s3 import NO_ACL

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
