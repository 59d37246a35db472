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
import datetime as dt
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from botocore.exceptions import ClientError
from emr_inference.local.cluster import (
    CLUSTER_TAG_ENV,
    LocalCluster,
    cluster_id_for,
    start_cluster,
    stop_cluster,
    tagged_processes,
)

from emr_inference_tools.airflow_env import REPO_ROOT
from emr_inference_tools.demo.run_demo import DAG_ID, PREDICTIONS_BUCKET, seed_demo
from emr_inference_tools.local_s3 import LocalS3
from tests.e2e.airflow_stack import (
    COMPONENTS,
    TERMINAL_RUN_STATES,
    AirflowApiError,
    AirflowStack,
    airflow_stack,
)
from tests.support.hold_proxy import HoldProxy

pytestmark = pytest.mark.slow

PARTITION = "2026-05-10"
IMAGES = 40
CONF = {"partition_date": PARTITION, "partitions": 2}
ORPHAN_CHECK_INTERVAL = 10  # seconds (Airflow's default: 300)
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
        # a restarted scheduler resets the dead scheduler's running tasks (scheduled again as a
        # new try) at its next orphan check, once that scheduler missed its heartbeats
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": str(ORPHAN_CHECK_INTERVAL),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
    }


@pytest.fixture(scope="module")
def s3_proxy(s3_server: LocalS3) -> Iterator[HoldProxy]:
    """Airflow's S3 endpoint: forwards to moto, and can freeze ``publish_results`` between the
    deletion of ``_SUCCESS`` and its first copy into the date's prefix."""
    with HoldProxy(s3_server.endpoint_url, "PUT", f"/predictions/dt={PARTITION}/part-") as proxy:
        yield proxy


@pytest.fixture(scope="module")
def stack(
    dags_folder: Path, airflow_extra_env: dict[str, str], s3_proxy: HoldProxy
) -> Iterator[AirflowStack]:
    """The module's Airflow, its S3 traffic through :func:`s3_proxy`."""
    with airflow_stack(dags_folder, s3_proxy.endpoint_url, extra_env=airflow_extra_env) as running:
        yield running


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


def _wait_until_no_process(cluster_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while left := tagged_processes(cluster_id):
        assert time.monotonic() < deadline, [p.cmdline()[:3] for p in left]
        time.sleep(1)


def _success_marker_time(s3: LocalS3) -> dt.datetime | None:
    """When the date's ``_SUCCESS`` was written, None when there is none."""
    key = f"predictions/dt={PARTITION}/_SUCCESS"
    try:
        return s3.client().head_object(Bucket=PREDICTIONS_BUCKET, Key=key)["LastModified"]
    except ClientError:
        return None


def _published(s3: LocalS3, images: list[str]) -> str | None:
    """All or nothing: the run id of the date's publication when ``_SUCCESS`` marks one (then it
    must be complete: one row per image, all of one run), None when there is none (objects left
    without ``_SUCCESS`` are not a publication: readers trust only ``_SUCCESS``)."""
    objects = _output(s3)
    if "_SUCCESS" not in objects:
        return None
    rows = [
        json.loads(line)
        for name, body in objects.items()
        if name.endswith(".jsonl")
        for line in body.decode().splitlines()
    ]
    assert sorted(row["key"] for row in rows) == images
    (run_id,) = {row["run_id"] for row in rows}
    assert json.loads(objects["_run_summary.json"])["run_id"] == run_id
    return run_id


def _assert_final_and_clean(stack: AirflowStack, run_id: str, images: list[str], s3) -> dict:
    """The run reached a final state, its teardown stopped the cluster, the output is all or
    nothing (the run's own when it succeeded). Returns the run."""
    run = stack.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
    states = stack.task_states(DAG_ID, run_id)
    assert run["state"] in TERMINAL_RUN_STATES, states
    assert states["terminate_cluster"] == "success", states
    _wait_until_no_process(cluster_id_for(DAG_ID, run_id), timeout=30)
    publication = _published(s3, images)
    if run["state"] == "success":
        assert publication == run_id, states
    else:
        assert publication != run_id, states
    return run


def _clear(stack: AirflowStack, run_id: str) -> None:
    """The documented recovery: clear every task of the run (UI: the run -> Clear)."""
    stack.api(
        "POST",
        f"/dags/{DAG_ID}/clearTaskInstances",
        json={"dry_run": False, "dag_run_id": run_id, "only_failed": False},
    )


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
    _wait_for_task_state(stack, run_id, "date.wait_for_inference_step[0]", "running")
    assert tagged_processes(cluster_id)  # the cluster and its step run

    _crash_and_restart(stack)

    _assert_final_and_clean(stack, run_id, images, s3_server)

    # clearing the run (issue #16.1) starts the cluster again on the same id, with a new step,
    # and replaces the date's output
    before = _success_marker_time(s3_server)
    _clear(stack, run_id)
    run = _assert_final_and_clean(stack, run_id, images, s3_server)
    assert run["state"] == "success", stack.task_states(DAG_ID, run_id)
    assert before is None or _success_marker_time(s3_server) > before
    cluster = LocalCluster.load(cluster_id, Path(stack.env["AIRFLOW_HOME"]) / "local_clusters")
    steps = sorted(path.name for path in cluster.path.joinpath("steps").iterdir())
    assert steps[:2] == ["step-001", "step-002"], steps


def test_a_crash_during_publish_leaves_no_partial_publication(
    stack: AirflowStack, images: list[str], s3_server: LocalS3, s3_proxy: HoldProxy
):
    """publish_results is frozen after deleting the earlier publication's _SUCCESS and before
    its first copy, and every Airflow process is killed there."""
    assert _published(s3_server, images)  # the first test published the date
    s3_proxy.arm()
    # the first test published this date for the same request: republish it
    run_id = stack.trigger(DAG_ID, conf={**CONF, "republish": True})["dag_run_id"]
    try:
        assert s3_proxy.wait_until_held(300), stack.task_states(DAG_ID, run_id)
        assert stack.task_states(DAG_ID, run_id)["date.publish_results[0]"] == "running"
        assert _published(s3_server, images) is None  # _SUCCESS is gone, nothing copied yet
        _crash_and_restart(stack)
    finally:
        s3_proxy.release()

    run = _assert_final_and_clean(stack, run_id, images, s3_server)
    if run["state"] != "success":
        _clear(stack, run_id)
        run = _assert_final_and_clean(stack, run_id, images, s3_server)
    assert run["state"] == "success", stack.task_states(DAG_ID, run_id)


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
