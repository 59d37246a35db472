"""Fixtures of the spark-submit tests of the job."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def s3(s3_server):
    """The session's moto server, with this process's environment pointed at it."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_server.env.items():
            patch.setenv(name, value)
        yield s3_server
