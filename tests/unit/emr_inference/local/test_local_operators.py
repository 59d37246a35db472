"""The local backend's operators and helpers, fast: real processes and state files, no Spark.

The Spark home is a stand-in (``$EMR_INFERENCE_LOCAL_SPARK_HOME``): its ``spark-class`` master
serves a status page that reports its workers alive, a worker sleeps, and its ``spark-submit``
prints its environment and ends as the test says. Everything else is the backend's own code:
state under ``tmp_path``, detached processes, the connection on the local S3 server. The slow
tests with a real Spark cluster are tests/integration/test_local_backend.py and
test_local_guards.py.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException
from emr_inference.emr.sizing import omp_threads, spark_properties
from emr_inference.job_command import job_arguments, step_name
from emr_inference.local.cluster import (
    SPARK_HOME_ENV,
    STATE_ENV,
    LocalCluster,
    LocalClusterError,
    StepStatus,
    cluster_id_for,
    recorded_clusters,
    step_status,
    stop_cluster,
    tagged_processes,
)
from emr_inference.local.operators import (
    LocalCreateClusterOperator,
    LocalSubmitStepOperator,
    LocalTerminateClusterOperator,
    aws_env,
    emulated_cluster_conf,
)
from emr_inference.resolved import ResolvedRequest
from emr_inference.s3 import s3_hook

from emr_inference_tools.local_s3 import LocalS3
from tests.unit.emr_inference.pipeline_fixtures import FakeDag, date_request

DAG_ID, RUN_ID = "local_unit", "manual__2026-11-22T00:00:00+00:00"
CLUSTER_ID = cluster_id_for(DAG_ID, RUN_ID)
ACCESS_KEY, SECRET = "AKIALOCALUNIT", "local-unit-secret-not-in-any-command-line"
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
MANIFEST = {"manifest_uri": "s3://in-bucket/m/manifest.json", "total": 7, "shards": 1}

FAKE_SPARK_CLASS = """#!/bin/sh
case "$1" in
  *.Master) exec {python} -m http.server --bind 127.0.0.1 --directory {status_dir} "$7" ;;
  *) sleep 600 ;;
esac
"""
FAKE_SPARK_SUBMIT = """#!/bin/sh
env
sleep "${FAKE_STEP_SECONDS:-0}"
exit "${FAKE_STEP_EXIT:-0}"
"""


def local_request(**fields: Any) -> dict[str, Any]:
    """A date's request (JSON) of a local run of DAG_ID/RUN_ID: 2 workers of 2 cores."""
    local = {"workers": 2, "worker_cores": 2, "worker_memory": "512m", **fields.pop("local", {})}
    return date_request(**{"dag_id": DAG_ID, "run_id": RUN_ID, **fields}, backend="local",
                        local=local)  # fmt: skip


def adopt_orphans(on: bool) -> None:
    """Make this process the subreaper of its descendants (or stop being it): the processes a
    step or worker starts are reaped here as soon as they die. Without it, the init of some
    containers reaps such orphans only after a second or more, and every wait for a killed
    process (:func:`emr_inference.local.cluster.kill_processes`) lasts that long."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Cluster state under tmp_path; every cluster recorded there is stopped after the test.
    Meanwhile this process adopts the orphans of the processes it starts (:func:`adopt_orphans`).
    """
    base = tmp_path / "clusters"
    monkeypatch.setenv(STATE_ENV, str(base))
    adopt_orphans(True)
    yield base
    try:
        for cluster in recorded_clusters(base):
            stop_cluster(cluster)
    finally:
        adopt_orphans(False)


