"""The whole demo DAG through ``dag.test()``: local Spark standalone backend, moto S3 server.

Builds a real digits model and real images (include/demo), runs every task of the ``demo`` DAG as
``dags/inference_pipelines.py`` defines it, and checks what was published. A second run whose
model digest is wrong makes the Spark step fail: the run fails, and the teardown
(``terminate_cluster``) still runs and leaves no process behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import psutil
import pytest

from include.airflow_env import aws_connection
from include.demo.images import corrupt_png, demo_objects, upload_objects
from include.demo.models import train_digits_classifier, upload_model

pytestmark = pytest.mark.slow

IMAGES = 24
LOGICAL_DATE = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def airflow_db() -> None:
    """The isolated AIRFLOW_HOME's metadata database (conftest sets AIRFLOW_HOME)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture
def demo_dag(airflow_db, s3_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(s3_env.endpoint_url))
    from emr_inference.factory import build_dags

    from tests.unit.airflow.test_dag import REPO

    return build_dags(REPO / "include" / "pipelines")["demo"]


@pytest.fixture
def staged(bucket, s3_env, tmp_path) -> dict:
    """A trained digits model and IMAGES images (one of them corrupt) in the local S3."""
    client = s3_env.client()
    model = upload_model(client, train_digits_classifier(tmp_path, epochs=3), bucket, "models")
    objects = demo_objects(IMAGES - 1, bad_fraction=0)
    upload_objects(client, bucket, "images/dt=2026-11-22", objects)
    client.put_object(Bucket=bucket, Key="images/dt=2026-11-22/corrupt.png", Body=corrupt_png())
    return {
        "conf": {
            "partition_date": "2026-11-22",
            "input_uri": f"s3://{bucket}/images/dt={{{{ partition_date }}}}/",
            "output_uri": f"s3://{bucket}/predictions/dt={{{{ partition_date }}}}/",
            "staging_uri": f"s3://{bucket}/_staging/",
            "artifacts_uri": f"s3://{bucket}/artifacts/",
            "model": model,
        },
        "objects": objects,
        "bucket": bucket,
    }


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _spark_processes() -> list[psutil.Process]:
    """Spark JVMs or workers started from this test process's tree."""
    found = []
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "spark" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def test_demo_dag_publishes_one_row_per_image(demo_dag, staged, s3_env):
    run = demo_dag.test(logical_date=LOGICAL_DATE, run_conf=staged["conf"])
    states = _states(run)
    assert run.state == "success", states
    assert set(states.values()) == {"success"}, states

    client, bucket = s3_env.client(), staged["bucket"]
    listing = client.list_objects_v2(Bucket=bucket, Prefix="predictions/dt=2026-11-22/")
    keys = {item["Key"] for item in listing["Contents"]}
    assert "predictions/dt=2026-11-22/_SUCCESS" in keys
    rows = []
    for key in sorted(k for k in keys if k.endswith(".jsonl")):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        rows += [json.loads(line) for line in body.splitlines() if line]
    assert len(rows) == IMAGES
    assert len({row["key"] for row in rows}) == IMAGES
    errors = [row for row in rows if row["error"]]
    assert [(row["key"].rsplit("/", 1)[-1], row["error"]["type"]) for row in errors] == [
        ("corrupt.png", "corrupt_image")
    ]
    correct = sum(
        row["top_k"][0]["label"] == str(obj.label)
        for obj in staged["objects"]
        for row in rows
        if row["key"].endswith("/" + obj.name)
    )
    assert correct >= 0.8 * (IMAGES - 1)  # a real model predicted them

    summary_key = "predictions/dt=2026-11-22/_run_summary.json"
    summary = json.loads(client.get_object(Bucket=bucket, Key=summary_key)["Body"].read())
    assert summary["rows"] == IMAGES
    assert summary["errors"] == 1
    assert summary["run_id"] == run.run_id
    assert _spark_processes() == []


def test_teardown_runs_when_the_step_fails(demo_dag, staged):
    conf = staged["conf"]
    conf["model"] = {**conf["model"], "params_sha256": "0" * 64}  # the job refuses the model
    run = demo_dag.test(logical_date=LOGICAL_DATE + dt.timedelta(days=1), run_conf=conf)
    states = _states(run)
    assert run.state == "failed", states
    assert states["wait_for_inference_step"] == "failed"
    assert states["publish_results"] == "upstream_failed"
    assert states["terminate_cluster"] == "success"
    assert _spark_processes() == []
