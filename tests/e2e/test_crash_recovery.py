"""The Airflow host dies mid-run: nothing is left running, the output is all or nothing.

One Airflow stack (PostgreSQL and the four components, see airflow_stack.py) parses the
repository's ``dags/`` over a pipelines folder with ``demo.yaml`` and a broken copy of it. While
the demo run's ``wait_for_inference_step`` runs, every Airflow process is killed with SIGKILL
(the Spark cluster, detached, survives: as after a host crash with the cluster elsewhere, or an
OOM kill of Airflow), then Airflow is started again on the same database:

* the run reaches a final state, with the teardown (own retries, ALL_DONE) having stopped every
  process of the run's cluster, and the date's output is complete or absent, never partial;
* clearing the run (the documented recovery) makes a new cluster and step on the same run id and
  publishes the whole date;
* the ``emr_inference_sweeper`` DAG, run by Airflow, stops a cluster whose run Airflow does not
  know (real Task SDK calls for the run states);
* the broken pipeline file is an import error naming its file and field, and did not stop the
  demo pipeline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from emr_inference.local_spark import (
    CLUSTER_TAG_ENV,
    LocalCluster,
    cluster_id_for,
    start_cluster,
    stop_cluster,
    tagged_processes,
)

from include.airflow_env import REPO_ROOT
from include.demo.run_demo import DAG_ID, PREDICTIONS_BUCKET, seed_demo
from include.local_s3 import LocalS3
from tests.e2e.airflow_stack import (
    COMPONENTS,
    TERMINAL_RUN_STATES,
    AirflowApiError,
    AirflowStack,
)

pytestmark = pytest.mark.slow

PARTITION = "2026-05-10"
IMAGES = 40
CONF = {"partition_date": PARTITION, "partitions": 2}
HEARTBEAT_TIMEOUT = 30  # seconds before the restarted scheduler fails the killed task
RUN_TIMEOUT = 600


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo.yaml plus ``nightly.yaml``, a copy of it with a typo (``batch_size: 0``)."""
    folder = tmp_path_factory.mktemp("pipelines")
    demo = (REPO_ROOT / "include" / "pipelines" / "demo.yaml").read_text()
    (folder / "demo.yaml").write_text(demo)
    broken = demo.replace("pipeline: demo", "pipeline: nightly").replace(
        "batch_size: 16", "batch_size: 0"
    )
    (folder / "nightly.yaml").write_text(broken)
    return folder


@pytest.fixture(scope="module")
def airflow_extra_env(pipelines: Path) -> dict[str, str]:
    return {
        "EMR_INFERENCE_PIPELINES_DIR": str(pipelines),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    }