@pytest.fixture
def fake_spark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in Spark home (module doc); a step exits ``$FAKE_STEP_EXIT`` (default 0) after
    ``$FAKE_STEP_SECONDS`` (default 0)."""
    status_dir = tmp_path / "master-status"
    (status_dir / "json").mkdir(parents=True)
    (status_dir / "json" / "index.html").write_text(json.dumps({"aliveworkers": 8}))
    scripts = {
        "spark-class": FAKE_SPARK_CLASS.format(python=sys.executable, status_dir=status_dir),
        "spark-submit": FAKE_SPARK_SUBMIT,
    }
    for name, text in scripts.items():
        script = tmp_path / "spark" / "bin" / name
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(text)
        script.chmod(0o755)
    monkeypatch.setenv(SPARK_HOME_ENV, str(tmp_path / "spark"))


@pytest.fixture
def connection(s3_env: LocalS3, monkeypatch: pytest.MonkeyPatch) -> LocalS3:
    """``aws_default`` on the local S3 server with a recognisable secret, and no AWS_* variable
    in this process: only the connection can hand the credentials on."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps({
            "conn_type": "aws", "login": ACCESS_KEY, "password": SECRET,
            "extra": {"endpoint_url": s3_env.endpoint_url, "region_name": "eu-west-1"},
        }),
    )  # fmt: skip
    for name in s3_env.env:
        monkeypatch.delenv(name)
    return s3_env


@pytest.fixture(scope="module")
def staged(s3_server: LocalS3, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The job's zip and entry point staged on the local S3 server (``stage_job_artifacts``'s
    XCom), once for the module."""
    from emr_inference.artifacts import stage_artifacts

    folder = tmp_path_factory.mktemp("artifacts")
    files = {"job_zip": folder / "batch_inference.zip", "entry_point": folder / "main.py"}
    for name, path in files.items():
        path.write_text(f"the {name}")
    bucket = f"local-ops-{uuid.uuid4().hex[:12]}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_server.env.items():
            patch.setenv(name, value)
        s3_server.client().create_bucket(Bucket=bucket)
        return stage_artifacts(s3_hook(None), files, f"s3://{bucket}/artifacts/")


@pytest.fixture
def artifacts(staged: dict[str, str], connection: LocalS3, state: Path) -> dict[str, str]:
    """:func:`staged`, with the run's cluster recorded (no process: submit needs none)."""
    cluster = LocalCluster(CLUSTER_ID, str(state / CLUSTER_ID), worker_memory="512m")
    cluster.path.mkdir(parents=True)
    cluster.save()
    return staged


def submit(
    request: dict[str, Any], artifacts: dict[str, str], manifest: dict[str, Any] = MANIFEST
) -> LocalSubmitStepOperator:
    """``submit_inference_step`` of ``request`` on the run's cluster."""
    return LocalSubmitStepOperator(
        task_id="submit_inference_step", request=request, artifacts=artifacts,
        manifest=manifest, cluster_id=CLUSTER_ID,
    )  # fmt: skip


def ended(step_id: str, timeout: float = 10) -> StepStatus:
    """The status of a step of the run's cluster once it no longer runs."""
    deadline = time.monotonic() + timeout
    while (status := step_status(LocalCluster.load(CLUSTER_ID), step_id)).state == "RUNNING":
        assert time.monotonic() < deadline, f"{step_id} still runs after {timeout}s"
        time.sleep(0.05)
    return status


def step_files(step_id: str) -> tuple[list[str], dict[str, str]]:
    """A step's command line (``command.json``) and the environment its spark-submit saw."""
    step_dir = LocalCluster.load(CLUSTER_ID).path / "steps" / step_id
    lines = (step_dir / "driver.log").read_text().splitlines()
    return json.loads((step_dir / "command.json").read_text()), dict(
        line.split("=", 1) for line in lines if "=" in line
    )


def step_ids() -> list[str]:
    """The steps recorded on the run's cluster."""
    return [p.name for p in LocalCluster.load(CLUSTER_ID).processes if p.name.startswith("step-")]


# emulated_cluster_conf, aws_env


