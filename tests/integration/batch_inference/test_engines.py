"""``--engine rdd`` and ``--engine predict_batch_udf`` through real ``spark-submit`` runs: the same
input gives the same staged output, error rows included, and the DataFrame engine keeps the
contract's resume and exactly-once rules.

A tiny model (8x8 images) keeps each run to a JVM start plus a few seconds.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from emr_inference_tools.demo.images import demo_objects, upload_objects
from tests.integration.batch_inference.test_job_reliability import contract_objects, driver_summary
from tests.support.job import job_zip, read_output, run_job, write_manifest
from tests.support.tiny_model import upload_tiny_model

pytestmark = pytest.mark.slow

IMAGES = 60
SIZE = 8
PARTITIONS = 3
#: metrics that depend on the run's timing and processes, not on its input
TIMINGS = {
    "download_seconds",
    "decode_seconds",
    "inference_seconds",
    "wall_seconds",
    "worker_peak_rss_mb",
    "worker_peak_address_space_mb",
}


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory):
    return job_zip(tmp_path_factory.mktemp("engines"))


@pytest.fixture(scope="module")
def data(s3):
    """The tiny model and 60 images, 20% of them bad (every kind, missing objects included)."""
    client = s3.client()
    bucket = f"eng-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    model = upload_tiny_model(client, bucket, "model", image_size=SIZE)
    objects = demo_objects(IMAGES, 0.2, size=SIZE)
    uris = upload_objects(client, bucket, "images", objects)
    manifest = write_manifest(client, bucket, "manifest", uris, shard_size=16)
    return {
        "client": client,
        "bucket": bucket,
        "model": model,
        "uris": uris,
        "objects": dict(zip(uris, objects, strict=True)),
        "manifest": manifest,
    }


def job_args(data: dict, output: str, engine: str, *extra: str) -> list[str]:
    model = data["model"]
    return [
        "--manifest", data["manifest"], "--output", output, "--run-id", "manual__engines",
        "--model-name", model.name, "--model-symbol", model.symbol_uri,
        "--model-params", model.params_uri, "--model-labels", model.labels_uri,
        "--image-size", str(SIZE), "--batch-size", "8", "--top-k", "3",
        "--partitions", str(PARTITIONS), "--max-error-rate", "0.5", "--engine", engine, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(s3, data, zip_path):
    """Both engines over the same manifest, each into its own output."""
    outputs = {}
    for engine in ("rdd", "predict_batch_udf"):
        output = f"s3://{data['bucket']}/{engine}/output/"
        process = run_job(zip_path, job_args(data, output, engine), s3.env)
        assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-6000:]
        rows, metrics, keys = read_output(data["client"], output)
        outputs[engine] = {"process": process, "rows": rows, "metrics": metrics, "keys": keys}
    return outputs


def test_both_engines_write_the_same_rows_in_the_same_parts(data, runs):
    rdd, udf = runs["rdd"], runs["predict_batch_udf"]
    assert udf["keys"] == rdd["keys"] == contract_objects(range(PARTITIONS))
    assert udf["rows"] == rdd["rows"]  # part by part, row by row, probabilities bit for bit
    assert Counter(row["key"] for row in udf["rows"]) == Counter(data["uris"])
    errors = {row["key"]: row["error"]["type"] for row in udf["rows"] if row["error"]}
    expected = {
        uri: obj.expected_error for uri, obj in data["objects"].items() if obj.expected_error
    }
    assert errors == expected and len(errors) == round(IMAGES * 0.2)
    assert all(len(row["top_k"]) == 3 for row in udf["rows"] if row["error"] is None)


def test_both_engines_write_the_same_metrics_but_timings(runs):
    def without_timings(metrics: list[dict]) -> list[dict]:
        return [
            {k: v for k, v in item.items() if k not in {*TIMINGS, "engine"}} for item in metrics
        ]

    rdd, udf = runs["rdd"]["metrics"], runs["predict_batch_udf"]["metrics"]
    assert without_timings(udf) == without_timings(rdd)
    assert {m["engine"] for m in rdd} == {"rdd"} and {m["engine"] for m in udf} == {
        "predict_batch_udf"
    }
    for item in udf:
        assert item["inference_seconds"] > 0 and item["wall_seconds"] > 0
        assert item["worker_peak_rss_mb"] > 0  # the model worker's, from /proc/self/status
    summaries = [driver_summary(runs[e]["process"].stdout) for e in ("rdd", "predict_batch_udf")]
    timed = {"wall_seconds", "images_per_task_second"}  # measured: differ between runs
    assert [{k: v for k, v in s.items() if k not in timed} for s in summaries] == [
        {k: v for k, v in summaries[0].items() if k not in timed}
    ] * 2
    assert all(s["images_per_task_second"] > 0 for s in summaries)
    assert "engine predict_batch_udf" in runs["predict_batch_udf"]["process"].stdout


def test_predict_batch_udf_resumes_only_the_missing_partitions(s3, data, zip_path, runs):
    """Same run fingerprint: the complete partitions are not redone; one whose metrics part is
    gone is redone, its rows part replaced, and the output is the same."""
    prefix = "predict_batch_udf/output/"
    client, bucket = data["client"], data["bucket"]
    client.delete_object(Bucket=bucket, Key=prefix + "_metrics/part-00001.json")
    kept = {
        key: client.head_object(Bucket=bucket, Key=prefix + key)["LastModified"]
        for key in contract_objects(range(PARTITIONS))
        if "00001" not in key
    }
    output = f"s3://{bucket}/{prefix}"
    process = run_job(zip_path, job_args(data, output, "predict_batch_udf"), s3.env)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-6000:]
    summary = driver_summary(process.stdout)
    resumed_rows = sum(
        m["rows"] for m in runs["predict_batch_udf"]["metrics"] if m["partition"] != 1
    )
    assert (summary["resumed_partitions"], summary["resumed_rows"]) == (2, resumed_rows)
    for key, modified in kept.items():
        assert client.head_object(Bucket=bucket, Key=prefix + key)["LastModified"] == modified
    rows, metrics, keys = read_output(client, output)
    assert rows == runs["rdd"]["rows"]
    assert keys == contract_objects(range(PARTITIONS))
    assert [m["resumed"] for m in metrics] == [False] * PARTITIONS  # stored parts say so


def test_predict_batch_udf_fails_the_job_naming_a_model_that_cannot_be_loaded(s3, data, zip_path):
    """A wrong digest is found by the model's worker (the driver only uses it for the run
    fingerprint): the run fails naming it, as the rdd engine's does."""
    output = f"s3://{data['bucket']}/bad-model/output/"
    args = job_args(data, output, "predict_batch_udf", "--model-params-sha256", "0" * 64)
    process = run_job(zip_path, args, s3.env)
    assert process.returncode != 0
    assert "the model could not be loaded: sha256 mismatch for --model-params" in process.stdout


