"""Reliability of the packaged job through real ``spark-submit`` runs against the moto S3 server.

* a Python worker killed mid-partition: Spark retries the task, every key is written once;
* S3 answering SlowDown (503) and InternalError (500) through a loopback fault proxy: the job's
  retries absorb them, nothing is lost and no row is an error;
* resume: after a run that failed with some partitions written, re-running the same step skips
  those partitions (same run fingerprint) and processes only the rest.

Faults come from ``batch_inference.faults`` (``BATCH_INFERENCE_TEST_FAULT``) and
``tests.support.fault_proxy``. A tiny model keeps each run to a JVM start plus a few seconds.
"""

from __future__ import annotations

import ast
import uuid
from collections import Counter

import pytest
from batch_inference.faults import FAULT_ENV

from emr_inference_tools.demo.images import demo_objects, upload_objects
from tests.support.fault_proxy import FaultPlan, FaultProxy, FaultRule
from tests.support.job import job_zip, read_output, run_job, write_manifest
from tests.support.tiny_model import upload_tiny_model

pytestmark = pytest.mark.slow

IMAGES = 60
SIZE = 8


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory):
    return job_zip(tmp_path_factory.mktemp("reliability"))


@pytest.fixture(scope="module")
def data(s3):
    """A bucket with the tiny model, 60 good images and their manifest (shards of 16)."""
    client = s3.client()
    bucket = f"rel-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    model = upload_tiny_model(client, bucket, "model", image_size=SIZE)
    uris = upload_objects(client, bucket, "images", demo_objects(IMAGES, 0.0, size=SIZE))
    manifest = write_manifest(client, bucket, "manifest", uris, shard_size=16)
    return {"client": client, "bucket": bucket, "model": model, "uris": uris, "manifest": manifest}


def job_args(data: dict, output: str, partitions: int) -> list[str]:
    model = data["model"]
    return [
        "--manifest", data["manifest"], "--output", output, "--run-id", "manual__reliability",
        "--model-name", model.name, "--model-symbol", model.symbol_uri,
        "--model-params", model.params_uri, "--model-labels", model.labels_uri,
        "--image-size", str(SIZE), "--batch-size", "8", "--top-k", "2",
        "--partitions", str(partitions),
    ]  # fmt: skip


def contract_objects(partitions: range) -> list[str]:
    return sorted(
        [f"_metrics/part-{p:05d}.json" for p in partitions]
        + [f"part-{p:05d}.jsonl" for p in partitions]
    )


def assert_every_key_once(data: dict, rows: list[dict]) -> None:
    assert Counter(row["key"] for row in rows) == Counter(data["uris"])
    assert [row["error"] for row in rows] == [None] * IMAGES


def driver_summary(stdout: str) -> dict:
    """The summary dict of the driver's ``run ... finished: {...}`` log line."""
    line = next(line for line in stdout.splitlines() if " finished: {" in line)
    return ast.literal_eval(line.split(" finished: ", 1)[1])


def test_a_worker_killed_mid_partition_is_retried_and_every_key_is_written_once(s3, data, zip_path):
    output = f"s3://{data['bucket']}/worker-death/output/"
    process = run_job(
        zip_path,
        job_args(data, output, partitions=3),
        {**s3.env, FAULT_ENV: "exit:1"},  # partition 1, first attempt: dies after its rows part
        master="local[2,4]",  # 4 attempts per task (plain local[N] never retries)
    )
    assert process.returncode == 0, process.stderr[-6000:]
    assert process.stderr.count("killing this Python worker") == 1
    assert "partition 1: attempt 1 (retry)" in process.stderr
    rows, metrics, keys = read_output(data["client"], output)
    assert_every_key_once(data, rows)  # the retry replaced the dead attempt's rows part
    assert keys == contract_objects(range(3))
    assert [m["resumed"] for m in metrics] == [False] * 3  # no metrics part: redone, not resumed
    assert driver_summary(process.stdout)["rows"] == IMAGES


def test_s3_throttling_and_server_errors_are_retried_and_nothing_is_lost(s3, data, zip_path):
    output = f"s3://{data['bucket']}/throttled/output/"
    throttled_images = data["uris"][::6]
    plan = FaultPlan(
        [FaultRule("GET", uri.split("/", 3)[3], failures=2) for uri in throttled_images]
        + [
            FaultRule("GET", "/manifest/", failures=1),  # manifest.json and every shard
            FaultRule("GET", "/model/", failures=1),
            FaultRule("PUT", "/throttled/output/", failures=2),  # every part and metrics part
        ]
    )
    with FaultProxy(s3.endpoint_url, plan) as proxy:
        env = {**s3.env, "AWS_ENDPOINT_URL_S3": proxy.endpoint_url}
        process = run_job(zip_path, job_args(data, output, partitions=3), env)
    assert process.returncode == 0, process.stderr[-6000:]
    rows, metrics, keys = read_output(data["client"], output)
    assert_every_key_once(data, rows)
    assert keys == contract_objects(range(3))
    assert sum(m["errors"] for m in metrics) == 0
    puts = {obj for obj in plan.objects if obj.startswith("PUT ")}
    assert len(puts) == 6  # each of the 6 objects written was refused twice, then stored
    images = {obj for obj in plan.objects if "/images/" in obj}
    assert len(images) == len(throttled_images)
    assert plan.injected["SlowDown"] >= 6 + len(images) and plan.injected["InternalError"] >= 6


def test_a_failed_run_resumes_with_only_its_missing_partitions(s3, data, zip_path):
    output = f"s3://{data['bucket']}/resume/output/"
    prefix = "resume/output/"
    args = job_args(data, output, partitions=4)
    failed = run_job(zip_path, args, {**s3.env, FAULT_ENV: "fail:2"}, master="local[1]")
    assert failed.returncode != 0
    assert "partition 2: injected failure" in failed.stderr
    _, metrics, keys = read_output(data["client"], output)
    assert keys == contract_objects(range(2))  # partitions 0 and 1 ran before 2 failed the job
    written = {
        key: data["client"].head_object(Bucket=data["bucket"], Key=prefix + key)["LastModified"]
        for key in keys
    }

    resumed = run_job(zip_path, args, s3.env)
    assert resumed.returncode == 0, resumed.stderr[-6000:]
    summary = driver_summary(resumed.stdout)
    done_before = sum(m["rows"] for m in metrics)
    assert (summary["resumed_partitions"], summary["resumed_rows"]) == (2, done_before)
    assert summary["rows"] == IMAGES  # IMAGES - done_before images processed this time
    assert resumed.stderr.count("already complete for run fingerprint") == 2
    for key, modified in written.items():  # the parts of the first run were not rewritten
        head = data["client"].head_object(Bucket=data["bucket"], Key=prefix + key)
        assert head["LastModified"] == modified
    rows, metrics, keys = read_output(data["client"], output)
    assert_every_key_once(data, rows)
    assert keys == contract_objects(range(4))
    assert [m["partition"] for m in metrics if m["rows"]] == [0, 1, 2, 3]
