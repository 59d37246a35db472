"""Fixtures and helpers for the whole-DAG tests (``dag.test()`` of the demo pipeline).

The demo DAG runs on the local backend (a real Spark standalone cluster) against the moto S3
server; :func:`stage_demo_run` uploads a real digits model and images and returns the run's conf.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable

import psutil
import pytest

from emr_inference_tools.airflow_env import aws_connection
from emr_inference_tools.demo.images import DemoObject, upload_objects
from emr_inference_tools.demo.models import ExportedModel, train_digits_classifier, upload_model
from emr_inference_tools.local_s3 import LocalS3
from tests.conftest import REPO_ROOT

PARTITION_DATE = "2026-11-22"
INPUT_PREFIX = f"images/dt={PARTITION_DATE}"
OUTPUT_PREFIX = f"predictions/dt={PARTITION_DATE}/"


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The isolated AIRFLOW_HOME's metadata database (tests/conftest.py sets AIRFLOW_HOME)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    """The demo digits CNN, trained once per session (a few seconds)."""
    return train_digits_classifier(tmp_path_factory.mktemp("digits"), epochs=3)


@pytest.fixture
def build_demo_dag(airflow_db, s3_env: LocalS3, monkeypatch: pytest.MonkeyPatch) -> Callable:
    """``build(connection=None)``: the ``demo`` DAG as dags/ builds it, with ``aws_default``
    set to ``connection`` (Airflow's JSON connection format; default: the local S3 server)."""

    def build(connection: str | None = None):
        from emr_inference.factory import build_dags

        conn = connection or aws_connection(s3_env.endpoint_url)
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", conn)
        return build_dags(REPO_ROOT / "include" / "pipelines")["demo"]

    return build


@pytest.fixture
def demo_dag(build_demo_dag):
    """The ``demo`` DAG with ``aws_default`` on the local S3 server."""
    return build_demo_dag()


def stage_demo_run(
    client, bucket: str, model: ExportedModel, objects: Iterable[DemoObject], **conf
) -> dict:
    """Upload ``model`` and ``objects`` (under ``images/dt=2026-11-22/``) to ``bucket``.

    Returns the run conf of the demo DAG for that partition, with ``conf`` merged over it.
    """
    upload_objects(client, bucket, INPUT_PREFIX, list(objects))
    return {
        "partition_date": PARTITION_DATE,
        "input_uri": f"s3://{bucket}/images/dt={{{{ partition_date }}}}/",
        "output_uri": f"s3://{bucket}/predictions/dt={{{{ partition_date }}}}/",
        "staging_uri": f"s3://{bucket}/_staging/",
        "artifacts_uri": f"s3://{bucket}/artifacts/",
        "model": upload_model(client, model, bucket, "models"),
        **conf,
    }


def task_states(run) -> dict[str, str]:
    """``{task_id: state}`` of a DAG run."""
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def spark_processes() -> list[psutil.Process]:
    """Spark JVMs or workers started from this test process's tree."""
    found = []
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "spark" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found
