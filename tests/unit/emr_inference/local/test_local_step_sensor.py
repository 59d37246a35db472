"""The local backend's step sensor on a real step process (a stand-in for spark-submit): it waits
while the step runs within step_timeout_seconds of its own start, and stops and fails a step that
runs longer, as the EMR sensor cancels one; an ended step completes or fails by its exit code
(no Spark needed)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest
from airflow.sdk.exceptions import AirflowFailException
from emr_inference.local.cluster import LocalCluster, ProcessRecord
from emr_inference.local.operators import LocalStepSensor

from tests.unit.emr_inference.pipeline_fixtures import resolved_request


def record_step(state: Path, proc: subprocess.Popen) -> Path:
    """Record the cluster local-unit under ``state`` with ``proc`` as its step-001; returns the
    step's folder."""
    cluster = LocalCluster("local-unit", str(state / "local-unit"))
    (cluster.path / "steps" / "step-001").mkdir(parents=True)
    cluster.processes.append(
        ProcessRecord("step-001", proc.pid, psutil.Process(proc.pid).create_time())
    )
    cluster.save()
    return cluster.path / "steps" / "step-001"


@pytest.fixture
def stuck_step(tmp_path, monkeypatch):
    """A local cluster whose step-001 is a process that would run for ever."""
    monkeypatch.setenv("EMR_INFERENCE_LOCAL_STATE", str(tmp_path))
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    record_step(tmp_path, proc)
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


@pytest.mark.parametrize(
    ("exit_code", "verdict"),
    [("0", None), ("3", r"failed \(exit code 3\)"), (None, "was killed")],
)
def test_an_ended_step_completes_or_fails_with_its_driver_log_tail(
    tmp_path, monkeypatch, exit_code: str | None, verdict: str | None
):
    monkeypatch.setenv("EMR_INFERENCE_LOCAL_STATE", str(tmp_path))
    proc = subprocess.Popen(["true"])
    step_dir = record_step(tmp_path, proc)  # recorded before it is reaped
    proc.wait()
    (step_dir / "driver.log").write_text("starting\nTraceback: the job's last words\n")
    if exit_code is not None:  # none: killed before the wrapper could write one
        (step_dir / "exit_code").write_text(exit_code + "\n")

    if verdict is None:
        assert sensor(timeout=60).poke({}) is True
        return
    with pytest.raises(AirflowFailException, match=verdict) as failure:
        sensor(timeout=60).poke({})
    assert str(failure.value).endswith("last lines:\nstarting\nTraceback: the job's last words")
