"""The real ``demo`` DAG driven through Airflow's REST API, end to end.

One Airflow stack (PostgreSQL, api-server, scheduler, dag-processor, triggerer; see
airflow_stack.py) parses the repository's ``dags/``; ``tools.demo.run_demo.seed_demo`` stages the
demo digits model and images in the session's moto S3 server where ``demo.yaml`` expects them.
Every run is the whole pipeline on the local backend: a real Spark standalone cluster started and
stopped by the DAG, a real spark-submit, a real MXNet model, output published to S3.

* a manual trigger (through the official ``apache-airflow-client``) with conf overrides;
* triggers with invalid conf rejected with HTTP 400 naming the field, creating no run.

Backfills of this DAG through the REST API and the CLI are tests/e2e/test_runbook.py's (the
README's and OPERATIONS.md's commands as written: each date published to its own partition, no
more clusters at once than the pipeline allows).

After the module no Spark process started by this stack may be left.
"""

from __future__ import annotations

import json
import time

import psutil
import pytest

from tests.e2e.airflow_stack import TERMINAL_RUN_STATES, AirflowApiError, AirflowStack
from tools.demo.run_demo import DAG_ID, PREDICTIONS_BUCKET, seed_demo
from tools.local_s3 import LocalS3

pytestmark = pytest.mark.slow

IMAGES = 20  # per partition, one of them a corrupt input; seed_demo adds two photos
TRIGGERED_PARTITION = "2026-04-10"
SMALL_CLUSTER_CONF = {"partitions": 2}  # demo.yaml says 4; two cores here
RUN_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def demo_inputs(
    s3_server: LocalS3, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    """Seed the demo model and images; ``{partition date: sorted URIs of its images}``."""
    dates = [TRIGGERED_PARTITION]
    model_dir = tmp_path_factory.mktemp("demo-model")
    uploaded = seed_demo(s3_server, dates, IMAGES, bad_fraction=0.05, model_dir=model_dir)
    return {date: sorted(uri for uri in uploaded if f"/dt={date}/" in uri) for date in dates}


def _spark_processes(airflow_home: str) -> list[str]:
    """Command lines of Spark daemons (``org.apache.spark.deploy``) started under this stack:
    their environment carries its AIRFLOW_HOME (other stacks on this machine are not ours)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if "org.apache.spark.deploy" not in command:
            continue
        try:
            if process.environ().get("AIRFLOW_HOME") == airflow_home:
                found.append(command)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module", autouse=True)
def no_spark_left_behind(stack: AirflowStack):
    """After every test of the module, the DAG's teardown must have stopped every Spark process."""
    yield
    assert _spark_processes(stack.env["AIRFLOW_HOME"]) == []


def _published(s3: LocalS3, partition: str) -> tuple[set[str], list[dict], dict]:
    """The published output of ``partition``: object names, rows of every part, run summary."""
    client, prefix = s3.client(), f"predictions/dt={partition}/"
    listing = client.get_paginator("list_objects_v2").paginate(
        Bucket=PREDICTIONS_BUCKET, Prefix=prefix
    )
    names = {item["Key"][len(prefix) :] for page in listing for item in page.get("Contents", [])}

    def read(name: str) -> str:
        body = client.get_object(Bucket=PREDICTIONS_BUCKET, Key=prefix + name)["Body"].read()
        return body.decode("utf-8")

    rows = [
        json.loads(line)
        for name in sorted(names)
        if name.endswith(".jsonl")
        for line in read(name).splitlines()
    ]
    summary = json.loads(read("_run_summary.json")) if "_run_summary.json" in names else {}
    return names, rows, summary


def _assert_published(s3: LocalS3, partition: str, images: list[str], run_id: str) -> list[dict]:
    """``partition``'s output is complete: one row per image, _SUCCESS, this run's summary."""
    names, rows, summary = _published(s3, partition)
    assert {"_SUCCESS", "_run_summary.json"} <= names, sorted(names)
    assert sorted(row["key"] for row in rows) == images
    assert {row["run_id"] for row in rows} == {run_id}
    assert summary["run_id"] == run_id
    assert summary["rows"] == len(images)
    assert summary["partitions"] == SMALL_CLUSTER_CONF["partitions"]
    return rows


def test_triggered_run_publishes_every_image_with_the_conf_overrides(
    stack: AirflowStack, demo_inputs: dict[str, list[str]], s3_server: LocalS3
):
    from airflow_client import client
    from airflow_client.client.api.dag_run_api import DagRunApi
    from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody

    stack.unpause(DAG_ID)
    conf = {"partition_date": TRIGGERED_PARTITION, "top_k": 2, "batch_size": 8}
    configuration = client.Configuration(host=stack.base_url, access_token=stack.token)
    with client.ApiClient(configuration) as api_client:
        runs = DagRunApi(api_client)
        run = runs.trigger_dag_run(
            DAG_ID, TriggerDAGRunPostBody(logical_date=None, conf={**conf, **SMALL_CLUSTER_CONF})
        )
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while (state := runs.get_dag_run(DAG_ID, run.dag_run_id).state.value) not in (
            TERMINAL_RUN_STATES
        ):
            assert time.monotonic() < deadline, stack.task_states(DAG_ID, run.dag_run_id)
            time.sleep(2)

    assert state == "success", stack.task_states(DAG_ID, run.dag_run_id)
    request = stack.xcom(DAG_ID, run.dag_run_id, "validate_request")
    assert {key: request[key] for key in conf} == conf
    images = demo_inputs[TRIGGERED_PARTITION]
    rows = _assert_published(s3_server, TRIGGERED_PARTITION, images, run.dag_run_id)
    predicted = [row for row in rows if not row["error"]]
    assert [row["key"] for row in rows if row["error"]] == [uri for uri in images if "/bad-" in uri]
    assert predicted and {len(row["top_k"]) for row in predicted} == {2}  # demo.yaml says 3
    assert stack.xcom(DAG_ID, run.dag_run_id, "date.publish_results", map_index=0) == {
        "partition_date": TRIGGERED_PARTITION,
        "output_uri": f"s3://{PREDICTIONS_BUCKET}/predictions/dt={TRIGGERED_PARTITION}/",
        "rows": len(images),
        "errors": len(rows) - len(predicted),
        "summary_uri": (
            f"s3://{PREDICTIONS_BUCKET}/predictions/dt={TRIGGERED_PARTITION}/_run_summary.json"
        ),
    }


@pytest.mark.parametrize(
    ("conf", "field"),
    [({"batch_size": 0}, "batch_size"), ({"input_uri": "http://x"}, "input_uri")],
)
def test_invalid_conf_is_rejected_with_400_naming_the_field(
    stack: AirflowStack, conf: dict, field: str
):
    runs_before = stack.api("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"]

    with pytest.raises(AirflowApiError) as rejected:
        stack.trigger(DAG_ID, conf={"partition_date": TRIGGERED_PARTITION, **conf})

    assert rejected.value.status == 400
    assert f"Invalid input for param {field}:" in str(rejected.value.detail)
    assert stack.api("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"] == runs_before