def test_predict_batch_udf_writes_empty_partitions_too(s3, data, zip_path):
    """More partitions than keys: the empty ones still get a rows part and a metrics part."""
    client, bucket = data["client"], data["bucket"]
    manifest = write_manifest(client, bucket, "two", data["uris"][:2], shard_size=16)
    output = f"s3://{bucket}/two/output/"
    args = job_args({**data, "manifest": manifest}, output, "predict_batch_udf")
    process = run_job(zip_path, args, s3.env)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-6000:]
    rows, metrics, keys = read_output(client, output)
    assert keys == contract_objects(range(PARTITIONS))
    assert [row["key"] for row in rows] == data["uris"][:2]
    assert sorted(m["rows"] for m in metrics) == [0, 1, 1]


@pytest.mark.parametrize("batch_size", ["8", None])
def test_the_online_predictor_returns_the_batch_jobs_row(data, runs, monkeypatch, batch_size):
    """The Lambda handler, asked for each image of the run (good and bad) by ``s3_uri``, answers
    the batch job's row: bit for bit when bound for the job's batch size (8), and with the same
    classes, order and errors, probabilities within 1e-6, at its default batch size of 1."""
    import json

    import numpy as np
    from batch_inference import lambda_handler
    from batch_inference import model as model_module

    model = data["model"]
    env = {
        "MODEL_NAME": model.name, "MODEL_SYMBOL": model.symbol_uri,
        "MODEL_PARAMS": model.params_uri, "MODEL_LABELS": model.labels_uri,
        "IMAGE_SIZE": str(SIZE), "TOP_K": "3", "RUN_ID": "manual__engines",
    }  # fmt: skip
    if batch_size:
        env["BATCH_SIZE"] = batch_size
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(lambda_handler, "_PREDICTOR", None)
    model_module._CACHE.clear()
    request = {"requestContext": {"requestId": "parity"}, "body": None}
    for batch_row in runs["rdd"]["rows"]:
        body = json.dumps({"s3_uri": batch_row["key"]})
        row = json.loads(lambda_handler.handler({**request, "body": body})["body"])
        if batch_size or batch_row["error"]:
            assert row == batch_row
            continue
        probabilities = [entry.pop("probability") for entry in row["top_k"]]
        expected = [dict(entry) for entry in batch_row["top_k"]]
        batch_probabilities = [entry.pop("probability") for entry in expected]
        assert row == {**batch_row, "top_k": expected}
        np.testing.assert_allclose(probabilities, batch_probabilities, atol=1e-6)
    model_module._CACHE.clear()