@pytest.fixture(scope="module")
def images(s3_server: LocalS3, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The demo model and IMAGES images of PARTITION in the local S3; their URIs."""
    model_dir = tmp_path_factory.mktemp("demo-model")
    uploaded = seed_demo(s3_server, [PARTITION], IMAGES, bad_fraction=0, model_dir=model_dir)
    return sorted(uri for uri in uploaded if f"/dt={PARTITION}/" in uri)


def _airflow_processes(home: str) -> list[psutil.Process]:
    """Every process of this stack's Airflow (its AIRFLOW_HOME), Spark processes excluded."""
    found = []
    for process in psutil.process_iter():
        try:
            env = process.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if env.get("AIRFLOW_HOME") == home and CLUSTER_TAG_ENV not in env:
            found.append(process)
    return found


def _wait_for_dags(stack: AirflowStack, *dag_ids: str) -> None:
    """Wait until the dag-processor has parsed these DAGs (import errors of other files are
    expected here, unlike in ``AirflowStack.wait_for_dag``)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            for dag_id in dag_ids:
                stack.api("GET", f"/dags/{dag_id}")
            return
        except AirflowApiError as error:
            assert error.status == 404 and time.monotonic() < deadline, error
            time.sleep(1)


def _crash_and_restart(stack: AirflowStack) -> None:
    """SIGKILL every Airflow process of the stack (no clean-up code runs), then start the four
    components again on the same database and wait until they are healthy."""
    home = stack.env["AIRFLOW_HOME"]
    for process in stack.processes.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    for process in _airflow_processes(home):  # task processes that left the groups
        process.kill()
    for process in stack.processes.values():
        process.wait()
    psutil.wait_procs(_airflow_processes(home), timeout=10)
    assert _airflow_processes(home) == []
    stack.processes.clear()
    for name in COMPONENTS:
        stack.start_component(name)
    stack.wait_until_healthy(180)


def _wait_for_task_state(stack: AirflowStack, run_id: str, task_id: str, state: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while (states := stack.task_states(DAG_ID, run_id)).get(task_id) != state:
        assert time.monotonic() < deadline, states
        assert stack.get_run(DAG_ID, run_id)["state"] not in TERMINAL_RUN_STATES, states
        time.sleep(1)


def _output(s3: LocalS3) -> dict[str, bytes]:
    """The objects under the date's output prefix."""
    client, prefix = s3.client(), f"predictions/dt={PARTITION}/"
    listing = client.list_objects_v2(Bucket=PREDICTIONS_BUCKET, Prefix=prefix)
    return {
        item["Key"][len(prefix) :]: client.get_object(Bucket=PREDICTIONS_BUCKET, Key=item["Key"])[
            "Body"
        ].read()
        for item in listing.get("Contents", [])
    }


def _assert_all_or_nothing(s3: LocalS3, images: list[str]) -> bool:
    """The output is either absent or complete (``_SUCCESS``, one row per image); which one."""
    objects = _output(s3)
    if not objects:
        return False
    assert "_SUCCESS" in objects, sorted(objects)
    rows = [
        json.loads(line)
        for name, body in objects.items()
        if name.endswith(".jsonl")
        for line in body.decode().splitlines()
    ]
    assert sorted(row["key"] for row in rows) == images
    return True


def _wait_until_no_process(cluster_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while left := tagged_processes(cluster_id):
        assert time.monotonic() < deadline, [p.cmdline()[:3] for p in left]
        time.sleep(1)


def test_a_crash_mid_step_leaves_no_cluster_and_no_partial_output(
    stack: AirflowStack, images: list[str], s3_server: LocalS3
):
    _wait_for_dags(stack, DAG_ID, "emr_inference_sweeper")
    deadline = time.monotonic() + 60
    while not (errors := stack.api("GET", "/importErrors")["import_errors"]):
        assert time.monotonic() < deadline, "no import error for the broken pipeline file"
        time.sleep(1)
    assert [Path(e["filename"]).name for e in errors] == ["pipeline_file_errors.py"]
    assert (
        "nightly.yaml: batch_size: Input should be greater than or equal to 1"
        in (errors[0]["stack_trace"])
    )

    run_id = stack.trigger(DAG_ID, conf=CONF)["dag_run_id"]
    cluster_id = cluster_id_for(DAG_ID, run_id)
    _wait_for_task_state(stack, run_id, "wait_for_inference_step", "running")
    assert tagged_processes(cluster_id)  # the cluster and its step run

    _crash_and_restart(stack)

    run = stack.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
    states = stack.task_states(DAG_ID, run_id)
    assert run["state"] in TERMINAL_RUN_STATES, states
    assert states["terminate_cluster"] == "success", states
    _wait_until_no_process(cluster_id, timeout=30)
    published = _assert_all_or_nothing(s3_server, images)
    assert published == (run["state"] == "success"), states

    # the documented recovery: clear the run; the same run id makes a new cluster and step
    stack.api(
        "POST",
        f"/dags/{DAG_ID}/clearTaskInstances",
        json={"dry_run": False, "dag_run_id": run_id, "only_failed": False},
    )
    run = stack.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
    assert run["state"] == "success", stack.task_states(DAG_ID, run_id)
    assert _assert_all_or_nothing(s3_server, images)
    assert tagged_processes(cluster_id) == []
    cluster = LocalCluster.load(cluster_id, Path(stack.env["AIRFLOW_HOME"]) / "local_clusters")
    assert sorted(p.name for p in cluster.path.joinpath("steps").iterdir())[-1] != "step-001"


def test_the_sweeper_dag_stops_a_cluster_whose_run_airflow_does_not_know(
    stack: AirflowStack, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("EMR_INFERENCE_LOCAL_STATE", f"{stack.env['AIRFLOW_HOME']}/local_clusters")
    orphan = start_cluster(
        "local-orphan", dag_id=DAG_ID, run_id="manual__deleted_run", worker_memory="512m"
    )
    try:
        run_id = stack.trigger("emr_inference_sweeper", conf={"dry_run": False})["dag_run_id"]
        run = stack.wait_for_run("emr_inference_sweeper", run_id, timeout=300)
        assert run["state"] == "success", stack.task_states("emr_inference_sweeper", run_id)
        stopped = stack.xcom("emr_inference_sweeper", run_id, "sweep_clusters")
        assert [(item["cluster_id"], item["reason"]) for item in stopped] == [
            ("local-orphan", "its run 'manual__deleted_run' is unknown to Airflow")
        ]
        assert tagged_processes(orphan.cluster_id) == []
    finally:
        stop_cluster(LocalCluster.load(orphan.cluster_id))
