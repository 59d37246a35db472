"""The local backend end to end at the process level: a real Spark standalone master and worker,
real spark-submit steps, the sensor's verdicts, and no process left after terminate.

S3 is the moto server, reached only through the Airflow connection: this process's environment
has no AWS variables, so the job can read and write S3 only if the operators passed the
connection's endpoint and credentials to the Spark processes' environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from airflow.sdk.exceptions import AirflowFailException
from emr_inference.artifacts import stage_artifacts
from emr_inference.local.cluster import (
    CLUSTER_TAG_ENV,
    LocalCluster,
    cluster_id_for,
    tagged_processes,
)
from emr_inference.local.operators import (
    LocalCreateClusterOperator,
    LocalStepSensor,
    LocalSubmitStepOperator,
    LocalTerminateClusterOperator,
)
from emr_inference.s3 import s3_hook
from emr_inference.staged_output import rows_done

from tests.unit.emr_inference.pipeline_fixtures import date_request

pytestmark = pytest.mark.slow

JOBS = Path(__file__).parent / "local_jobs"
SECRET = "local-backend-secret-not-in-any-command-line"


@pytest.fixture
def local_env(s3_env, bucket, tmp_path, monkeypatch) -> dict:
    """A connection with a recognisable secret, state under tmp_path, no AWS_* in os.environ."""
    monkeypatch.setenv("EMR_INFERENCE_LOCAL_STATE", str(tmp_path / "clusters"))
    connection = {
        "conn_type": "aws",
        "login": "AKIALOCALBACKEND",
        "password": SECRET,
        "extra": {"endpoint_url": s3_env.endpoint_url, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    for name in s3_env.env:
        monkeypatch.delenv(name)
    client = s3_env.client()
    keys = [f"s3://{bucket}/images/{i}.jpg" for i in range(7)]
    client.put_object(Bucket=bucket, Key="m/shard-00000.txt", Body="".join(k + "\n" for k in keys))
    manifest = {
        "version": 1,
        "total": 7,
        "source": f"s3://{bucket}/images/",
        "shards": [{"uri": f"s3://{bucket}/m/shard-00000.txt", "count": 7}],
    }
    client.put_object(Bucket=bucket, Key="m/manifest.json", Body=json.dumps(manifest))
    zip_path = tmp_path / "batch_inference.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("batch_inference/__init__.py", "")
    request = date_request(
        dag_id="local_test", run_id=f"manual__{tmp_path.name}", backend="local",
        partition_date="2026-11-22",
        input_uri=f"s3://{bucket}/images/", output_uri=f"s3://{bucket}/predictions/",
        staging_uri=f"s3://{bucket}/_staging/local_test/run/",
        artifacts_uri=f"s3://{bucket}/artifacts/",
        local={"workers": 1, "worker_cores": 1, "worker_memory": "512m"},
        model={"name": "m", "symbol": f"s3://{bucket}/m.json", "params": f"s3://{bucket}/m.p",
               "labels": f"s3://{bucket}/l.txt", "input_name": "data", "image_size": 8,
               "mean": [0, 0, 0], "std": [1, 1, 1], "scale": 1.0},
        batch_size=2, top_k=1, partitions=2, max_error_rate=0.1,
        prefetch_threads=1, prefetch_depth=1, omp_threads=1,
        sse={"mode": "none", "kms_key_id": None},
    )  # fmt: skip
    return {
        "request": request,
        "manifest": {"manifest_uri": f"s3://{bucket}/m/manifest.json", "total": 7, "shards": 1},
        "zip": zip_path,
        "client": client,
        "bucket": bucket,
    }


def _artifacts(env: dict, entry_point: Path) -> dict:
    files = {"job_zip": env["zip"], "entry_point": entry_point}
    return stage_artifacts(s3_hook("aws_default"), files, f"s3://{env['bucket']}/artifacts/")


def _sense(sensor: LocalStepSensor, timeout: float = 240) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sensor.poke({}):
            return True
        time.sleep(1)
    raise AssertionError("step did not finish in time")


def _submit(env: dict, cluster_id: str, entry_point: Path) -> LocalSubmitStepOperator:
    return LocalSubmitStepOperator(
        task_id="submit_inference_step", request=env["request"],
        artifacts=_artifacts(env, entry_point), manifest=env["manifest"], cluster_id=cluster_id,
    )  # fmt: skip


def _run_step(env: dict, entry_point: Path) -> tuple[str, LocalCluster, LocalStepSensor]:
    request, manifest = env["request"], env["manifest"]
    create = LocalCreateClusterOperator(task_id="create_cluster", request=request)
    cluster_id = create.execute({})
    assert create.execute({}) == cluster_id  # a retry finds the running cluster
    cluster = LocalCluster.load(cluster_id)
    assert [p.name for p in cluster.processes] == ["master", "worker-0", "watchdog"]
    step_id = _submit(env, cluster_id, entry_point).execute({})
    sensor = LocalStepSensor(
        task_id="wait_for_inference_step", request=request, manifest=manifest,
        cluster_id=cluster_id, step_id=step_id, poke_interval=1,
    )  # fmt: skip
    return cluster_id, LocalCluster.load(cluster_id), sensor


def _terminate_and_check(env: dict, cluster: LocalCluster) -> None:
    pids = [p.pid for p in cluster.processes]
    assert tagged_processes(cluster.cluster_id)  # the cluster is alive before terminate
    LocalTerminateClusterOperator(
        task_id="terminate_cluster", cluster_id=cluster.cluster_id
    ).execute({})
    assert tagged_processes(cluster.cluster_id) == []
    assert not [pid for pid in pids if psutil.pid_exists(pid) and
                psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]  # fmt: skip


def _command_lines() -> str:
    lines = []
    for proc in psutil.process_iter(["cmdline"]):
        lines.append(" ".join(proc.info["cmdline"] or []))
    return "\n".join(lines)


def test_successful_step_then_terminate_leaves_no_process(local_env: dict) -> None:
    cluster_id, cluster, sensor = _run_step(local_env, JOBS / "tiny_job.py")
    try:
        assert SECRET not in _command_lines()
        assert _sense(sensor)
        assert _submit(local_env, cluster_id, JOBS / "tiny_job.py").execute({}) == "step-001"
        assert [p.name for p in LocalCluster.load(cluster_id).processes if p.name != "master"] == [
            "worker-0",
            "watchdog",
            "step-001",
        ]  # the retried submit found the completed step and added none
        output = "s3://{}/_staging/local_test/run/output/".format(local_env["bucket"])
        assert rows_done(s3_hook("aws_default"), output) == 7
        step_dir = cluster.path / "steps" / "step-001"
        assert (step_dir / "exit_code").read_text().strip() == "0"
        assert SECRET not in (step_dir / "driver.log").read_text()
    finally:
        _terminate_and_check(local_env, LocalCluster.load(cluster_id))


def test_failing_step_fails_the_sensor_with_the_log_tail(local_env: dict) -> None:
    cluster_id, cluster, sensor = _run_step(local_env, JOBS / "failing_job.py")
    try:
        with pytest.raises(AirflowFailException) as failure:
            _sense(sensor)
        message = str(failure.value)
        assert "failed (exit code 3)" in message
        assert "deliberate failure after a successful Spark stage" in message
    finally:
        _terminate_and_check(local_env, LocalCluster.load(cluster_id))


def test_terminate_without_a_cluster_is_a_no_op(local_env: dict, tmp_path: Path, capsys) -> None:
    """create_cluster made nothing: terminate stops nothing, creates nothing, raises nothing."""
    request = local_env["request"]
    derived = cluster_id_for(request["dag_id"], request["run_id"])
    # A process of another cluster, tagged as ours are: a no-op must leave it alone.
    bystander = subprocess.Popen(
        ["sleep", "60"], env={**os.environ, CLUSTER_TAG_ENV: "someone-elses-cluster"}
    )
    try:
        context = {"dag": SimpleNamespace(dag_id=request["dag_id"]), "run_id": request["run_id"]}
        result = LocalTerminateClusterOperator(
            task_id="terminate_cluster", cluster_id=None
        ).execute(context)  # no cluster id: derived from the DAG run, as create_cluster does
        assert result is None
        assert bystander.poll() is None  # still running
        assert tagged_processes(derived) == []
        assert not (tmp_path / "clusters" / derived).exists()  # no state was created for it
        assert f"No local cluster {derived}: nothing to stop" in capsys.readouterr().out
    finally:
        bystander.kill()
        bystander.wait()


def _step_killed(sensor: LocalStepSensor) -> None:
    """The sensor now fails the step as killed (no exit code was recorded)."""
    with pytest.raises(AirflowFailException, match="was killed"):
        sensor.poke({})


def test_killed_tasks_kill_their_step_and_a_retry_submits_again(local_env: dict) -> None:
    """on_kill of the sensor and of submit kill the running step; terminate still works."""
    cluster_id, cluster, sensor = _run_step(local_env, JOBS / "sleeping_job.py")
    try:
        retried = _submit(local_env, cluster_id, JOBS / "sleeping_job.py")
        assert retried.execute({}) == sensor.step_id  # still running: reused, not doubled
        assert sensor.poke({}) is False
        sensor.on_kill()  # the wait task is killed
        _step_killed(sensor)

        retried = _submit(local_env, cluster_id, JOBS / "sleeping_job.py")
        step_id = retried.execute({})  # a killed step is not reused
        assert step_id == "step-002"
        assert LocalCluster.load(cluster_id).processes[-1].process() is not None
        retried.on_kill()  # the submit task is killed
        _step_killed(LocalStepSensor(
            task_id="wait_for_inference_step", request=local_env["request"],
            manifest=local_env["manifest"], cluster_id=cluster_id, step_id=step_id,
        ))  # fmt: skip
        assert [p for p in LocalCluster.load(cluster_id).processes if p.process() is None] == [
            p for p in LocalCluster.load(cluster_id).processes if p.name.startswith("step-")
        ]  # both steps are gone, master and worker still run
    finally:
        _terminate_and_check(local_env, LocalCluster.load(cluster_id))


def test_the_dates_of_a_range_submit_their_steps_at_once(local_env: dict) -> None:
    """A range run's date.submit_inference_step instances run together on the run's cluster:
    each date gets its own step (id, record, name), and every step completes."""
    from concurrent.futures import ThreadPoolExecutor

    request = local_env["request"]
    cluster_id = LocalCreateClusterOperator(task_id="create_cluster", request=request).execute({})
    artifacts = _artifacts(local_env, JOBS / "tiny_job.py")
    dates = ["2026-11-20", "2026-11-21", "2026-11-22"]

    def submit(date: str) -> str:
        return LocalSubmitStepOperator(
            task_id="submit_inference_step", request={**request, "partition_date": date},
            artifacts=artifacts, manifest=local_env["manifest"], cluster_id=cluster_id,
        ).execute({})  # fmt: skip

    try:
        with ThreadPoolExecutor(len(dates)) as pool:
            steps = list(pool.map(submit, dates))
        assert sorted(steps) == ["step-001", "step-002", "step-003"]
        cluster = LocalCluster.load(cluster_id)
        assert sorted(p.name for p in cluster.processes if p.name.startswith("step-")) == sorted(
            steps
        )
        for step_id in steps:
            sensor = LocalStepSensor(
                task_id="wait_for_inference_step", request=request, manifest=local_env["manifest"],
                cluster_id=cluster_id, step_id=step_id, poke_interval=1,
            )  # fmt: skip
            assert _sense(sensor)
    finally:
        _terminate_and_check(local_env, LocalCluster.load(cluster_id))
