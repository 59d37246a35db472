"""The online predictor: the Lambda handler invoked in-process with events in the shape AWS sends
them (tests/fixtures/lambda: an API Gateway REST proxy event with a JSON body, an HTTP API event
with a base64 image, an S3 ObjectCreated:Put event) against the moto S3 server with a real tiny
MXNet model, and the CLI as a process.

That its rows equal the batch job's rows is checked against real spark-submit runs in
tests/integration/batch_inference/test_engines.py.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from batch_inference import lambda_handler
from batch_inference import model as model_module
from batch_inference.model import sha256_hex
from batch_inference.runtime import softmax

from emr_inference_tools.demo.images import demo_objects, upload_objects
from tests.conftest import REPO_ROOT
from tests.support.tiny_model import reference_logits, tiny_model_files

SIZE = 8
EVENTS = REPO_ROOT / "tests" / "fixtures" / "lambda"


def event(name: str, bucket: str) -> dict:
    """A recorded event with its example bucket replaced by ``bucket``."""
    return json.loads((EVENTS / name).read_text().replace("example-bucket", bucket))


@pytest.fixture
def online(bucket, s3_env, monkeypatch):
    """The tiny model and four images (two good, one corrupt, one missing) in S3, the handler's
    environment pointing at them, and a fresh container (no predictor, no model yet)."""
    client = s3_env.client()
    symbol, params, labels, weights = tiny_model_files(image_size=SIZE)
    files = {"symbol": symbol.encode(), "params": params, "labels": "\n".join(labels).encode()}
    env = {"MODEL_NAME": "tiny", "IMAGE_SIZE": str(SIZE), "TOP_K": "3", "RUN_ID": "spot-check"}
    for part, body in files.items():
        client.put_object(Bucket=bucket, Key=f"model/{part}", Body=body)
        env[f"MODEL_{part.upper()}"] = f"s3://{bucket}/model/{part}"
        env[f"MODEL_{part.upper()}_SHA256"] = sha256_hex(body)
    objects = demo_objects(40, bad_fraction=0.1, size=SIZE)
    good = [obj for obj in objects if obj.expected_error is None][:2]
    corrupt = next(obj for obj in objects if obj.expected_error == "corrupt_image")
    missing = next(obj for obj in objects if obj.expected_error == "missing_object")
    chosen = [*good, corrupt, missing]
    uris = upload_objects(client, bucket, "images", chosen)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(lambda_handler, "_PREDICTOR", None)
    model_module._CACHE.clear()
    yield {
        "client": client,
        "bucket": bucket,
        "env": env,
        "labels": labels,
        "weights": weights,
        "uris": dict(zip(["good", "good2", "corrupt", "missing"], uris)),
        "objects": dict(zip(["good", "good2", "corrupt", "missing"], chosen)),
    }
    model_module._CACHE.clear()


def api_json(bucket: str, body: object) -> dict:
    return {**event("api_gateway_json.json", bucket), "body": json.dumps(body)}


def api_bytes(bucket: str, data: bytes) -> dict:
    encoded = base64.b64encode(data).decode("ascii")
    return {**event("api_gateway_binary.json", bucket), "body": encoded}


def expected_top3(online: dict, image: bytes) -> list[dict]:
    """The top 3 of the tiny model computed in NumPy from the job's own decoding."""
    from batch_inference.config import Preprocess
    from batch_inference.images import decode_image

    tensor = decode_image(image, Preprocess(image_size=SIZE))
    probabilities = softmax(reference_logits(online["weights"], tensor[None]))[0]
    order = np.argsort(-probabilities, kind="stable")[:3]
    return [{"label": online["labels"][i], "index": int(i)} for i in order], probabilities[order]


def assert_prediction(online: dict, row: dict, key: str, image: bytes) -> None:
    top, probabilities = expected_top3(online, image)
    assert row["key"] == key and row["error"] is None
    assert (row["model"], row["precision"], row["run_id"]) == ("tiny", "fp32", "spot-check")
    assert [{k: e[k] for k in ("label", "index")} for e in row["top_k"]] == top
    got = [entry["probability"] for entry in row["top_k"]]
    np.testing.assert_allclose(got, probabilities, rtol=1e-5)


def body_of(response: dict) -> dict:
    assert response["headers"] == {"Content-Type": "application/json"}
    return json.loads(response["body"])


def test_an_s3_uri_in_a_json_body_gets_its_row(online):
    uri = online["uris"]["good"]
    response = lambda_handler.handler(api_json(online["bucket"], {"s3_uri": uri}), None)
    assert response["statusCode"] == 200
    assert_prediction(online, body_of(response), uri, online["objects"]["good"].body)


