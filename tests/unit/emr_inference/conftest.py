"""Fixtures for the Airflow-side tests: the ``aws_default`` connection on the local S3 server."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import pytest

from emr_inference_tools.airflow_env import AWS_CONN_ID, aws_connection
from emr_inference_tools.local_s3 import LocalS3


@pytest.fixture
def aws_conn(s3_env: LocalS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """``aws_default`` as an env connection whose ``extra.endpoint_url`` is the local S3 server."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}", aws_connection(s3_env.endpoint_url))
    return AWS_CONN_ID


def put_objects(s3: LocalS3, bucket: str, items: Iterable[tuple[str, bytes]]) -> None:
    """Upload (key, body) pairs concurrently (the listing tests need thousands of objects)."""
    client = s3.client()

    def put(item: tuple[str, bytes]) -> None:
        client.put_object(Bucket=bucket, Key=item[0], Body=item[1])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, items))