@pytest.mark.parametrize(
    ("workers", "worker_cores", "spark_defaults", "executors"),
    [
        (3, 8, {}, 6),  # 2 executors of 4 cores per worker; EMR would run 32
        (1, 4, {"spark.executor.pyspark.memory": "3g"}, 1),
        (3, 8, {"spark.executor.instances": "2"}, 2),  # fewer than the workers hold: as on EMR
    ],
)
def test_the_emulated_conf_scales_executors_to_the_workers_and_keeps_emrs_memory(
    workers: int, worker_cores: int, spark_defaults: dict[str, str], executors: int
) -> None:
    request = ResolvedRequest.of(
        local_request(
            local={"workers": workers, "worker_cores": worker_cores},
            cluster={"spark_defaults": spark_defaults},
        )
    )
    emr = spark_properties(request)
    assert int(emr["spark.executor.cores"]) == 4

    conf = emulated_cluster_conf(request)

    assert conf.pop("spark.executor.instances") == str(executors)
    assert conf.pop("spark.cores.max") == str(executors * 4)
    emr.pop("spark.executor.instances")
    assert conf == emr  # heap, overhead, pyspark memory, task cpus, threads: EMR's
    assert {"spark.executor.memory", "spark.executor.memoryOverhead"} <= set(conf)


def test_the_emulated_conf_refuses_workers_smaller_than_one_executor() -> None:
    request = ResolvedRequest.of(local_request(local={"worker_cores": 2}))
    with pytest.raises(LocalClusterError, match="worker_cores: 2 cannot hold one executor"):
        emulated_cluster_conf(request)  # executors of 4 cores


def test_aws_env_is_the_connections_credentials_region_and_endpoint(connection: LocalS3) -> None:
    assert aws_env("aws_default") == {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_S3": connection.endpoint_url,
    }


def test_aws_env_passes_a_session_token_and_omits_what_the_connection_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_TOKEN",
        json.dumps({"conn_type": "aws", "login": ACCESS_KEY, "password": SECRET,
                    "extra": {"aws_session_token": "session-token"}}),
    )  # fmt: skip
    assert aws_env("aws_token") == {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": "session-token",
    }


# create_cluster


def test_create_starts_the_runs_cluster_with_its_shape_and_a_retry_reuses_it(
    fake_spark: None, state: Path, connection: LocalS3
) -> None:
    create = LocalCreateClusterOperator(
        task_id="create_cluster", request=local_request(local={"idle_timeout_seconds": 900})
    )
    assert create.execute({}) == CLUSTER_ID

    cluster = LocalCluster.load(CLUSTER_ID)
    assert (cluster.dag_id, cluster.run_id, cluster.worker_memory) == (DAG_ID, RUN_ID, "512m")
    assert [p.name for p in cluster.live_processes()] == ["master", "worker-0", "worker-1",
                                                         "watchdog"]  # fmt: skip
    processes = [p.process() for p in cluster.processes]
    worker = processes[1].cmdline()
    assert worker[worker.index("--cores") + 1 :][:3] == ["2", "--memory", "512m"]
    assert processes[-1].cmdline()[-2] == "900"  # the watchdog's idle timeout
    for proc in processes:  # credentials and endpoint: in the environment, never the arguments
        assert proc.environ()["AWS_SECRET_ACCESS_KEY"] == SECRET
        assert proc.environ()["AWS_ENDPOINT_URL_S3"] == connection.endpoint_url
        assert SECRET not in " ".join(proc.cmdline())

    assert create.execute({}) == CLUSTER_ID  # a retry finds the running cluster
    assert LocalCluster.load(CLUSTER_ID).processes == cluster.processes  # and starts nothing


def test_create_gives_another_run_its_own_cluster(
    fake_spark: None, state: Path, connection: LocalS3
) -> None:
    ours = LocalCreateClusterOperator(task_id="create_cluster", request=local_request())
    other = LocalCreateClusterOperator(
        task_id="create_cluster", request=local_request(run_id="manual__other")
    )
    assert ours.execute({}) == CLUSTER_ID
    assert other.execute({}) == cluster_id_for(DAG_ID, "manual__other") != CLUSTER_ID
    assert all(cluster.is_running() for cluster in recorded_clusters(state))


