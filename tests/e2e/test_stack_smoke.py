"""The e2e harness itself, on trivial DAGs: REST triggering, Param validation, backfill, client.

Everything runs for real: PostgreSQL, the four Airflow components, LocalExecutor task processes, and
the task talks to the moto S3 server through the ``aws_default`` connection the harness configures.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.airflow_stack import AirflowApiError, AirflowStack

pytestmark = pytest.mark.slow

# One @task that writes the run's message to S3 through the aws_default connection.
ECHO_DAG = """
import json

import pendulum
from airflow.sdk import DAG, Param, task

with DAG(
    "smoke_echo",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"bucket": Param("smoke", type="string"), "message": Param("hi", type="string")},
):

    @task
    def write_message(params=None, ds=None, run_id=None):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        key = f"smoke/{ds}.json"
        body = json.dumps({"message": params["message"], "run_id": run_id})
        S3Hook(aws_conn_id="aws_default").load_string(
            body, key=key, bucket_name=params["bucket"], replace=True
        )
        return f"s3://{params['bucket']}/{key}"

    write_message()
"""

PARAMS_DAG = """
from airflow.sdk import DAG, Param, task

with DAG(
    "smoke_params",
    schedule=None,
    params={"batch_size": Param(64, type="integer", minimum=1)},
):

    @task
    def noop():
        pass

    noop()
"""


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("smoke-dags")
    (folder / "smoke_echo.py").write_text(textwrap.dedent(ECHO_DAG))
    (folder / "smoke_params.py").write_text(textwrap.dedent(PARAMS_DAG))
    return folder


def _read_json(s3_client, bucket: str, key: str) -> dict:
    return json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_trigger_with_conf_runs_the_task_against_local_s3(stack: AirflowStack, s3_env, bucket):
    run = stack.trigger(
        "smoke_echo",
        conf={"bucket": bucket, "message": "from the REST API"},
        logical_date="2026-11-22T00:00:00Z",
    )

    finished = stack.wait_for_run("smoke_echo", run["dag_run_id"], timeout=180)

    assert finished["state"] == "success", stack.task_states("smoke_echo", run["dag_run_id"])
    assert stack.xcom("smoke_echo", run["dag_run_id"], "write_message") == (
        f"s3://{bucket}/smoke/2026-11-22.json"
    )
    written = _read_json(s3_env.client(), bucket, "smoke/2026-11-22.json")
    assert written == {"message": "from the REST API", "run_id": run["dag_run_id"]}


def test_invalid_conf_is_rejected_with_400_naming_the_field(stack: AirflowStack):
    with pytest.raises(AirflowApiError) as rejected:
        stack.trigger("smoke_params", conf={"batch_size": "many"}, logical_date=None)

    assert rejected.value.status == 400
    assert "batch_size" in str(rejected.value.detail)
    runs = stack.api("GET", "/dags/smoke_params/dagRuns")["dag_runs"]
    assert runs == []


def test_backfill_runs_each_date_once(stack: AirflowStack, s3_env, bucket):
    backfill = stack.create_backfill(
        "smoke_echo",
        from_date="2026-03-01T00:00:00Z",
        to_date="2026-03-02T00:00:00Z",
        conf={"bucket": bucket, "message": "backfilled"},
        max_active_runs=2,
    )

    runs = stack.wait_for_backfill(backfill, timeout=240)

    assert [(run["logical_date"][:10], run["state"]) for run in runs] == [
        ("2026-03-01", "success"),
        ("2026-03-02", "success"),
    ]
    listed = s3_env.client().list_objects_v2(Bucket=bucket, Prefix="smoke/")["Contents"]
    assert sorted(obj["Key"] for obj in listed) == [
        "smoke/2026-03-01.json",
        "smoke/2026-03-02.json",
    ]


def test_official_python_client_triggers_and_follows_a_run(stack: AirflowStack, s3_env, bucket):
    from airflow_client import client
    from airflow_client.client.api.dag_api import DAGApi
    from airflow_client.client.api.dag_run_api import DagRunApi
    from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody

    configuration = client.Configuration(host=stack.base_url, access_token=stack.token)
    with client.ApiClient(configuration) as api_client:
        dag = DAGApi(api_client).get_dag("smoke_echo")
        runs = DagRunApi(api_client)
        run = runs.trigger_dag_run(
            "smoke_echo",
            TriggerDAGRunPostBody(
                logical_date="2026-11-23T00:00:00Z",
                conf={"bucket": bucket, "message": "from apache-airflow-client"},
            ),
        )
        deadline = time.monotonic() + 180
        while (state := runs.get_dag_run("smoke_echo", run.dag_run_id).state.value) not in {
            "success",
            "failed",
        }:
            assert time.monotonic() < deadline, f"run still {state}"
            time.sleep(1)

    assert dag.is_paused is False
    assert state == "success"
    written = _read_json(s3_env.client(), bucket, "smoke/2026-11-23.json")
    assert written["message"] == "from apache-airflow-client"