def test_the_recorded_json_event_as_sent(online):
    """The recorded event unchanged but its bucket: its key is not there, so a 404 error row."""
    response = lambda_handler.handler(event("api_gateway_json.json", online["bucket"]), None)
    assert response["statusCode"] == 404
    row = body_of(response)
    assert row["key"] == f"s3://{online['bucket']}/images/0001.png"
    assert row["error"]["type"] == "missing_object" and row["top_k"] == []


def test_image_bytes_in_a_base64_body_get_their_row(online):
    image = online["objects"]["good2"].body
    response = lambda_handler.handler(api_bytes(online["bucket"], image), None)
    assert response["statusCode"] == 200
    assert_prediction(online, body_of(response), "request:Xy1AbCdEoAMEJ4w=", image)


@pytest.mark.parametrize(
    ("which", "status", "kind"),
    [("corrupt", 422, "corrupt_image"), ("missing", 404, "missing_object")],
)
def test_a_bad_image_is_answered_with_its_error_row(online, which, status, kind):
    uri = online["uris"][which]
    response = lambda_handler.handler(api_json(online["bucket"], {"s3_uri": uri}), None)
    assert response["statusCode"] == status
    row = body_of(response)
    assert (row["key"], row["top_k"], row["error"]["type"]) == (uri, [], kind)
    assert row["error"]["message"]


def test_corrupt_bytes_are_a_422_not_a_crash(online):
    response = lambda_handler.handler(
        api_bytes(online["bucket"], b"\x89PNG\r\n\x1a\nnot png"), None
    )
    assert response["statusCode"] == 422
    assert body_of(response)["error"]["type"] == "corrupt_image"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"body": None}, "has no body"),
        ({"body": ""}, "has no body"),
        ({"body": "just text", "headers": {}}, "the body is text, not an image"),
        ({"body": "{not json"}, "not valid JSON"),
        ({"body": json.dumps({"uri": "s3://b/k"})}, 'no "s3_uri" string'),
        ({"body": json.dumps(["s3://b/k"])}, 'no "s3_uri" string'),
        ({"body": json.dumps({"s3_uri": "https://b/k.png"})}, "s3_uri must be an s3:// URI"),
        ({"body": json.dumps({"s3_uri": "s3://b/prefix/"})}, "must name an object"),
        ({"body": "***", "isBase64Encoded": True}, "not valid base64"),
    ],
)
def test_a_request_it_cannot_read_is_a_400_saying_why(online, change, words):
    request = {**event("api_gateway_json.json", online["bucket"]), **change}
    response = lambda_handler.handler(request, None)
    assert response["statusCode"] == 400
    error = body_of(response)["error"]
    assert error["type"] == "bad_request" and words in error["message"]


@pytest.mark.parametrize("request_event", [{}, {"foo": 1}, [], "text", None, {"Records": []}])
def test_an_unknown_event_is_a_400(online, request_event):
    response = lambda_handler.handler(request_event, None)
    assert response["statusCode"] == 400
    assert "not an API Gateway proxy event or an S3 event" in body_of(response)["error"]["message"]


def test_an_s3_put_event_gets_the_row_of_its_url_encoded_key(online):
    client, bucket = online["client"], online["bucket"]
    image = online["objects"]["good"].body
    client.put_object(Bucket=bucket, Key="uploads/new upload=1.png", Body=image)
    result = lambda_handler.handler(event("s3_put.json", bucket), None)
    (row,) = result["rows"]
    assert_prediction(online, row, f"s3://{bucket}/uploads/new upload=1.png", image)


def test_an_s3_event_reads_only_created_objects(online):
    """A notification for every event type: a removed object has no image to read, so it is
    listed as ignored, not answered with a missing_object row."""
    client, bucket = online["client"], online["bucket"]
    image = online["objects"]["good"].body
    client.put_object(Bucket=bucket, Key="uploads/new upload=1.png", Body=image)
    created = event("s3_put.json", bucket)
    (record,) = created["Records"]
    removed = {**record, "eventName": "ObjectRemoved:Delete"}
    removed = {**removed, "s3": {**record["s3"], "object": {"key": "uploads/gone.png"}}}
    result = lambda_handler.handler({"Records": [removed, record]}, None)
    (row,) = result["rows"]
    assert row["key"] == f"s3://{bucket}/uploads/new upload=1.png" and row["error"] is None
    assert result["ignored"] == [
        {"key": f"s3://{bucket}/uploads/gone.png", "event": "ObjectRemoved:Delete"}
    ]


def test_an_http_api_request_without_a_body_is_a_400_saying_so(online):
    """HTTP API v2 leaves ``body`` out of a request that has none."""
    request = event("api_gateway_binary.json", online["bucket"])
    del request["body"]
    response = lambda_handler.handler(request, None)
    assert response["statusCode"] == 400
    assert "has no body" in body_of(response)["error"]["message"]