def test_create_starts_afresh_a_recorded_cluster_whose_worker_died(
    fake_spark: None, state: Path, connection: LocalS3
) -> None:
    create = LocalCreateClusterOperator(task_id="create_cluster", request=local_request())
    create.execute({})
    broken = LocalCluster.load(CLUSTER_ID)
    old = [p.process() for p in broken.processes]
    old[1].kill()
    old[1].wait(5)

    assert create.execute({}) == CLUSTER_ID

    restarted = LocalCluster.load(CLUSTER_ID)
    assert restarted.is_running()
    assert not {p.pid for p in restarted.processes} & {p.pid for p in broken.processes}
    assert [p.process() for p in broken.processes] == [None] * len(old)  # the rest was stopped


# submit_inference_step


def test_submit_runs_the_job_command_with_credentials_only_in_its_environment(
    fake_spark: None, artifacts: dict[str, str], connection: LocalS3, capsys
) -> None:
    request = local_request()
    step_id = submit(request, artifacts).execute({})
    assert step_id == "step-001"
    assert ended(step_id).state == "COMPLETED"

    command, env = step_files(step_id)
    typed = ResolvedRequest.of(request)
    assert command[command.index("--name") + 1] == step_name(typed)
    arguments = job_arguments(typed, MANIFEST["manifest_uri"])
    py_files, entry_point = command[-len(arguments) - 2 : -len(arguments)]
    assert command[-len(arguments) - 3] == "--py-files"
    assert command[-len(arguments) :] == arguments
    assert Path(py_files).read_text() == "the job_zip"  # downloaded into the cluster's state
    assert Path(entry_point).read_text() == "the entry_point"
    assert Path(py_files).is_relative_to(LocalCluster.load(CLUSTER_ID).path / "artifacts")
    assert "spark.executor.instances" not in " ".join(command)  # no emulation unless asked
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (ACCESS_KEY, SECRET)
    assert env["AWS_ENDPOINT_URL_S3"] == connection.endpoint_url

    logs = "".join(capsys.readouterr())
    assert "Submitted step-001" in logs
    cluster_json = (LocalCluster.load(CLUSTER_ID).path / "cluster.json").read_text()
    for text in (json.dumps(command), logs, cluster_json):
        assert SECRET not in text


def test_submit_emulating_the_cluster_passes_emrs_spark_settings(
    fake_spark: None, artifacts: dict[str, str]
) -> None:
    request = local_request(local={"emulate_cluster": True, "workers": 3, "worker_cores": 8})
    step_id = submit(request, artifacts).execute({})
    ended(step_id)

    command, env = step_files(step_id)
    options = [command[i + 1] for i, option in enumerate(command) if option == "--conf"]
    typed = ResolvedRequest.of(request)
    expected = [f"{key}={value}" for key, value in emulated_cluster_conf(typed).items()]
    assert set(expected) <= set(options)
    assert "spark.executor.instances=6" in options
    assert env["OMP_NUM_THREADS"] == str(omp_threads(typed))  # EMR's spark-env export


@pytest.mark.parametrize(
    ("first", "reused"), [("RUNNING", True), ("COMPLETED", True), ("FAILED", False)]
)
def test_a_retried_submit_reuses_a_running_or_completed_step_of_its_date(
    fake_spark: None,
    artifacts: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    first: str,
    reused: bool,
) -> None:
    monkeypatch.setenv("FAKE_STEP_SECONDS", "600" if first == "RUNNING" else "0")
    monkeypatch.setenv("FAKE_STEP_EXIT", "3" if first == "FAILED" else "0")
    request = local_request()
    first_id = submit(request, artifacts).execute({})
    if first == "RUNNING":
        assert step_status(LocalCluster.load(CLUSTER_ID), first_id).state == first
    else:
        assert ended(first_id).state == first

    retried = submit(request, artifacts).execute({})

    assert retried == (first_id if reused else "step-002")
    assert step_ids() == (["step-001"] if reused else ["step-001", "step-002"])


