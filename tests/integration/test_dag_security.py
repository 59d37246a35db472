"""Credentials stay secret and every written object is encrypted: one whole demo DAG run.

The ``aws_default`` connection carries a distinctive secret key (password) and session token
(extra). After a successful local run, neither may appear in any XCom value, rendered template
field, Param or run conf, file of the local cluster's state dir (cluster.json, the step's
command.json with its arguments, Spark and driver logs), task log file under AIRFLOW_HOME/logs,
or the task output that ``dag.test()`` prints. With ``sse: AES256`` every object the pipeline
wrote (artifacts, manifest, shards, staged parts and metrics, published parts, summary,
``_SUCCESS``) reports ``ServerSideEncryption: AES256`` in HeadObject on the moto server.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from emr_inference_tools.airflow_env import DUMMY_CREDENTIALS
from emr_inference_tools.demo.images import demo_objects
from tests.integration.conftest import OUTPUT_PREFIX, stage_demo_run, task_states

pytestmark = pytest.mark.slow

SECRET_KEY = "h6SecretKey-9f3c1e7a-do-not-leak"
SESSION_TOKEN = "h6SessionToken-5b2d8e40-do-not-leak"
SECRETS = (SECRET_KEY, SESSION_TOKEN)


def _connection(endpoint_url: str) -> str:
    return json.dumps(
        {
            "conn_type": "aws",
            "login": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "password": SECRET_KEY,
            "extra": {
                "endpoint_url": endpoint_url,
                "region_name": DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
                "aws_session_token": SESSION_TOKEN,
            },
        }
    )


def _database_texts(run) -> dict[str, str]:
    """Every XCom value, rendered template field and the run's conf, as text, by origin."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    texts = {"run conf": json.dumps(run.conf)}
    with create_session() as session:
        for xcom in session.scalars(select(XComModel).where(XComModel.run_id == run.run_id)):
            texts[f"xcom {xcom.task_id}/{xcom.key}"] = json.dumps(xcom.value)
        rendered = session.scalars(
            select(RenderedTaskInstanceFields).where(
                RenderedTaskInstanceFields.run_id == run.run_id
            )
        )
        for row in rendered:
            texts[f"rendered {row.task_id}"] = json.dumps(row.rendered_fields)
    return texts


def _files(root: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def _leaks(texts: dict[str, str | bytes]) -> list[str]:
    found = []
    for origin, text in texts.items():
        data = text.encode() if isinstance(text, str) else text
        found += [f"{origin}: {secret}" for secret in SECRETS if secret.encode() in data]
    return found


def test_no_credential_leaks_and_every_written_object_is_encrypted(
    build_demo_dag, bucket, s3_env, digits_model, tmp_path, monkeypatch, capfd
):
    state_dir = tmp_path / "clusters"
    monkeypatch.setenv("EMR_INFERENCE_LOCAL_STATE", str(state_dir))
    dag = build_demo_dag(_connection(s3_env.endpoint_url))
    client = s3_env.client()
    conf = stage_demo_run(
        client, bucket, digits_model, demo_objects(16, bad_fraction=0), sse={"mode": "AES256"}
    )
    run = dag.test(logical_date=dt.datetime(2026, 11, 23, tzinfo=dt.UTC), run_conf=conf)
    assert run.state == "success", task_states(run)

    texts: dict[str, str | bytes] = _database_texts(run)
    assert any(origin.startswith("xcom ") for origin in texts)
    assert any(origin.startswith("rendered ") for origin in texts), sorted(texts)
    texts["params"] = json.dumps({name: dag.params[name] for name in dag.params}, default=str)
    state_files = _files(state_dir)
    assert any(name.endswith("driver.log") for name in state_files)
    assert any(name.endswith("cluster.json") for name in state_files)
    (command,) = [json.loads(data) for name, data in state_files.items() if "command.json" in name]
    assert "--manifest" in command  # the step's spark-submit command line, arguments included
    texts.update(state_files)
    texts.update(_files(Path(os.environ["AIRFLOW_HOME"]) / "logs"))
    output = capfd.readouterr()
    texts["task output"] = output.out + output.err
    assert "Submitted step-001" in texts["task output"]  # the task logs were captured
    assert _leaks(texts) == []

    written = [
        item["Key"]
        for prefix in ("artifacts/", "_staging/", OUTPUT_PREFIX)
        for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    ]
    kinds = {key.rsplit("/", 1)[-1].split("-")[0].split(".")[0] for key in written}
    assert kinds >= {
        "batch_inference", "main", "install_job_deps", "requirements",  # artifacts
        "manifest", "shard", "part", "_run_summary", "_SUCCESS",
    }  # fmt: skip
    assert any("/_metrics/" in key for key in written)
    unencrypted = {
        key: head.get("ServerSideEncryption")
        for key in written
        if (head := client.head_object(Bucket=bucket, Key=key)).get("ServerSideEncryption")
        != "AES256"
    }
    assert unencrypted == {}
