"""The runbook runs: every command block of the docs (tests/support/runbook.py's DOCS) that an
operator runs, as written, against a whole Airflow on PostgreSQL (airflow_stack.py) with the
``demo`` pipeline, plus the refusals of bad ``conf`` through the REST API.

Each block marked ``<!-- runbook: NAME -->`` in the docs is run by ``bash`` (or Python for the
client example) from the repository root with the variables the docs export (``AIRFLOW_URL``,
``AIRFLOW_HOME``, ``DAG_ID``, ``DATE``) pointing at the test's Airflow, and ``airflow`` CLI
commands use the stack's database, as they would in a deployment. A doc whose command stops
working, or a marked block that nobody runs (tests/unit/test_docs.py), fails the suite.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from emr_inference.local.cluster import cluster_id_for

from emr_inference_tools.demo.images import demo_objects, upload_objects
from emr_inference_tools.demo.run_demo import DAG_ID, IMAGES_BUCKET, seed_demo
from emr_inference_tools.local_s3 import LocalS3
from tests.e2e.airflow_stack import AirflowApiError, AirflowStack
from tests.e2e.test_demo_api import _published, _spark_processes
from tests.support.runbook import REPO_ROOT, exported_variables, runbook_block

pytestmark = pytest.mark.slow

IMAGES = 12  # per partition; one of them a bad input
TODAY = dt.datetime.now(dt.UTC).date()
# The date a run without a partition_date processes, and the next one, for a run triggered after
# midnight UTC (the suite may start on one day and reach the trigger test on the next)
YESTERDAY, TODAY_DATE = (TODAY - dt.timedelta(days=1)).isoformat(), TODAY.isoformat()
# docs/OPERATIONS.md's REST backfill: ticks 2026-11-21 and 22 at 02:00 -> these partitions
BACKFILL_PARTITIONS = {"2026-11-21": "2026-11-20", "2026-11-22": "2026-11-21"}
# OPERATIONS' CLI backfill: ticks 2026-11-01 and 02 -> partitions that have no images
EMPTY_BACKFILL_PARTITIONS = {"2026-11-01": "2026-10-31", "2026-11-02": "2026-11-01"}
LATE_DATE = "2026-11-10"  # its images land after a first run found none
KILL_DATE = "2026-11-12"  # enough images for the step to be running when it is killed
# docs/OPERATIONS.md's range run: 2026-11-14 to 16, the 15th without images
RANGE_DATES, RANGE_EMPTY_DATE = ("2026-11-14", "2026-11-16"), "2026-11-15"
RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def seeded(s3_server: LocalS3, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The demo model, and the images of the dates the runbook's blocks process."""
    seed_demo(
        s3_server,
        [YESTERDAY, TODAY_DATE, *BACKFILL_PARTITIONS.values(), *RANGE_DATES],
        IMAGES,
        bad_fraction=0.1,
        model_dir=tmp_path_factory.mktemp("model"),
    )
    prefix = f"images/dt={KILL_DATE}/"
    upload_objects(s3_server.client(), IMAGES_BUCKET, prefix, demo_objects(600, bad_fraction=0))


#: Blocks of ``airflow`` commands, which the docs say to run where Airflow runs (they need the
#: deployment's database): they run with the stack's environment. Every other block runs with
#: only what the docs' reader has: a shell's PATH and HOME, and the variables the docs export.
AIRFLOW_HOST_BLOCKS = frozenset({"rerun-trigger", "rerun-clear", "backfill-cli"})
READER_BASICS = ("PATH", "HOME", "LANG", "TMPDIR")


@dataclass(frozen=True)
class DocEnv:
    """The variables the docs export, pointing at the stack, and the stack's own environment."""

    variables: dict[str, str]
    stack: dict[str, str]

    def for_block(self, name: str) -> dict[str, str]:
        """The stack's environment for ``airflow`` commands, else the reader's (none of the
        stack's settings: no AWS variables, no Airflow configuration)."""
        if name in AIRFLOW_HOST_BLOCKS:
            return {**self.stack, **self.variables}
        basics = {key: os.environ[key] for key in READER_BASICS if key in os.environ}
        return {**basics, **self.variables}


@pytest.fixture(scope="module")
def doc_env(stack: AirflowStack, seeded: None) -> DocEnv:
    """What the docs' reader has exported, pointing at the stack (DATE: set by each test)."""
    stack.unpause(DAG_ID)
    variables = {
        "AIRFLOW_URL": stack.base_url,
        "AIRFLOW_HOME": stack.env["AIRFLOW_HOME"],
        "DAG_ID": DAG_ID,
        "AIRFLOW_CONN_AWS_DEFAULT": stack.env["AIRFLOW_CONN_AWS_DEFAULT"],
    }
    assert exported_variables() - {"DATE"} == set(variables)
    return DocEnv(variables, dict(stack.env))


