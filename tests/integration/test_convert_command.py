"""`make convert`, as docs/DEPLOYMENT.md writes it: the onnx pipeline's MXNet model converted
here, gated on the date's images, cached where its emr-7.13.0 nodes look for it; once, then found
again.

The pipeline's own buckets live in a moto server of this test, reached through the
``aws_default`` connection the docs export (``AIRFLOW_CONN_AWS_DEFAULT``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml
from batch_inference.quantize import MARKER

from emr_inference_tools.airflow_env import aws_connection
from emr_inference_tools.local_s3 import start_local_s3
from emr_inference_tools.rehearse import (
    create_buckets,
    resolve,
    stage_stand_in_model,
    upload_photos,
)
from tests.conftest import REPO_ROOT
from tests.support import runbook

pytestmark = pytest.mark.slow

PIPELINE = "cifar10_resnet18_onnx"
DATE = "2026-11-22"
COMMAND = ["make", "convert", f"PIPELINE={PIPELINE}", f"DATE={DATE}"]


@pytest.fixture(scope="module")
def pipeline_s3(tmp_path_factory):
    """A moto server holding the pipeline's buckets, its stand-in ResNet-18 and 24 photos."""
    server = start_local_s3()
    try:
        _, _, request = resolve(REPO_ROOT / "include" / "pipelines" / f"{PIPELINE}.yaml", DATE)
        client = server.client()
        create_buckets(client, request)
        stage_stand_in_model(client, request.model, tmp_path_factory.mktemp("model"))
        upload_photos(client, request.input_uri.uri, 24)
        yield server, request
    finally:
        server.stop()


def make_convert(server, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(server.endpoint_url)}
    return subprocess.run(
        list(command or COMMAND), cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def test_make_convert_converts_once_and_the_cache_answers_after(pipeline_s3):
    assert f"\n{' '.join(COMMAND)}\n" in runbook.docs_text()  # as written
    server, request = pipeline_s3
    first = make_convert(server)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # make prints "Entering/Leaving directory" around it when run from another make (make test)
    (line,) = [out for out in first.stdout.splitlines() if out.startswith(f"{PIPELINE}: ")]
    match = re.fullmatch(
        rf"{PIPELINE}: onnxruntime model (s3://\S+/converted/[0-9a-f]{{64}}/model\.onnx) "
        r"\(sha256 ([0-9a-f]{64})\), top-1 agreement with MXNet 100\.00%",
        line,
    )
    assert match, line
    assert match.group(1).startswith(request.artifacts_uri.uri)  # where the nodes look for it
    again = make_convert(server)
    assert again.returncode == 0 and line in again.stdout.splitlines()
    assert "reusing the converted model" in again.stdout + again.stderr


def test_make_convert_refuses_a_pipeline_that_runs_mxnet(pipeline_s3):
    server, _ = pipeline_s3
    result = make_convert(server, "make", "convert", "PIPELINE=cifar10_resnet18", f"DATE={DATE}")
    assert result.returncode != 0
    assert "cifar10_resnet18: nothing to convert: the pipeline runs MXNet itself" in result.stderr


INT8_COMMAND = [*COMMAND, "PRECISION=int8"]


def test_make_convert_for_int8_runs_quantizes_the_converted_model(pipeline_s3, tmp_path):
    """For runs that ask for int8 (in their conf, or the pipeline's precision): converted, then
    quantized on this machine, where the emr-7.13.0 nodes' int8 cache lookup finds it. The
    stand-in ResNet-18 has random weights (near-equal top classes), so its int8 agreement falls
    below the pipeline's 99 % and the command says so; with a gate it meets, the same model is
    found in the cache."""
    assert f"\n{' '.join(INT8_COMMAND)}\n" in runbook.docs_text()  # as written
    server, request = pipeline_s3
    refused = make_convert(server, *INT8_COMMAND)
    assert refused.returncode != 0, refused.stdout[-3000:] + refused.stderr[-3000:]
    (line,) = [out for out in refused.stdout.splitlines() if out.startswith(f"{PIPELINE}: int8 ")]
    match = re.fullmatch(
        rf"{PIPELINE}: int8 model (s3://\S+/int8/[0-9a-f]{{64}}/int8\.onnx) "
        r"\(sha256 [0-9a-f]{64}\), top-1 agreement with fp32 (\d+\.\d\d)% on 24 images of "
        r"s3://\S+ \(each run gates on its own: minimum 99\.00%\)",
        line,
    )
    assert match and float(match.group(2)) < 99, line
    assert (
        "Quantization refused: below int8.min_agreement on these images; runs whose own "
        "images agree as little will run not at all (int8.on_disagreement)" in refused.stderr
    )
    assert match.group(1).startswith(request.artifacts_uri.uri)  # where the nodes look for it
    bucket, key = match.group(1).removeprefix("s3://").split("/", 1)
    record = server.client().get_object(Bucket=bucket, Key=key.replace("int8.onnx", MARKER))
    assert json.loads(record["Body"].read())["calibration_images"] == 24  # the date's images

    lenient = tmp_path / f"{PIPELINE}.yaml"
    data = yaml.safe_load((REPO_ROOT / "include" / "pipelines" / f"{PIPELINE}.yaml").read_text())
    lenient.write_text(yaml.safe_dump({**data, "int8": {"min_agreement": 0.5}}))
    command = ["make", "convert", f"PIPELINE={lenient}", f"DATE={DATE}", "PRECISION=int8"]
    found = make_convert(server, *command)
    assert found.returncode == 0, found.stdout[-3000:] + found.stderr[-3000:]
    assert line.replace("99.00%", "50.00%") in found.stdout.splitlines()  # the same model
    assert "reusing the quantized model" in found.stdout + found.stderr
