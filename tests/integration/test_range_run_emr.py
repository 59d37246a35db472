"""The EMR pipeline's DAG over a range, against moto's EMR and S3 (in-process).

What the DAG sends to EMR for a range: one RunJobFlow, one step per date with keys (named with
its date), none for an empty date; and a ``dry_run`` creates nothing. moto never finishes a
step, so ``dag.test`` marks the per-date waits and publications, and the report on them,
successful (the local backend's range test runs them for real).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tests.conftest import REPO_ROOT
from tests.support.moto_aws import REGION, use_moto_credentials

pytestmark = pytest.mark.slow

DATES = ("2026-11-01", "2026-11-02", "2026-11-03")
NOT_ON_MOTO = r"date\.(wait_for_inference_step|publish_results)|report_dates"


@pytest.fixture
def emr_dag(airflow_db, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The cifar10_resnet18 DAG with its buckets in moto; images for the 1st and 3rd date."""
    use_moto_credentials(monkeypatch)
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT", '{"conn_type": "aws", "extra": {"region_name": "us-east-1"}}'
    )
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in ("example-image-drop", "example-predictions", "example-emr-logs"):
            s3.create_bucket(Bucket=bucket)
        for date in (DATES[0], DATES[2]):
            for i in range(3):
                s3.put_object(
                    Bucket="example-image-drop", Key=f"cifar10/dt={date}/{i}.jpg", Body=b"x"
                )
        from emr_inference.factory import build_dags

        yield build_dags(REPO_ROOT / "include" / "pipelines")["cifar10_resnet18"]


def _range_conf(**extra) -> dict:
    return {"date_range": {"start": DATES[0], "end": DATES[-1]}, **extra}


def test_a_range_is_one_cluster_with_one_step_per_date(emr_dag):
    run = emr_dag.test(
        logical_date=dt.datetime(2026, 11, 5, tzinfo=dt.UTC),
        run_conf=_range_conf(),
        mark_success_pattern=NOT_ON_MOTO,
    )
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    emr = boto3.client("emr", region_name=REGION)
    (cluster,) = emr.list_clusters()["Clusters"]  # one RunJobFlow for the three dates
    assert cluster["Status"]["State"] == "TERMINATED", states  # the teardown ran
    steps = emr.list_steps(ClusterId=cluster["Id"])["Steps"]
    assert sorted(step["Name"].rsplit(" ", 1)[-1] for step in steps) == [DATES[0], DATES[2]]
    assert states[("date.submit_inference_step", 1)] == "skipped"  # the empty date
    assert run.state == "success", states


def test_a_dry_run_creates_no_cluster(emr_dag):
    run = emr_dag.test(
        logical_date=dt.datetime(2026, 11, 6, tzinfo=dt.UTC), run_conf=_range_conf(dry_run=True)
    )
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert boto3.client("emr", region_name=REGION).list_clusters()["Clusters"] == []
    assert states[("plan_run", -1)] == "success"
    assert states[("create_cluster", -1)] == "skipped"
    assert run.state == "success", states
