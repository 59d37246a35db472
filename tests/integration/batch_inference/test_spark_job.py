"""The packaged job through a real ``spark-submit --master local[2]`` against the moto S3 server,
on the EMR node twin: the driver and workers run on the nodes' CPython 3.9 with EMR's mxnet and
numpy and the bootstrap's pins, under Spark 3.5.1 (what the EMR step runs).

One module-scoped run over 500 images (5% bad) is asserted by several tests; the failure cases
and the ResNet-18 parity check are one small run each (every spark-submit costs a JVM start).
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from batch_inference.config import Preprocess
from batch_inference.environment import JOB_PACKAGES
from batch_inference.images import decode_image
from emr_inference.job_command import model_arguments

from emr_inference_tools.demo.images import demo_objects, upload_objects
from emr_inference_tools.demo.models import (
    export_resnet18,
    load_exported,
    predict_probabilities,
    train_digits_classifier,
    upload_model,
)
from tests.support.job import job_zip, read_output, run_job, write_manifest

pytestmark = pytest.mark.slow

IMAGES = 500
PARTITIONS = 3
TOP_K = 3


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("job")


@pytest.fixture(scope="module")
def submit(node_twin):
    """``run_job`` on the node twin."""
    return functools.partial(run_job, twin=node_twin)


@pytest.fixture(scope="module")
def zip_path(workdir):
    return job_zip(workdir)


@pytest.fixture(scope="module")
def dataset(s3, workdir):
    """A bucket with the digits model, 500 images (25 bad of every kind) and their manifest."""
    client = s3.client()
    bucket = f"job-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    exported = train_digits_classifier(workdir / "digits")
    model = upload_model(client, exported, bucket, "models/digits")
    objects = demo_objects(IMAGES, bad_fraction=0.05)
    uris = upload_objects(client, bucket, "images/dt=2026-11-22", objects)
    manifest = write_manifest(client, bucket, "staging/run-1", uris, shard_size=128)
    return {
        "client": client,
        "bucket": bucket,
        "exported": exported,
        "model": model,
        "objects": dict(zip(uris, objects, strict=True)),
        "manifest": manifest,
    }


def job_args(dataset: dict, output: str, *extra: str) -> list[str]:
    return [
        "--manifest", dataset["manifest"],
        "--output", output,
        "--run-id", "manual__2026-11-22",
        *model_arguments(dataset["model"]),
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def big_run(s3, dataset, zip_path, submit):
    """The 500-image run: 3 partitions, batches of 24 (the last ones padded), SSE AES256."""
    output = f"s3://{dataset['bucket']}/staging/run-1/output/"
    args = job_args(
        dataset,
        output,
        "--partitions", str(PARTITIONS),
        "--batch-size", "24",
        "--top-k", str(TOP_K),
        "--prefetch-threads", "4",
        "--sse", "AES256",
    )  # fmt: skip
    process = submit(zip_path, args, s3.env)
    assert process.returncode == 0, process.stderr[-6000:]
    rows, metrics, keys = read_output(dataset["client"], output)
    return {"process": process, "output": output, "rows": rows, "metrics": metrics, "keys": keys}


def test_the_driver_and_every_worker_ran_on_the_nodes_python(big_run, node_twin):
    assert f"job environment {node_twin.python}:" in big_run["process"].stdout
    assert "Running Spark version 3.5.1" in big_run["process"].stderr
    environments = [item["worker_environment"] for item in big_run["metrics"]]
    # every package the job knows, the twin's versions; the runtime the release lacks: None
    expected = {**dict.fromkeys(JOB_PACKAGES), **node_twin.versions}
    assert environments == [expected] * PARTITIONS


def test_every_key_exactly_once_and_only_contract_objects(dataset, big_run):
    assert Counter(row["key"] for row in big_run["rows"]) == Counter(list(dataset["objects"]))
    expected = [f"_metrics/part-{p:05d}.json" for p in range(PARTITIONS)]
    expected += [f"part-{p:05d}.jsonl" for p in range(PARTITIONS)]
    assert sorted(big_run["keys"]) == sorted(expected)


def test_rows_follow_the_contract_and_errors_are_typed(dataset, big_run):
    for row in big_run["rows"]:
        assert set(row) == {"key", "top_k", "model", "precision", "run_id", "error"}
        assert (row["model"], row["precision"]) == ("digits-cnn", "fp32")
        assert row["run_id"] == "manual__2026-11-22"
        expected_error = dataset["objects"][row["key"]].expected_error
        if expected_error:
            assert row["top_k"] == []
            assert row["error"]["type"] == expected_error, row
            assert row["error"]["message"]
        else:
            assert row["error"] is None
            assert len(row["top_k"]) == TOP_K
            probabilities = [entry["probability"] for entry in row["top_k"]]
            assert probabilities == sorted(probabilities, reverse=True)
            assert all(entry["label"] == str(entry["index"]) for entry in row["top_k"])


def test_metrics_add_up(dataset, big_run):
    metrics = sorted(big_run["metrics"], key=lambda item: item["partition"])
    assert [item["partition"] for item in metrics] == list(range(PARTITIONS))
    assert metrics[0]["first_index"] == 0 and metrics[-1]["end_index"] == IMAGES
    for before, after in pairwise(metrics):
        assert before["end_index"] == after["first_index"]
    expected_errors = Counter(
        obj.expected_error for obj in dataset["objects"].values() if obj.expected_error
    )
    by_type: Counter = Counter()
    for item in metrics:
        assert item["rows"] == item["end_index"] - item["first_index"]
        assert item["rows"] == item["predicted"] + item["errors"]
        assert item["errors"] == sum(item["errors_by_type"].values())
        assert min(item[f"{name}_seconds"] for name in ("download", "decode", "wall")) > 0
        by_type.update(item["errors_by_type"])
    assert by_type == expected_errors
    assert sum(item["errors"] for item in metrics) == round(IMAGES * 0.05)


def test_predictions_equal_the_model_called_in_process(dataset, big_run):
    exported = dataset["exported"]
    net = load_exported(exported)
    good = [row for row in big_run["rows"] if row["error"] is None]
    tensors = np.stack(
        [decode_image(dataset["objects"][row["key"]].body, exported.preprocess()) for row in good]
    )
    direct = predict_probabilities(net, tensors)
    job_top1 = np.array([row["top_k"][0]["index"] for row in good])
    np.testing.assert_array_equal(job_top1, direct.argmax(axis=1))
    job_p1 = np.array([row["top_k"][0]["probability"] for row in good])
    np.testing.assert_allclose(job_p1, direct.max(axis=1), atol=1e-5)
    labels = np.array([dataset["objects"][row["key"]].label for row in good])
    assert (job_top1 == labels).mean() >= 0.9


def test_model_loaded_once_per_python_worker(big_run):
    loads = big_run["process"].stderr.count("loaded model 'digits-cnn'")
    assert 1 <= loads <= 2 < PARTITIONS  # local[2]: two reused workers for three partitions


def test_output_is_encrypted_as_requested(dataset, big_run):
    bucket = dataset["bucket"]
    prefix = big_run["output"].split(bucket + "/", 1)[1]
    for key in big_run["keys"]:
        head = dataset["client"].head_object(Bucket=bucket, Key=prefix + key)
        assert head["ServerSideEncryption"] == "AES256"


def test_wrong_model_sha256_fails_the_job_saying_so(s3, dataset, zip_path, submit):
    model = {**dataset["model"], "params_sha256": "0" * 64}
    output = f"s3://{dataset['bucket']}/staging/bad-sha/output/"
    args = job_args({**dataset, "model": model}, output, "--partitions", "2")
    process = submit(zip_path, args, s3.env)
    assert process.returncode != 0
    assert "the model could not be loaded: sha256 mismatch for --model-params" in process.stdout
    assert f"expected {'0' * 64}" in process.stdout


def test_error_rate_above_threshold_fails_the_job_saying_so(s3, dataset, zip_path, submit):
    client, bucket = dataset["client"], dataset["bucket"]
    objects = demo_objects(20, bad_fraction=0.5)
    uris = upload_objects(client, bucket, "images/mostly-bad", objects)
    manifest = write_manifest(client, bucket, "staging/mostly-bad", uris, shard_size=7)
    output = f"s3://{bucket}/staging/mostly-bad/output/"
    args = job_args({**dataset, "manifest": manifest}, output, "--max-error-rate", "0.2")
    process = submit(zip_path, args, s3.env)
    assert process.returncode != 0
    assert "error rate 50.00% (10 of 20 rows) is above --max-error-rate 20.00%" in process.stdout


def test_resnet18_probabilities_match_a_direct_forward(s3, workdir, zip_path, submit):
    client = s3.client()
    bucket = f"resnet-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    exported = export_resnet18(workdir / "resnet18", image_size=64)
    model = upload_model(client, exported, bucket, "models/resnet18")
    objects = demo_objects(20, bad_fraction=0.0, size=48)  # the job resizes 48 -> 64 px
    uris = upload_objects(client, bucket, "images", objects)
    manifest = write_manifest(client, bucket, "staging", uris, shard_size=8)
    output = f"s3://{bucket}/staging/output/"
    args = [
        "--manifest", manifest, "--output", output, "--run-id", "parity",
        *model_arguments(model), "--batch-size", "8", "--top-k", "10", "--partitions", "2",
    ]  # fmt: skip
    process = submit(zip_path, args, s3.env)
    assert process.returncode == 0, process.stderr[-6000:]
    rows, _, _ = read_output(client, output)
    assert len(rows) == len(uris)

    spec: Preprocess = exported.preprocess()
    by_uri = dict(zip(uris, objects, strict=True))
    tensors = np.stack([decode_image(by_uri[row["key"]].body, spec) for row in rows])
    direct = predict_probabilities(load_exported(exported), tensors)
    for row, expected in zip(rows, direct, strict=True):
        indices = [entry["index"] for entry in row["top_k"]]
        job_probabilities = np.array([entry["probability"] for entry in row["top_k"]])
        np.testing.assert_allclose(job_probabilities, expected[indices], atol=1e-5)
        assert job_probabilities[-1] >= np.sort(expected)[-10] - 1e-5  # really the top 10
        assert row["top_k"][0]["label"] == f"class_{indices[0]:04d}"


def test_int8_run_through_spark_submit(s3, dataset, zip_path, big_run, submit):
    """precision int8: the driver quantizes the trained digits model once, checks it against fp32
    on the run's images, and every task predicts with it; the rows say int8 and agree with the
    fp32 run's rows for nearly every image."""
    output = f"s3://{dataset['bucket']}/staging/int8/output/"
    cache = f"s3://{dataset['bucket']}/artifacts/int8/"
    args = job_args(
        dataset, output, "--partitions", "2", "--batch-size", "24", "--top-k", str(TOP_K),
        "--precision", "int8", "--int8-cache", cache, "--int8-min-agreement", "0.97",
        "--calibration-images", "64", "--agreement-images", "128",
    )  # fmt: skip
    process = submit(zip_path, args, s3.env)
    assert process.returncode == 0, process.stderr[-6000:]
    assert "int8: top-1 agreement with fp32" in process.stdout
    rows, metrics, _ = read_output(dataset["client"], output)
    assert {row["precision"] for row in rows} == {"int8"}
    assert all(m["precision"] == "int8" and m["int8_top1_agreement"] >= 0.97 for m in metrics)
    fp32_top1 = {r["key"]: r["top_k"][0]["label"] for r in big_run["rows"] if not r["error"]}
    int8_top1 = {r["key"]: r["top_k"][0]["label"] for r in rows if not r["error"]}
    assert int8_top1.keys() == fp32_top1.keys()
    same = sum(int8_top1[key] == fp32_top1[key] for key in fp32_top1) / len(fp32_top1)
    assert same >= 0.97
