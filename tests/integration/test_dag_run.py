"""The whole demo DAG through ``dag.test()``: local Spark standalone backend, moto S3 server.

Builds a real digits model and real images (emr_inference_tools/demo), runs every task of the
``demo`` DAG as
``dags/inference_pipelines.py`` defines it, and checks what was published. Two faults: a wrong
model digest makes the Spark step fail, and a sensor timeout stops the wait while the step runs;
either way the run fails, the reason is in the task log, and the teardown (``terminate_cluster``)
still runs and leaves no process behind.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from emr_inference_tools.demo.images import DemoObject, corrupt_png, demo_objects
from tests.integration.conftest import (
    OUTPUT_PREFIX,
    spark_processes,
    stage_demo_run,
    task_states,
)

pytestmark = pytest.mark.slow

IMAGES = 24
LOGICAL_DATE = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


@pytest.fixture
def staged(bucket, s3_env, digits_model) -> dict:
    """The digits model and IMAGES images (one of them corrupt) in the local S3."""
    objects = demo_objects(IMAGES - 1, bad_fraction=0)
    corrupt = DemoObject("corrupt.png", corrupt_png(), None, "corrupt_image")
    conf = stage_demo_run(s3_env.client(), bucket, digits_model, [*objects, corrupt])
    return {"conf": conf, "objects": objects, "bucket": bucket}


def onnx_file_model(client, bucket: str, model: dict) -> dict:
    """``model`` (the conf's) as an ONNX file run as it is: MXNet's export of the digits CNN in
    S3, named by ``model.onnx`` with its digest, and no MXNet files."""
    from batch_inference.convert import export_onnx
    from batch_inference.model import sha256_hex

    def read(uri: str) -> bytes:
        return client.get_object(Bucket=bucket, Key=uri.split("/", 3)[3])["Body"].read()

    onnx = export_onnx(read(model["symbol"]).decode(), read(model["params"]), "data", 32)
    client.put_object(Bucket=bucket, Key="onnx-models/digits.onnx", Body=onnx)
    mxnet = dict.fromkeys(("symbol", "params", "symbol_sha256", "params_sha256"))
    onnx_file = {"onnx": f"s3://{bucket}/onnx-models/digits.onnx", "onnx_sha256": sha256_hex(onnx)}
    return {**model, **mxnet, **onnx_file}


@pytest.mark.parametrize(
    ("runtime", "days", "onnx_file"),
    [("mxnet", 0, False), ("onnxruntime", 3, False), ("openvino", 4, True)],
    ids=["mxnet", "onnxruntime-converted", "openvino-onnx-file"],
)
def test_demo_dag_publishes_one_row_per_image(demo_dag, staged, s3_env, runtime, days, onnx_file):
    """With each runtime: onnxruntime on the MXNet model, which the driver converts and gates on
    the run's images first (the summary says so), and openvino on the model named as an ONNX file
    (run as it is: nothing converted, no agreement to report). Each converted runtime's conversion
    is tested in tests/unit/batch_inference/test_convert.py, both run by spark-submit in
    tests/integration/batch_inference/test_engines.py."""
    model = {**staged["conf"]["model"], "runtime": runtime}
    if onnx_file:
        model = onnx_file_model(s3_env.client(), staged["bucket"], model)
    conf = {**staged["conf"], "model": model}
    run = demo_dag.test(logical_date=LOGICAL_DATE + dt.timedelta(days=days), run_conf=conf)
    states = task_states(run)
    assert run.state == "success", states
    assert set(states.values()) == {"success"}, states

    client, bucket = s3_env.client(), staged["bucket"]
    listing = client.list_objects_v2(Bucket=bucket, Prefix=OUTPUT_PREFIX)
    keys = {item["Key"] for item in listing["Contents"]}
    assert OUTPUT_PREFIX + "_SUCCESS" in keys
    rows = []
    for key in sorted(k for k in keys if k.endswith(".jsonl")):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        rows += [json.loads(line) for line in body.splitlines() if line]
    assert len(rows) == IMAGES
    assert len({row["key"] for row in rows}) == IMAGES
    errors = [row for row in rows if row["error"]]
    assert [(row["key"].rsplit("/", 1)[-1], row["error"]["type"]) for row in errors] == [
        ("corrupt.png", "corrupt_image")
    ]
    correct = sum(
        row["top_k"][0]["label"] == str(obj.label)
        for obj in staged["objects"]
        for row in rows
        if row["key"].endswith("/" + obj.name)
    )
    assert correct >= 0.8 * (IMAGES - 1)  # a real model predicted them

    summary_key = OUTPUT_PREFIX + "_run_summary.json"
    summary = json.loads(client.get_object(Bucket=bucket, Key=summary_key)["Body"].read())
    assert summary["rows"] == IMAGES
    assert summary["errors"] == 1
    assert summary["run_id"] == run.run_id
    assert (summary["runtime"], summary["precision"], summary["engine"]) == (runtime, "fp32", "rdd")
    # a converted runtime: the converted model's top-1 equals MXNet's on this run's images
    converted = runtime != "mxnet" and not onnx_file
    assert summary["conversion_top1_agreement"] == (1.0 if converted else None)
    assert spark_processes() == []


def test_teardown_runs_when_the_step_fails(demo_dag, staged, capfd):
    conf = staged["conf"]
    conf["model"] = {**conf["model"], "params_sha256": "0" * 64}  # the job refuses the model
    run = demo_dag.test(logical_date=LOGICAL_DATE + dt.timedelta(days=1), run_conf=conf)
    states = task_states(run)
    assert run.state == "failed", states
    assert states["date.wait_for_inference_step"] == "failed"
    assert states["date.publish_results"] == "upstream_failed"
    assert states["terminate_cluster"] == "success"
    assert states["report_dates"] == "failed"  # the run's one date was not published
    assert spark_processes() == []
    # the task log says why: the sensor's failure carries the driver log's last lines
    logs = capfd.readouterr().out
    assert "failed (exit code" in logs and "driver.log, last lines:" in logs
    assert "sha256" in logs.split("driver.log, last lines:", 1)[1]
    # the run's digest (report_dates' XCom, what an alert says) names the task and that reason
    digest = xcom(run, "report_dates", "digest")
    assert digest["outcome"] == "failed" and digest["dates"]["failed"] == ["2026-11-22"]
    (sensor, publish) = digest["failed_tasks"]
    assert (sensor["task"], sensor["date"], sensor["state"]) == (
        "date.wait_for_inference_step",
        "2026-11-22",
        "failed",
    )
    assert "failed (exit code" in sensor["reason"] and "sha256" in sensor["reason"]
    assert publish["state"] == "upstream_failed"
    assert digest["cluster"] == "stopped by terminate_cluster"


def xcom(run, task_id: str, key: str):
    """An XCom of a finished ``dag.test()`` run, from the metadata database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(run_id=run.run_id, key=key, task_ids=task_id, dag_ids=run.dag_id)
    with create_session() as session:
        row = session.scalars(query).first()
        return XComModel.deserialize_value(row)


def test_sensor_timeout_stops_the_step_and_terminates_the_cluster(demo_dag, staged, capfd):
    demo_dag.get_task("date.wait_for_inference_step").timeout = 3  # the job needs far longer
    run = demo_dag.test(logical_date=LOGICAL_DATE + dt.timedelta(days=2), run_conf=staged["conf"])
    states = task_states(run)
    assert run.state == "failed", states
    assert states["date.wait_for_inference_step"] == "failed"
    assert states["date.publish_results"] == "upstream_failed"
    assert states["terminate_cluster"] == "success"
    assert spark_processes() == []  # the running step went down with the cluster
    assert "timed out" in capfd.readouterr().out.lower()