@pytest.fixture(scope="module")
def digits(data, tmp_path_factory):
    """The trained digits CNN and 48 held-out digits (10 % bad) in the module's bucket."""
    from emr_inference_tools.demo.models import train_digits_classifier, upload_model

    client, bucket = data["client"], data["bucket"]
    exported = train_digits_classifier(tmp_path_factory.mktemp("digits"), epochs=1)
    uris = upload_objects(client, bucket, "digits-images", demo_objects(48, 0.1))
    return {
        "model": upload_model(client, exported, bucket, "digits"),
        "manifest": write_manifest(client, bucket, "digits-manifest", uris, shard_size=16),
    }


def run_digits(s3, data, digits, zip_path, name: str, *extra: str):
    """The job over the digits into ``<bucket>/<name>/output/``: its rows, metrics and keys."""
    from emr_inference.job_command import model_arguments

    output = f"s3://{data['bucket']}/{name}/output/"
    args = [
        "--manifest", digits["manifest"], "--output", output, "--run-id", "manual__digits",
        *model_arguments(digits["model"]), "--batch-size", "8", "--top-k", "3",
        "--partitions", "2", "--max-error-rate", "0.5", *extra,
    ]  # fmt: skip
    process = run_job(zip_path, args, s3.env)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-6000:]
    return read_output(data["client"], output)


def test_both_engines_agree_in_int8(s3, data, digits, zip_path):
    """precision int8: the driver quantizes the trained digits CNN once (the first run) and both
    engines run the same int8 model from the cache: the same int8 rows."""
    int8 = (
        "--precision", "int8", "--int8-cache", f"s3://{data['bucket']}/int8-cache/",
        "--int8-min-agreement", "0", "--calibration-images", "16", "--agreement-images", "16",
    )  # fmt: skip
    outputs = [
        run_digits(s3, data, digits, zip_path, f"int8-{engine}", *int8, "--engine", engine)
        for engine in ("rdd", "predict_batch_udf")
    ]
    (rdd_rows, rdd_metrics, _), (udf_rows, udf_metrics, _) = outputs
    assert udf_rows == rdd_rows and len(rdd_rows) == 48
    assert {row["precision"] for row in udf_rows} == {"int8"}
    assert [m["int8_top1_agreement"] for m in udf_metrics] == [
        m["int8_top1_agreement"] for m in rdd_metrics
    ]


def test_the_converted_runtimes_rows_answer_as_mxnets_do(s3, data, digits, zip_path):
    """runtime onnxruntime (through the DataFrame engine) and openvino (the rdd engine): the
    driver converts the trained digits CNN once and the rows have MXNet's top-k labels, in order,
    with probabilities within 1e-5; error rows are the same rows."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    cache = f"--conversion-cache=s3://{data['bucket']}/converted/"
    mxnet_rows, _, _ = run_digits(s3, data, digits, zip_path, "mxnet", "--engine", "rdd")
    for runtime, engine in (("onnxruntime", "predict_batch_udf"), ("openvino", "rdd")):
        rows, metrics, _ = run_digits(
            s3, data, digits, zip_path, runtime, "--runtime", runtime, cache, "--engine", engine
        )
        assert [row["key"] for row in rows] == [row["key"] for row in mxnet_rows]
        assert len(rows) == 48 and any(row["error"] for row in rows)
        for mine, theirs in zip(rows, mxnet_rows, strict=True):
            assert mine["error"] == theirs["error"]
            assert [p["label"] for p in mine["top_k"]] == [p["label"] for p in theirs["top_k"]]
            for ours, reference in zip(mine["top_k"], theirs["top_k"], strict=True):
                assert abs(ours["probability"] - reference["probability"]) < 1e-5
        assert {(m["runtime"], m["engine"]) for m in metrics} == {(runtime, engine)}
        assert {m["conversion_top1_agreement"] for m in metrics} == {1.0}