def test_the_media_type_is_matched_whatever_its_case(online):
    """Application/JSON is JSON: a JSON body that is not an object is told what JSON it needs,
    not that it is text."""
    request = api_json(online["bucket"], ["s3://b/k.png"])
    request["headers"] = {**request["headers"], "Content-Type": "Application/JSON; charset=UTF-8"}
    response = lambda_handler.handler(request, None)
    assert response["statusCode"] == 400
    assert 'no "s3_uri" string' in body_of(response)["error"]["message"]


def test_the_model_is_loaded_once_per_container(online, caplog):
    caplog.set_level(logging.INFO, logger="batch_inference.model")
    for which in ("good", "good2", "good"):
        request = api_json(online["bucket"], {"s3_uri": online["uris"][which]})
        assert lambda_handler.handler(request, None)["statusCode"] == 200
    assert sum("loaded model 'tiny'" in r.getMessage() for r in caplog.records) == 1


def test_a_wrong_model_digest_is_a_500_naming_it(online, monkeypatch):
    monkeypatch.setenv("MODEL_PARAMS_SHA256", "0" * 64)
    response = lambda_handler.handler(
        api_json(online["bucket"], {"s3_uri": online["uris"]["good"]}), None
    )
    assert response["statusCode"] == 500
    error = body_of(response)["error"]
    assert error["type"] == "model_unavailable"
    assert "sha256 mismatch for --model-params" in error["message"]
    online["client"].put_object(
        Bucket=online["bucket"], Key="uploads/new upload=1.png", Body=online["objects"]["good"].body
    )
    with pytest.raises(Exception, match="sha256 mismatch"):  # S3 events: Lambda retries
        lambda_handler.handler(event("s3_put.json", online["bucket"]), None)


def test_a_missing_setting_is_a_500_naming_the_variable(online, monkeypatch):
    monkeypatch.delenv("MODEL_SYMBOL")
    monkeypatch.setenv("IMAGE_SIZE", "big")
    response = lambda_handler.handler(
        api_json(online["bucket"], {"s3_uri": online["uris"]["good"]}), None
    )
    assert response["statusCode"] == 500
    message = body_of(response)["error"]["message"]
    assert "IMAGE_SIZE" in message or "MODEL_SYMBOL" in message


def test_a_model_the_variables_do_not_name_is_a_500_naming_them(online, monkeypatch):
    monkeypatch.delenv("MODEL_PARAMS")  # runtime mxnet (the default) needs the symbol and params
    response = lambda_handler.handler(
        api_json(online["bucket"], {"s3_uri": online["uris"]["good"]}), None
    )
    assert response["statusCode"] == 500
    message = body_of(response)["error"]["message"]
    assert "environment: MODEL_ONNX, MODEL_PARAMS, MODEL_SYMBOL: the model needs" in message


def test_an_onnx_model_needs_no_mxnet_variables(online, monkeypatch):
    """RUNTIME=onnxruntime with MODEL_ONNX alone (a pipeline's own ONNX file): the same row."""
    pytest.importorskip("onnxruntime", reason="emr-7.2.0 EMR nodes lack it")
    uri, digest = converted_tiny_model(online)
    for name in ("MODEL_SYMBOL", "MODEL_PARAMS", "MODEL_SYMBOL_SHA256", "MODEL_PARAMS_SHA256"):
        monkeypatch.delenv(name)
    for name, value in {
        "RUNTIME": "onnxruntime",
        "MODEL_ONNX": uri,
        "MODEL_ONNX_SHA256": digest,
    }.items():
        monkeypatch.setenv(name, value)
    response = lambda_handler.handler(
        api_json(online["bucket"], {"s3_uri": online["uris"]["good"]}), None
    )
    assert response["statusCode"] == 200, response
    image = online["objects"]["good"].body
    assert_prediction(online, body_of(response), online["uris"]["good"], image)


