"""The local backend's step sensor on a real step process (a stand-in for spark-submit that never
ends): it waits while the step runs within step_timeout_seconds of its own start, and stops and
fails a step that runs longer, as the EMR sensor cancels one (no Spark needed)."""

from __future__ import annotations

import subprocess
import time

import psutil
import pytest
from airflow.sdk.exceptions import AirflowFailException
from emr_inference.local.cluster import LocalCluster, ProcessRecord
from emr_inference.local.operators import LocalStepSensor

from tests.unit.emr_inference.pipeline_fixtures import resolved_request


@pytest.fixture
def stuck_step(tmp_path, monkeypatch):
    """A local cluster whose step-001 is a process that would run for ever."""
    monkeypatch.setenv("EMR_INFERENCE_LOCAL_STATE", str(tmp_path))
    cluster = LocalCluster("local-unit", str(tmp_path / "local-unit"))
    cluster.path.mkdir()
    (cluster.path / "steps" / "step-001").mkdir(parents=True)
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    cluster.processes.append(
        ProcessRecord("step-001", proc.pid, psutil.Process(proc.pid).create_time())
    )
    cluster.save()
    yield proc
    proc.kill()
    proc.wait()


def sensor(timeout: float) -> LocalStepSensor:
    return LocalStepSensor(
        task_id="wait_for_inference_step",
        request=resolved_request().as_json(),
        manifest={"total": 10},
        cluster_id="local-unit",
        step_id="step-001",
        aws_conn_id=None,
        timeout=timeout,
    )


def test_a_step_within_its_timeout_is_waited_for(stuck_step):
    assert sensor(timeout=60).poke({}) is False
    assert stuck_step.poll() is None  # still running


def test_a_step_past_its_own_timeout_is_stopped_and_fails(stuck_step):
    time.sleep(1.5)
    with pytest.raises(
        AirflowFailException,
        match=r"step-001 has been running for \d s, more than "
        r"step_timeout_seconds \(1 s\) from its own start",
    ):
        sensor(timeout=1).poke({})
    assert stuck_step.wait(timeout=20) is not None  # killed
