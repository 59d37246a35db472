"""Shared fixtures: a real S3 endpoint (moto's server on loopback) and an isolated Airflow home."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Airflow reads its configuration at import time: isolate it before any test imports airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW_HOME", str(_AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO_ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
# Spark's Python workers must run this interpreter (the one with mxnet, numpy 1.23.5, ...).
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

from emr_inference_tools.local_s3 import LocalS3, start_local_s3  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Record the AWS calls of the IAM policy tests' files as they run (tests/support/aws_calls.py),
    unless this session is itself such a recording (``-p tests.support.aws_calls``)."""
    if os.environ.get("AWS_CALLS_FILE"):
        return
    from tests.support.aws_calls import SessionRecording

    calls_file = Path(tempfile.mkdtemp(prefix="aws-calls-")) / "calls.jsonl"
    calls_file.touch()
    config.pluginmanager.register(SessionRecording(calls_file), "aws_session_recording")


#: Reuse a running S3 server instead of starting one (``make mutate`` runs one pytest session per
#: mutant; starting moto's server each time would cost more than most tests).
SHARED_S3_ENV = "TEST_SHARED_S3_ENDPOINT"


@pytest.fixture(scope="session")
def s3_server() -> LocalS3:
    """One moto S3 server (a real HTTP endpoint on 127.0.0.1) for the whole test session."""
    if os.environ.get(SHARED_S3_ENV):
        yield LocalS3(os.environ[SHARED_S3_ENV])  # not ours to stop
        return
    server = start_local_s3()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch) -> LocalS3:
    """Point boto3 in this process (and child processes) at the local S3 server."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
def bucket(s3_env: LocalS3) -> str:
    """A fresh, empty bucket on the local S3 server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_env.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def node_twin():
    """The EMR node twin of the default release (``emr_inference_tools.node_twin``): built once,
    cached in
    build/node-twin/. Where the node's CPython is missing this fails (never skips), saying how
    to install it: the job must be tested on the interpreter the nodes run."""
    from emr_inference_tools.node_twin import NodeTwinError, build_twin

    try:
        return build_twin(log=lambda message: print(f"[twin] {message}"))
    except NodeTwinError as error:
        pytest.fail(f"the node twin cannot be built: {error}", pytrace=False)
