"""moto's in-process AWS (``mock_aws``) as the EMR tests use it: fake credentials in one region, and
no endpoint override left from the local S3 server (botocore must reach moto, not loopback)."""

from __future__ import annotations

import pytest

REGION = "us-east-1"


def use_moto_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and :data:`REGION` for boto3; the S3 endpoint overrides removed."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