def test_a_running_step_of_another_date_is_not_reused(
    fake_spark: None, artifacts: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STEP_SECONDS", "600")
    assert submit(local_request(), artifacts).execute({}) == "step-001"
    other_date = local_request(partition_date="2026-11-21")
    assert submit(other_date, artifacts).execute({}) == "step-002"
    command = step_files("step-002")[0]
    assert command[command.index("--name") + 1] == step_name(ResolvedRequest.of(other_date))


@pytest.mark.parametrize("status", ["empty", "published"])
def test_submit_skips_a_date_that_needs_no_step(state: Path, status: str) -> None:
    task = submit(local_request(), artifacts={}, manifest={**MANIFEST, "status": status})
    with pytest.raises(AirflowSkipException, match=f"2026-11-22 is {status}"):
        task.execute({})  # before anything else: there is not even a cluster
    assert not state.exists()


@pytest.mark.parametrize("reused", [False, True])
def test_a_killed_submit_kills_the_step_it_submitted_or_reused(
    fake_spark: None, artifacts: dict[str, str], monkeypatch: pytest.MonkeyPatch, reused: bool
) -> None:
    monkeypatch.setenv("FAKE_STEP_SECONDS", "600")
    task = submit(local_request(), artifacts)
    step_id = task.execute({})
    if reused:
        task = submit(local_request(), artifacts)
        assert task.execute({}) == step_id
    record = LocalCluster.load(CLUSTER_ID).processes[-1]
    assert record.process() is not None

    task.on_kill()

    assert record.process() is None
    status = ended(step_id)
    assert (status.state, status.exit_code) == ("FAILED", None)  # killed, not ended


# terminate_cluster


def test_terminate_stops_every_process_of_the_runs_cluster_only(state: Path) -> None:
    cluster = LocalCluster(CLUSTER_ID, str(state / CLUSTER_ID))
    (cluster.path / "logs").mkdir(parents=True)
    for name in ("master", "worker-0", "watchdog", "step-001"):
        cluster.launch(name, ["sleep", "600"], cluster.process_env())
    bystander = subprocess.Popen(
        ["sleep", "600"], env=LocalCluster("local-other", str(state)).process_env()
    )
    try:
        terminate = LocalTerminateClusterOperator(task_id="terminate_cluster", cluster_id=None)
        terminate.execute({"dag": FakeDag(DAG_ID), "run_id": RUN_ID})  # found by its DAG run

        assert [p.process() for p in cluster.processes] == [None] * 4
        assert tagged_processes(CLUSTER_ID) == []
        assert bystander.poll() is None  # another cluster's process runs on
    finally:
        bystander.kill()
        bystander.wait()


def test_terminate_tolerates_a_cluster_already_gone(state: Path, capsys) -> None:
    context = {"dag": FakeDag(DAG_ID), "run_id": RUN_ID}
    never = LocalTerminateClusterOperator(task_id="terminate_cluster", cluster_id=None)
    assert never.execute(context) is None  # create_cluster never started one
    assert f"No local cluster {CLUSTER_ID}: nothing to stop" in capsys.readouterr().out
    assert not state.exists()  # and none was made up

    cluster = LocalCluster(CLUSTER_ID, str(state / CLUSTER_ID))
    (cluster.path / "logs").mkdir(parents=True)
    master = cluster.launch("master", ["sleep", "600"], cluster.process_env())
    terminate = LocalTerminateClusterOperator(task_id="terminate_cluster", cluster_id=CLUSTER_ID)
    terminate.execute(context)
    assert master.process() is None
    terminate.execute(context)  # a retry after it worked: its processes are gone, success
    assert capsys.readouterr().out.count(f"Stopped local cluster {CLUSTER_ID}") == 2
