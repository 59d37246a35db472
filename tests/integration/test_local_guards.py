"""The local backend's guards against clusters outliving their run, on real Spark clusters:

* a cleared run (same run id, so the same cluster id) starts its cluster and step again;
* the idle watchdog spares a cluster while a step runs and stops it once idle;
* the sweeper stops the cluster of a finished run and keeps the one of a running run.
"""

from __future__ import annotations

import time

import pytest
from emr_inference.local.cluster import LocalCluster, start_cluster, stop_step, tagged_processes
from emr_inference.local.operators import LocalTerminateClusterOperator
from emr_inference.operators.sweeper import SweepClustersOperator
from emr_inference.s3 import s3_hook
from emr_inference.staged_output import rows_done

from tests.integration import test_local_backend
from tests.integration.test_local_backend import (
    JOBS,
    _run_step,
    _sense,
    _submit,
    _terminate_and_check,
)
from tests.unit.emr_inference.test_sweeper import FakeTI

pytestmark = pytest.mark.slow

local_env = test_local_backend.local_env  # the same fixture: S3 connection, state in tmp_path

SMALL = {"workers": 1, "worker_cores": 1, "worker_memory": "512m"}


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.5)


def test_a_cleared_run_starts_its_cluster_and_step_again(local_env: dict) -> None:
    """Run, teardown, clear, run again on the same run id (issue #16.1): the second cluster has
    the same id and state dir, its step is step-002 (step-001's logs are kept), the output is
    written again, and nothing is left running."""
    output = "s3://{}/_staging/local_test/run/output/".format(local_env["bucket"])
    for attempt, expected_step in ((1, "step-001"), (2, "step-002")):
        cluster_id, cluster, sensor = _run_step(local_env, JOBS / "tiny_job.py")
        try:
            assert sensor.step_id == expected_step, attempt
            assert _sense(sensor)
            assert rows_done(s3_hook("aws_default"), output) == 7
        finally:
            _terminate_and_check(local_env, LocalCluster.load(cluster_id))
        if attempt == 1:
            local_env["client"].delete_object(
                Bucket=local_env["bucket"], Key="_staging/local_test/run/output/part-00000.jsonl"
            )
    assert (cluster.path / "steps" / "step-001" / "driver.log").exists()
    # the teardown is idempotent: a retry after it worked finds nothing to do
    LocalTerminateClusterOperator(task_id="terminate_cluster", cluster_id=cluster_id).execute({})


def test_the_watchdog_spares_a_busy_cluster_and_stops_an_idle_one(local_env: dict) -> None:
    cluster = start_cluster("local-watchdog-test", idle_timeout=3, **SMALL)
    try:
        assert [p.name for p in cluster.processes] == ["master", "worker-0", "watchdog"]
        step_id = _submit(local_env, cluster.cluster_id, JOBS / "sleeping_job.py").execute({})
        time.sleep(10)  # three idle timeouts: a running step keeps the cluster
        cluster = LocalCluster.load(cluster.cluster_id)
        assert cluster.running_steps() == [step_id]
        assert cluster.is_running()

        stop_step(cluster, step_id)  # the step ends: the cluster is idle from now on
        _wait_until(lambda: not tagged_processes(cluster.cluster_id), 60, "the cluster stopped")
        log = (cluster.path / "logs" / "watchdog.log").read_text()
        assert "has had no running step for" in log and "stopping it" in log
        assert "watchdog exits: stopped by the idle timeout" in log
    finally:
        LocalTerminateClusterOperator(
            task_id="terminate_cluster", cluster_id=cluster.cluster_id
        ).execute({})


def test_the_sweeper_stops_the_cluster_of_a_finished_run_only(local_env: dict) -> None:
    finished = start_cluster("local-sweep-finished", dag_id="demo", run_id="r-done", **SMALL)
    running = start_cluster("local-sweep-running", dag_id="demo", run_id="r-live", **SMALL)
    try:
        runs = {("demo", "r-done"): "failed", ("demo", "r-live"): "running"}
        sweeper = SweepClustersOperator(
            task_id="sweep_clusters", targets=[{"backend": "local", "state_dir": ""}]
        )

        assert sweeper.execute({"params": {"dry_run": True}, "ti": FakeTI(runs)}) == [
            {"backend": "local", "cluster_id": finished.cluster_id, "dag_id": "demo",
             "run_id": "r-done", "stop": True, "reason": "its run 'r-done' is failed",
             "dry_run": True}
        ]  # fmt: skip
        assert tagged_processes(finished.cluster_id)  # a dry run stops nothing

        stopped = sweeper.execute({"params": {"dry_run": False}, "ti": FakeTI(runs)})

        assert [item["cluster_id"] for item in stopped] == [finished.cluster_id]
        assert tagged_processes(finished.cluster_id) == []
        assert LocalCluster.load(running.cluster_id).is_running()
        # the run ends later: the next sweep stops its cluster too
        runs[("demo", "r-live")] = "success"
        stopped = sweeper.execute({"params": {"dry_run": False}, "ti": FakeTI(runs)})
        assert [item["cluster_id"] for item in stopped] == [running.cluster_id]
        assert tagged_processes(running.cluster_id) == []
    finally:
        for cluster in (finished, running):
            LocalTerminateClusterOperator(
                task_id="terminate_cluster", cluster_id=cluster.cluster_id
            ).execute({})


def test_a_retried_create_adopts_a_cluster_without_its_watchdog(local_env: dict) -> None:
    """create_cluster crashed after the workers started and before the watchdog: its retry finds
    the cluster running and starts the watchdog it lacks (nothing else would stop it), once."""
    cluster = start_cluster("local-adopted", **SMALL)  # no idle timeout: no watchdog
    # (that the watchdog then stops an idle cluster is the test above)
    try:
        assert [p.name for p in cluster.live_processes()] == ["master", "worker-0"]
        adopted = start_cluster("local-adopted", idle_timeout=3, **SMALL)
        assert adopted.processes[:2] == cluster.processes[:2]  # the same master and worker
        assert [p.name for p in adopted.live_processes()] == ["master", "worker-0", "watchdog"]
        again = start_cluster("local-adopted", idle_timeout=3, **SMALL)
        assert [p.name for p in again.live_processes()].count("watchdog") == 1
    finally:
        LocalTerminateClusterOperator(
            task_id="terminate_cluster", cluster_id=cluster.cluster_id
        ).execute({})