@pytest.fixture(scope="module", autouse=True)
def nothing_left_running(stack: AirflowStack):
    """After the module, no Spark process of this stack may be left."""
    yield
    assert _spark_processes(stack.env["AIRFLOW_HOME"]) == []


def run_blocks(env: DocEnv, *names: str, **variables: str) -> str:
    """Run the named doc blocks in one shell (after the token block), return stdout;
    the shell's environment is the one ``env`` gives the blocks (one kind of block a call)."""
    script = "\n".join(
        ["set -euo pipefail", *(runbook_block(name).code for name in ("token", *names))]
    )
    (shell_env,) = {tuple(sorted(env.for_block(name).items())) for name in names}
    done = subprocess.run(
        ["bash", "-c", script],
        env={**dict(shell_env), **variables},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{names} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def last_json(output: str) -> dict:
    """The last line of a block's output that is a JSON object (curl's answer)."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON answer in:\n{output}")


def task_instances(stack: AirflowStack, run_id: str) -> dict[str, dict]:
    """``{task_id: task instance}`` of a run."""
    found = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")
    return {ti["task_id"]: ti for ti in found["task_instances"]}


def task_log_file(stack: AirflowStack, run_id: str, task_id: str) -> Path:
    """A task's first-try log file (JSON lines; the exception's message included)."""
    run = Path(stack.env["AIRFLOW_HOME"], "logs", f"dag_id={DAG_ID}", f"run_id={run_id}")
    return run / f"task_id={task_id}" / "attempt=1.log"


def default_partition(s3: LocalS3, run_id: str) -> str:
    """The date a run given no partition_date published: the day before it was triggered, so
    yesterday, or today's date for a run triggered after midnight UTC (the run's data interval is
    not in its REST answer: the date is read from which of the two it published)."""
    published = [
        partition
        for partition in (YESTERDAY, TODAY_DATE)
        if _published(s3, partition)[2].get("run_id") == run_id
    ]
    assert len(published) == 1, published
    return published[0]


def assert_published(s3: LocalS3, partition: str, run_id: str) -> list[dict]:
    """``partition`` is published by ``run_id``; returns its rows."""
    names, rows, summary = _published(s3, partition)
    assert {"_SUCCESS", "_run_summary.json"} <= names, sorted(names)
    assert summary["run_id"] == run_id and rows
    return rows


# -- refusals through the REST API ------------------------------------------------------------


@pytest.mark.parametrize(
    ("conf", "field", "words"),
    [
        ({"partition_date": "2026-13-45"}, "partition_date", "is not a 'date'"),
        ({"partition_date": "2026-02-30"}, "partition_date", "is not a 'date'"),
        ({"output_uri": "s3://demo-predictions/../x/"}, "output_uri", "should not be valid"),
        ({"input_uri": "s3://demo..images/x/"}, "input_uri", "should not be valid"),
        ({"date_range": {"start": "2026-13-01", "end": "2026-12-01"}}, "date_range", "2026-13-01"),
        ({"partition_dates": ["2026-11-01", "2026-02-30"]}, "partition_dates", "is not a 'date'"),
        ({"partition_dates": []}, "partition_dates", "should be non-empty"),
    ],
)
def test_bad_dates_and_s3_uris_get_a_400_naming_the_field(
    stack: AirflowStack, doc_env: DocEnv, conf: dict, field: str, words: str
):
    runs_before = stack.api("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"]
    with pytest.raises(AirflowApiError) as refused:
        stack.trigger(DAG_ID, conf={"partition_date": "2026-11-22", **conf})
    assert refused.value.status == 400
    assert f"Invalid input for param {field}:" in str(refused.value.detail)
    assert words in str(refused.value.detail)
    assert stack.api("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"] == runs_before


def test_an_unknown_key_fails_the_run_first_thing_naming_the_closest_field(
    stack: AirflowStack, doc_env: DocEnv
):
    # Airflow 3.3 accepts unknown conf keys at trigger time: validate_request refuses them
    run = stack.trigger(DAG_ID, conf={"partition_date": "2026-11-22", "bogus_field": 1, "topk": 1})
    assert stack.wait_for_run(DAG_ID, run["dag_run_id"], timeout=120)["state"] == "failed"
    states = stack.task_states(DAG_ID, run["dag_run_id"])
    assert states["validate_request"] == "failed"
    assert states["create_cluster"] == "upstream_failed"
    log = task_log_file(stack, run["dag_run_id"], "validate_request").read_text()
    assert "params: bogus_field: not a request field" in log
    assert "bogus_field: not a request field; did you mean" not in log  # nothing is close
    assert "params: topk: not a request field; did you mean 'top_k'?" in log
    validate = task_instances(stack, run["dag_run_id"])["validate_request"]
    assert (validate["try_number"], validate["max_tries"]) == (1, 0)  # no retry


# -- OPERATIONS.md: trigger through curl and the official client -----------------------------------


def test_readme_trigger_blocks_process_yesterday(
    stack: AirflowStack, doc_env: DocEnv, s3_server: LocalS3
):
    run = last_json(run_blocks(doc_env, "trigger"))
    assert stack.wait_for_run(DAG_ID, run["dag_run_id"], RUN_TIMEOUT)["state"] == "success"
    assert_published(s3_server, default_partition(s3_server, run["dag_run_id"]), run["dag_run_id"])

    code = runbook_block("python-client").code
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=doc_env.for_block("python-client"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    run_id, state = done.stdout.split()
    assert "queued" in state.lower()
    assert stack.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)["state"] == "success"
    # replaced by the second run
    rows = assert_published(s3_server, default_partition(s3_server, run_id), run_id)
    assert {len(row["top_k"]) for row in rows if not row["error"]} == {1}  # its conf's top_k


# -- backfills ----------------------------------------------------------------------------------


def test_readme_backfill_never_runs_more_clusters_than_the_pipeline_allows(
    stack: AirflowStack, doc_env: DocEnv, s3_server: LocalS3
):
    backfill = last_json(run_blocks(doc_env, "backfill"))
    assert backfill["max_active_runs"] == 10  # the REST default: both runs start at once

    runs = stack.wait_for_backfill(backfill, timeout=2 * RUN_TIMEOUT)

    assert [(run["logical_date"][:10], run["state"]) for run in runs] == [
        (tick, "success") for tick in BACKFILL_PARTITIONS
    ]
    first, second = (task_instances(stack, run["dag_run_id"]) for run in runs)
    # both runs were running together ...
    assert max(run["start_date"] for run in runs) < min(run["end_date"] for run in runs)
    # ... but their clusters were not: one run's cluster tasks ended before the other's began
    spans = sorted(
        (tis["create_cluster"]["start_date"], tis["terminate_cluster"]["end_date"])
        for tis in (first, second)
    )
    assert spans[0][1] <= spans[1][0], spans
    for run in runs:
        partition = BACKFILL_PARTITIONS[run["logical_date"][:10]]
        assert_published(s3_server, partition, run["dag_run_id"])


def test_operations_backfill_cli_runs_each_tick_and_skips_empty_partitions(
    stack: AirflowStack, doc_env: DocEnv
):
    run_blocks(doc_env, "backfill-cli")

    (backfill,) = [
        backfill
        for backfill in stack.api("GET", "/backfills", params={"dag_id": DAG_ID})["backfills"]
        if backfill["from_date"].startswith("2026-11-01")
    ]
    runs = stack.wait_for_backfill(backfill, timeout=2 * RUN_TIMEOUT)

    assert [(run["logical_date"][:10], run["state"]) for run in runs] == [
        (tick, "success") for tick in EMPTY_BACKFILL_PARTITIONS
    ]
    for run in runs:
        request = stack.xcom(DAG_ID, run["dag_run_id"], "validate_request")
        assert request["partition_date"] == EMPTY_BACKFILL_PARTITIONS[run["logical_date"][:10]]
        states = stack.task_states(DAG_ID, run["dag_run_id"])
        assert states["create_cluster"] == "skipped"  # no images: no cluster


def test_readme_plan_then_range_run_on_one_cluster(
    stack: AirflowStack, doc_env: DocEnv, s3_server: LocalS3
):
    plan = run_blocks(doc_env, "plan")
    assert "Plan of a demo run (local backend), 3 date(s):" in plan
    for date in RANGE_DATES:
        assert re.search(rf"{date}\s+pending\s+[1-9]", plan), plan
    assert f"{RANGE_EMPTY_DATE}  empty" in plan
    assert _published(s3_server, RANGE_DATES[0])[0] == set()  # planning wrote nothing

    run = last_json(run_blocks(doc_env, "range-trigger"))
    assert stack.wait_for_run(DAG_ID, run["dag_run_id"], 2 * RUN_TIMEOUT)["state"] == "success"
    states = stack.task_states(DAG_ID, run["dag_run_id"])
    assert states["create_cluster"] == states["terminate_cluster"] == "success"
    assert [states[f"date.publish_results[{i}]"] for i in range(3)] == [
        "success",
        "skipped",
        "success",
    ]
    for date in RANGE_DATES:
        assert_published(s3_server, date, run["dag_run_id"])
    report = stack.xcom(DAG_ID, run["dag_run_id"], "report_dates")
    assert report["published"] == list(RANGE_DATES) and report["empty"] == [RANGE_EMPTY_DATE]
    cluster = Path(
        stack.env["AIRFLOW_HOME"], "local_clusters", cluster_id_for(DAG_ID, run["dag_run_id"])
    )
    assert len(list(cluster.joinpath("steps").iterdir())) == 2  # one cluster, a step per date


# -- OPERATIONS: re-run a date, find its run, clear it, find its logs ---------------------------


def test_operations_rerun_find_and_clear_a_date_whose_images_came_late(
    stack: AirflowStack, doc_env: DocEnv, s3_server: LocalS3
):
    run_blocks(doc_env, "rerun-trigger", DATE=LATE_DATE)
    (run_id,) = run_blocks(doc_env, "find-run", DATE=LATE_DATE).split()
    assert stack.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)["state"] == "success"
    assert stack.task_states(DAG_ID, run_id)["create_cluster"] == "skipped"  # nothing yet
    assert _published(s3_server, LATE_DATE)[0] == set()

    prefix = f"images/dt={LATE_DATE}/"
    upload_objects(s3_server.client(), IMAGES_BUCKET, prefix, demo_objects(IMAGES))
    run_blocks(doc_env, "rerun-clear", RUN_ID=run_id)

    deadline = time.monotonic() + RUN_TIMEOUT
    while stack.task_states(DAG_ID, run_id)["create_cluster"] != "success":
        assert time.monotonic() < deadline, stack.task_states(DAG_ID, run_id)
        time.sleep(2)
    assert stack.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)["state"] == "success"
    assert len(assert_published(s3_server, LATE_DATE, run_id)) == IMAGES

    listing = run_blocks(doc_env, "logs", RUN_ID=run_id)
    for task_id in ("validate_request", "wait_for_cluster_slot", "date.publish_results"):
        assert f"task_id={task_id}" in listing
    assert f"Published {IMAGES} rows" in listing, listing[-2000:]  # the task log's content


# -- OPERATIONS: kill a run ---------------------------------------------------------------------


def run_with_its_step_running(stack: AirflowStack) -> str:
    """A run of KILL_DATE (slow: one image a batch, one partition) once its step runs."""
    conf = {"partition_date": KILL_DATE, "batch_size": 1, "partitions": 1}
    run_id = stack.trigger(DAG_ID, conf=conf)["dag_run_id"]
    deadline = time.monotonic() + RUN_TIMEOUT
    while stack.task_states(DAG_ID, run_id).get("date.wait_for_inference_step[0]") != "running":
        assert time.monotonic() < deadline, stack.task_states(DAG_ID, run_id)
        time.sleep(1)
    return run_id


def test_operations_kill_stops_the_step_and_the_cluster(
    stack: AirflowStack, doc_env: DocEnv, s3_server: LocalS3
):
    run_id = run_with_its_step_running(stack)

    run_blocks(doc_env, "kill", RUN_ID=run_id)

    assert stack.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)["state"] == "failed"
    states = stack.task_states(DAG_ID, run_id)
    assert states["date.wait_for_inference_step[0]"] == "failed"
    assert states["date.publish_results[0]"] == "upstream_failed"
    assert states["report_dates"] == "failed"
    assert states["terminate_cluster"] == "success"
    assert _published(s3_server, KILL_DATE)[0] == set()
    assert _spark_processes(stack.env["AIRFLOW_HOME"]) == []  # the step and the cluster


def test_operations_kill_run_marked_failed_stops_the_cluster_and_ends_failed(
    stack: AirflowStack, doc_env: DocEnv, s3_server: LocalS3
):
    """The whole run marked failed while its step runs: Airflow kills the sensor and skips the
    tasks not started, the teardowns still run, and the run ends failed (it used to end success:
    its only leaf, report_dates, was skipped)."""
    run_id = run_with_its_step_running(stack)

    run_blocks(doc_env, "kill-run", RUN_ID=run_id)

    assert stack.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)["state"] == "failed"
    states = stack.task_states(DAG_ID, run_id)
    assert states["date.wait_for_inference_step[0]"] == "failed"
    assert states["date.publish_results[0]"] == "skipped"
    assert states["terminate_cluster"] == "success"
    assert states["report_dates"] == "failed"
    log = task_log_file(stack, run_id, "report_dates").read_text()
    assert f"1 of 1 dates were not published: {KILL_DATE}" in log
    assert _published(s3_server, KILL_DATE)[0] == set()
    assert _spark_processes(stack.env["AIRFLOW_HOME"]) == []  # the step and the cluster


def test_the_test_uses_every_variable_the_docs_export(doc_env: DocEnv):
    assert exported_variables() <= set(doc_env.variables) | {"DATE"}
    home = Path(doc_env.variables["AIRFLOW_HOME"])
    assert (home / "simple_auth_manager_passwords.json.generated").exists()
