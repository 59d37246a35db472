"""A range of dates in one run of the demo DAG (``dag.test()``, local backend, moto S3 server).

Three dates on one cluster: one with images, one empty, one whose images are all corrupt (its
step fails on the error threshold). The good date publishes, the empty one is skipped, the bad
one fails alone and the run ends failed naming it; the pipeline's alerts topic (moto's SNS, an
SQS queue subscribed) gets the run's digest with every date's outcome. After the bad date's
images are fixed, a re-run of the same range redoes only that date, and sends nothing (success
alerts are off).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from emr_inference_tools.demo.images import DemoObject, corrupt_png, demo_objects, upload_objects
from tests.conftest import REPO_ROOT
from tests.integration.conftest import spark_processes, stage_demo_run
from tests.support.sns_inbox import sns_inbox

pytestmark = pytest.mark.slow

GOOD, EMPTY, BAD = "2026-11-20", "2026-11-21", "2026-11-22"
IMAGES = 12


def _states(run) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}


def _published(client, bucket: str, date: str) -> dict | None:
    """The date's _run_summary.json when its publication is complete (``_SUCCESS``)."""
    prefix = f"predictions/dt={date}/"
    keys = {
        o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    }
    if prefix + "_SUCCESS" not in keys:
        return None
    return json.loads(
        client.get_object(Bucket=bucket, Key=prefix + "_run_summary.json")["Body"].read()
    )


def _clusters(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("*/cluster.json"))


@pytest.fixture
def local_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state folder of its own for the local backend, to count the clusters a run starts."""
    state = tmp_path / "local_clusters"
    monkeypatch.setenv("EMR_INFERENCE_LOCAL_STATE", str(state))
    return state


@pytest.fixture
def alerts_topic(s3_env):
    with sns_inbox(s3_env.endpoint_url) as inbox:
        yield inbox


@pytest.fixture
def alerting_demo_dag(build_demo_dag, alerts_topic):
    """The demo pipeline with alerts on failure to ``alerts_topic``."""
    from emr_inference.config import AlertsConfig, load_pipeline
    from emr_inference.factory import build_dag

    build_demo_dag()  # the connection to the local servers
    config = load_pipeline(REPO_ROOT / "include" / "pipelines" / "demo.yaml")
    alerts = AlertsConfig(sns_topic_arn=alerts_topic.arn)
    return build_dag(config.model_copy(update={"alerts": alerts}))


def test_a_range_runs_on_one_cluster_and_dates_fail_alone(
    alerting_demo_dag, alerts_topic, bucket, s3_env, digits_model, local_state
):
    demo_dag = alerting_demo_dag
    client = s3_env.client()
    good = demo_objects(IMAGES, bad_fraction=0)
    conf = stage_demo_run(client, bucket, digits_model, [])
    upload_objects(client, bucket, f"images/dt={GOOD}", good)
    bad = [DemoObject(f"bad-{i}.png", corrupt_png(), None, "corrupt_image") for i in range(4)]
    upload_objects(client, bucket, f"images/dt={BAD}", bad)
    conf = {**conf, "partition_date": None, "date_range": {"start": GOOD, "end": BAD}}

    run = demo_dag.test(logical_date=dt.datetime(2026, 11, 25, tzinfo=dt.UTC), run_conf=conf)

    states = _states(run)
    assert run.state == "failed", states
    # one cluster for the whole range, started and stopped once
    assert len(_clusters(local_state)) == 1
    assert states[("create_cluster", -1)] == "success"
    assert states[("terminate_cluster", -1)] == "success"
    assert spark_processes() == []
    # the date group is mapped over the three dates, in date order: good, empty, bad
    assert states[("date.publish_results", 0)] == "success"
    assert states[("date.submit_inference_step", 1)] == "skipped"
    assert states[("date.publish_results", 1)] == "skipped"
    assert states[("date.wait_for_inference_step", 2)] == "failed"
    assert states[("date.publish_results", 2)] == "upstream_failed"
    assert states[("report_dates", -1)] == "failed"
    steps = sorted(p.name for p in next(local_state.iterdir()).glob("steps/*"))
    assert len(steps) == 2  # the empty date got no step

    summary = _published(client, bucket, GOOD)
    assert summary is not None and summary["rows"] == IMAGES
    assert summary["partition_date"] == GOOD
    assert summary["estimate"]["range_share_cluster_seconds"] > 0
    assert _published(client, bucket, EMPTY) is None
    assert _published(client, bucket, BAD) is None

    # the owner heard of it: the digest names every date's outcome and the failure's reason
    ((subject, message),) = alerts_topic.read()
    assert subject == f"demo {GOOD}..{BAD}: failed: 1 of 2 dates not published"
    assert (
        f"dates: published {GOOD}; empty {EMPTY}; already_published -; planned_only -; failed {BAD}"
    ) in message
    (sensor,) = [line for line in message.splitlines() if "date.wait_for_inference_step" in line]
    assert sensor.startswith(f"  date.wait_for_inference_step ({BAD}) failed: ")
    assert "error rate 100.00% (4 of 4 rows)" in sensor  # the driver log's last line
    assert f"images: {IMAGES} rows published, 0 of them error rows" in message
    assert "cluster: stopped by terminate_cluster" in message

    # the bad date's images fixed (same keys), the same range again: only that date is redone
    upload_objects(
        client,
        bucket,
        f"images/dt={BAD}",
        [DemoObject(o.name, g.body, g.label, None) for o, g in zip(bad, good, strict=False)],
    )
    rerun = demo_dag.test(logical_date=dt.datetime(2026, 11, 26, tzinfo=dt.UTC), run_conf=conf)
    states = _states(rerun)
    assert rerun.state == "success", states
    assert states[("date.submit_inference_step", 0)] == "skipped"  # published by the first run
    assert states[("date.publish_results", 2)] == "success"
    assert _published(client, bucket, GOOD)["run_id"] == summary["run_id"]  # not republished
    redone = _published(client, bucket, BAD)
    assert redone is not None and redone["rows"] == len(bad) and redone["errors"] == 0
    assert len(_clusters(local_state)) == 2  # one more cluster, for the one date
    assert os.listdir(local_state)  # state kept for the post-mortem, processes gone
    assert spark_processes() == []
    assert alerts_topic.read() == []  # a green run, success alerts off
