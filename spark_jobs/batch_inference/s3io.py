"""S3 access for the driver and the partitions: one tuned client, get and put (URIs: the contract's
:mod:`batch_inference.contract.s3`, read leniently by :func:`parse_s3_uri`).

Clients are plain ``boto3`` clients, so the endpoint comes from the usual configuration: on EMR the
instance profile and region, locally ``AWS_ENDPOINT_URL_S3`` (honoured by botocore itself). Retries
use botocore's ``standard`` mode: bounded retries with jittered exponential backoff on throttling
(``SlowDown``) and 5xx, per request. Not ``adaptive``: its client-side rate limiter is per client,
i.e. per partition, and after a ``SlowDown`` it slows every request of the partition, not just the
throttled one (20 downloads with one ``SlowDown`` each took 33 s instead of 4.6 s in
``tests/unit/job/test_s3_faults.py``).
"""

from __future__ import annotations

import logging

from batch_inference.contract.s3 import S3Uri
from batch_inference.contract.s3 import parse_s3_uri as parse_s3_uri  # the job's URI rule

log = logging.getLogger(__name__)

# botocore's ``max_attempts``: retries after the first request (9 requests at most).
MAX_ATTEMPTS = 8


def make_client(max_pool_connections: int = 10):
    """A boto3 S3 client with bounded standard retries and a pool sized for the prefetch threads.

    boto3 clients are thread-safe, so a partition makes one and shares it among its threads.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=max(10, max_pool_connections),
        connect_timeout=10,
        read_timeout=60,
    )
    return boto3.session.Session().client("s3", config=config)


def get_bytes(client, uri: S3Uri) -> bytes:
    """The whole object's body (raises botocore's ``ClientError`` on a missing key)."""
    response = client.get_object(Bucket=uri.bucket, Key=uri.key)
    return response["Body"].read()


def put_bytes(
    client,
    uri: S3Uri,
    body: bytes,
    content_type: str,
    extra_args: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write ``body`` with one ``PutObject`` (atomic: readers see the old or the new object).

    ``metadata`` becomes the object's user metadata (``x-amz-meta-*``).
    """
    client.put_object(
        Bucket=uri.bucket,
        Key=uri.key,
        Body=body,
        ContentType=content_type,
        Metadata=metadata or {},
        **(extra_args or {}),
    )
    log.debug("wrote %s (%d bytes)", uri, len(body))


def is_missing_key(error: Exception) -> bool:
    """True when a botocore ``ClientError`` says the object (or its bucket) does not exist."""
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NoSuchBucket", "NotFound")