def cli(online: dict, *args: str, python: list[str] | None = None) -> subprocess.CompletedProcess:
    """The CLI (``python -m batch_inference.online``, or ``python`` given) on the tiny model."""
    model = [
        "--model-name", "tiny", "--image-size", str(SIZE), "--top-k", "3",
        "--run-id", "spot-check",
    ]  # fmt: skip
    for part in ("symbol", "params", "labels"):
        model += [f"--model-{part}", online["env"][f"MODEL_{part.upper()}"]]
        model += [f"--model-{part}-sha256", online["env"][f"MODEL_{part.upper()}_SHA256"]]
    return subprocess.run(
        [sys.executable, *(python or ["-m", "batch_inference.online"]), *args, *model],
        cwd=REPO_ROOT / "spark_jobs",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_prints_the_row_of_an_s3_object_and_of_a_local_file(online, tmp_path: Path):
    uri = online["uris"]["good"]
    image = online["objects"]["good"].body
    process = cli(online, uri)
    assert process.returncode == 0, process.stderr
    assert_prediction(online, json.loads(process.stdout), uri, image)
    local = tmp_path / "digit.png"
    local.write_bytes(image)
    process = cli(online, str(local))
    assert process.returncode == 0, process.stderr
    assert_prediction(online, json.loads(process.stdout), str(local), image)


def test_the_cli_exits_1_with_the_error_row_and_2_on_an_unreadable_file(online, tmp_path):
    process = cli(online, online["uris"]["corrupt"])
    assert process.returncode == 1
    assert json.loads(process.stdout)["error"]["type"] == "corrupt_image"
    process = cli(online, str(tmp_path / "nope.png"))
    assert process.returncode == 2
    assert "image: cannot read" in process.stderr


def test_the_readmes_cli_block_runs_as_written(s3_env):
    """docs/DEPLOYMENT.md's block, run by bash as written, against the local S3 holding objects at
    its URIs: the tiny model stands for the demo's digits CNN (same files, same flags; 32 px)."""
    from emr_inference_tools.demo.run_demo import IMAGES_BUCKET, MODEL_PREFIX, MODELS_BUCKET
    from tests.support import runbook

    (block,) = [b for b in runbook.blocks("bash") if "-m batch_inference.online" in b.first_line]
    date = "2026-12-06"
    uris = [uri.replace("$DATE", date) for uri in re.findall(r"s3://[^\s\"]+", block.code)]
    assert len(uris) == 4  # the image, then symbol, params and labels
    # the image and the model files are where make airflow
    # (emr_inference_tools.demo.run_demo.seed_demo) puts them
    first = demo_objects(1, 0.0)[0]
    assert uris[0] == f"s3://{IMAGES_BUCKET}/images/dt={date}/{first.name}"
    model_root = f"s3://{MODELS_BUCKET}/{MODEL_PREFIX}/digits-cnn-"
    assert all(uri.startswith(model_root) for uri in uris[1:])
    symbol, params, labels, _ = tiny_model_files(classes=10, image_size=32)
    image = first.body
    client = s3_env.client()
    bodies = [image, symbol.encode(), params, "\n".join(labels).encode()]
    for uri, body in zip(uris, bodies):
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key=key, Body=body)
    process = subprocess.run(
        ["bash", "-c", block.code],
        cwd=REPO_ROOT,
        env={**os.environ, "DATE": date},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    row = json.loads(process.stdout)
    assert (row["key"], row["model"], row["error"]) == (uris[0], "digits-cnn", None)
    assert len(row["top_k"]) == 3


def converted_tiny_model(online: dict) -> tuple[str, str]:
    """The tiny model converted as the batch job converts it, in S3: (URI, sha256)."""
    from batch_inference.convert import export_onnx

    client, bucket = online["client"], online["bucket"]
    symbol = client.get_object(Bucket=bucket, Key="model/symbol")["Body"].read().decode()
    params = client.get_object(Bucket=bucket, Key="model/params")["Body"].read()
    onnx = export_onnx(symbol, params, "data", SIZE)
    client.put_object(Bucket=bucket, Key="converted/model.onnx", Body=onnx)
    return f"s3://{bucket}/converted/model.onnx", sha256_hex(onnx)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_converted_model_answers_online_without_mxnet(online, runtime):
    """--runtime onnxruntime or openvino: the row of the MXNet model, computed with MXNet
    unimportable (as in a Lambda image that ships ONNX Runtime alone)."""
    pytest.importorskip(runtime, reason="emr-7.2.0 EMR nodes lack it")
    uri, digest = converted_tiny_model(online)
    args = [online["uris"]["good"], "--runtime", runtime, "--model-onnx", uri,
            "--model-onnx-sha256", digest]  # fmt: skip
    code = (
        "import sys; sys.modules['mxnet'] = None  # import mxnet now raises ImportError\n"
        "from batch_inference.online import main; sys.exit(main(sys.argv[1:]))"
    )
    process = cli(online, *args, python=["-c", code])
    assert process.returncode == 0, process.stderr
    assert_prediction(online, json.loads(process.stdout), args[0], online["objects"]["good"].body)

    wrong = cli(online, *args[:-1], "0" * 64)
    assert wrong.returncode == 1 and "sha256 mismatch for the ONNX model" in wrong.stderr
    lacking = cli(online, args[0], "--runtime", runtime)
    assert lacking.returncode == 2
    assert (
        f"--model-onnx is needed with --runtime {runtime}, and only with a runtime other than "
        "mxnet" in lacking.stderr
    )
