"""Runtime onnxruntime on the driver: the trained demo digits CNN converted once from MXNet to ONNX,
cached by content, and used only when its top-1 agreement with MXNet on the run's own images is
high enough (batch_inference.convert)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
from batch_inference import convert
from batch_inference.agreement import decode_sample, middle_keys
from batch_inference.config import ConversionSettings, JobConfig
from batch_inference.errors import JobFailed, ModelLoadError
from batch_inference.model import bind_model, load_model

from tests.support.digits_run import digits_run
from tests.support.noisy_model import noisy_params

pytest.importorskip("onnxruntime", reason="emr-7.2.0 EMR nodes lack it")
pytestmark = pytest.mark.slow  # trains a model and converts it (~15 s)

CACHE = "artifacts/converted/"


@pytest.fixture
def run(bucket, s3_env, trained_digits):
    """The digits model and 120 held-out digits in S3; an onnxruntime config for them."""
    client = s3_env.client()
    config, manifest = digits_run(
        client, bucket, trained_digits, 120, {"runtime": "onnxruntime"},
        conversion=ConversionSettings(cache_uri=f"s3://{bucket}/{CACHE}"),
    )  # fmt: skip
    return client, config, manifest, bucket


def cache_entries(client, bucket: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=bucket, Prefix=CACHE)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_the_model_is_converted_once_and_answers_as_mxnet_does(run, monkeypatch):
    client, config, manifest, bucket = run
    ready = convert.prepare_runtime(client, config, manifest)

    assert ready.conversion_agreement == 1.0
    assert ready.model.runtime == "onnxruntime" and ready.model.onnx_uri.endswith("/model.onnx")
    entries = cache_entries(client, bucket)
    assert [entry.split("/")[-1] for entry in entries] == ["conversion.json", "model.onnx"]
    record = json.loads(client.get_object(Bucket=bucket, Key=entries[0])["Body"].read())
    onnx_file = client.get_object(Bucket=bucket, Key=entries[1])["Body"].read()
    assert record["onnx_sha256"] == hashlib.sha256(onnx_file).hexdigest() == ready.model.onnx_sha256
    assert (record["agreement"], record["measured_on"]) == (1.0, config.manifest_uri)
    assert record["agreement_images"] >= 115  # the run's 120 keys, the bad images skipped

    # what the tasks load: the same probabilities as MXNet's forward, every image
    tensors = decode_sample(client, middle_keys(client, manifest, 120), config, "test")
    onnx_model = load_model(client, ready.model, 32, config.preprocess.image_size)
    source = convert.MxnetModel.fetch(client, dataclasses.replace(config.model, runtime="mxnet"))
    mxnet_model = bind_model(
        source.spec, source.symbol.decode(), source.params, source.labels, 32, 32
    )
    for start in range(0, len(tensors), 32):
        batch = tensors[start : start + 32]
        np.testing.assert_allclose(onnx_model.predict(batch), mxnet_model.predict(batch), atol=1e-5)

    def must_not_convert(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(convert, "export_onnx", must_not_convert)
    again = convert.prepare_runtime(client, config, manifest)  # found in the cache
    assert again.model == ready.model and again.conversion_agreement == 1.0


def test_the_converted_graph_takes_only_the_images_and_any_batch(run):
    import onnx

    client, config, manifest, bucket = run
    ready = convert.prepare_runtime(client, config, manifest)
    graph = onnx.load_from_string(
        client.get_object(Bucket=bucket, Key=cache_entries(client, bucket)[1])["Body"].read()
    )
    # weights are initializers only (ONNX Runtime folds them), the batch axis is dynamic
    assert [item.name for item in graph.graph.input] == ["data"]
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {p.key: p.value for p in graph.metadata_props} == {
        "batch_inference.outputs_probabilities": "false"  # the digits CNN ends in a dense layer
    }
    model = load_model(client, ready.model, 32, 32)
    assert model.predict(np.zeros((3, 3, 32, 32), np.float32)).shape == (3, 10)


def plant_disagreeing_conversion(client, config: JobConfig, bucket: str) -> None:
    """Cache, as the converted model of ``config``, one that disagrees with MXNet."""
    source = convert.MxnetModel.fetch(client, config.model)
    onnx_file = convert.export_onnx(source.symbol.decode(), noisy_params(source.params), "data", 32)
    digests = hashlib.sha256(source.symbol).hexdigest(), hashlib.sha256(source.params).hexdigest()
    key = convert.cache_key(config.model, *digests, 32)
    client.put_object(Bucket=bucket, Key=f"{CACHE}{key}/model.onnx", Body=onnx_file)
    record = {
        "onnx_sha256": hashlib.sha256(onnx_file).hexdigest(),
        "agreement": 1.0,  # as recorded where it was converted: every run measures again
        "agreement_images": 256,
        "measured_on": "s3://elsewhere/manifest.json",
    }
    client.put_object(Bucket=bucket, Key=f"{CACHE}{key}/conversion.json", Body=json.dumps(record))


def test_a_converted_model_that_disagrees_is_refused_naming_the_agreement(run):
    client, config, manifest, bucket = run
    plant_disagreeing_conversion(client, config, bucket)
    with pytest.raises(
        JobFailed,
        match=r"converted for onnxruntime agrees with MXNet's top-1 on \d+\.\d+% of 1\d\d "
        r"images of s3://.*/run/manifest\.json, below --conversion-min-agreement 99\.00%",
    ):
        convert.prepare_runtime(client, config, manifest)


def test_a_converted_model_that_disagrees_is_never_cached(run, monkeypatch):
    client, config, manifest, bucket = run
    real_export = convert.export_onnx

    def export_noisy(symbol_json, params, input_name, image_size):
        return real_export(symbol_json, noisy_params(params), input_name, image_size)

    monkeypatch.setattr(convert, "export_onnx", export_noisy)
    with pytest.raises(JobFailed, match="below --conversion-min-agreement"):
        convert.prepare_runtime(client, config, manifest)
    assert cache_entries(client, bucket) == []


def test_without_mxnet_a_cached_conversion_is_used_and_a_missing_one_is_named(run, monkeypatch):
    """A node of a release without MXNet: the cache key needs no MXNet, the agreement is the one
    recorded when the model was converted."""
    client, config, manifest, bucket = run
    monkeypatch.setattr(convert, "mxnet_installed", lambda: False)
    with pytest.raises(
        JobFailed,
        match=r"runtime onnxruntime: no converted model for s3://.*/digits-cnn-symbol\.json in "
        r"s3://.*/artifacts/converted/[0-9a-f]{64}/, and MXNet is not installed here to convert "
        r"it: convert it first where MXNet is \(make convert PIPELINE=<pipeline> DATE=",
    ):
        convert.prepare_runtime(client, config, manifest)
    assert cache_entries(client, bucket) == []

    monkeypatch.setattr(convert, "mxnet_installed", lambda: True)
    converted = convert.prepare_runtime(client, config, manifest)
    monkeypatch.setattr(convert, "mxnet_installed", lambda: False)
    monkeypatch.setattr(convert, "bind_model", None)  # no MXNet forward without MXNet
    ready = convert.prepare_runtime(client, config, manifest)
    assert ready.model == converted.model and ready.conversion_agreement == 1.0

    # with the pipeline's digests the node downloads no MXNet file: the same entry is found
    source = convert.MxnetModel.fetch(client, config.model)
    declared = dataclasses.replace(
        config,
        model=dataclasses.replace(
            config.model,
            symbol_sha256=hashlib.sha256(source.symbol).hexdigest().upper(),
            params_sha256=hashlib.sha256(source.params).hexdigest(),
        ),
    )
    monkeypatch.setattr(convert.MxnetModel, "fetch", None)  # a download would fail the test
    assert (
        convert.prepare_runtime(client, declared, manifest).model.onnx_uri == ready.model.onnx_uri
    )
    monkeypatch.undo()
    monkeypatch.setattr(convert, "mxnet_installed", lambda: False)

    plant_disagreeing_conversion(client, config, bucket)
    key = cache_entries(client, bucket)[0]
    record = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    record["agreement"] = 0.5
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(record))
    with pytest.raises(JobFailed, match=r"on 50\.00% of 256 images of s3://elsewhere/manifest"):
        convert.prepare_runtime(client, config, manifest)


def test_openvino_runs_the_same_converted_model_and_answers_as_mxnet_does(run):
    """runtime openvino: the one conversion both converted runtimes share (the key has no
    runtime), gated again with OpenVINO's own forward; in fp32, MXNet's probabilities."""
    pytest.importorskip("openvino", reason="emr-7.2.0 EMR nodes lack it")
    from batch_inference.runtime import OpenVinoModel

    client, config, manifest, bucket = run
    onnx_ready = convert.prepare_runtime(client, config, manifest)
    openvino = dataclasses.replace(
        config, model=dataclasses.replace(config.model, runtime="openvino")
    )
    ready = convert.prepare_runtime(client, openvino, manifest)
    assert ready.conversion_agreement == 1.0 and ready.model.runtime == "openvino"
    assert ready.model.onnx_uri == onnx_ready.model.onnx_uri  # converted once
    assert len(cache_entries(client, bucket)) == 2  # conversion.json, model.onnx

    model = load_model(client, ready.model, 32, config.preprocess.image_size)
    assert isinstance(model, OpenVinoModel)
    tensors = decode_sample(client, middle_keys(client, manifest, 64), config, "test")
    source = convert.MxnetModel.fetch(client, dataclasses.replace(config.model, runtime="mxnet"))
    mxnet_model = bind_model(
        source.spec, source.symbol.decode(), source.params, source.labels, 32, 32
    )
    for start in range(0, len(tensors), 32):
        batch = tensors[start : start + 32]
        np.testing.assert_allclose(model.predict(batch), mxnet_model.predict(batch), atol=1e-5)
    assert model.predict(tensors[:3]).shape == (3, 10)  # a short batch, not padded


@pytest.fixture
def given_onnx(run):
    """The same run, its model named as an ONNX file (MXNet's export of the digits CNN) instead of
    an MXNet symbol and params: no conversion cache."""
    client, config, manifest, bucket = run
    source = convert.MxnetModel.fetch(client, dataclasses.replace(config.model, runtime="mxnet"))
    onnx = convert.export_onnx(source.symbol.decode(), source.params, "data", 32)
    client.put_object(Bucket=bucket, Key="onnx/digits.onnx", Body=onnx)
    spec = dataclasses.replace(
        config.model, symbol_uri=None, params_uri=None, onnx_uri=f"s3://{bucket}/onnx/digits.onnx"
    )
    given = dataclasses.replace(config, model=spec, conversion=None)
    return client, given, manifest, bucket, onnx, source


def test_an_onnx_file_is_run_as_it_is_pinned_to_its_digest_and_never_converted(
    given_onnx, monkeypatch
):
    client, config, manifest, bucket, onnx, source = given_onnx
    monkeypatch.setattr(convert, "export_onnx", lambda *args: pytest.fail("converted"))
    monkeypatch.setattr(convert, "measure", lambda *args: pytest.fail("measured against MXNet"))
    ready = convert.prepare_runtime(client, config, manifest)

    assert ready.model.onnx_uri == config.model.onnx_uri and ready.model.given_onnx
    assert ready.model.onnx_sha256 == hashlib.sha256(onnx).hexdigest()  # pinned for the tasks
    assert ready.conversion_agreement is None  # nothing converted: no agreement to report
    assert cache_entries(client, bucket) == []

    tensors = decode_sample(client, middle_keys(client, manifest, 64), config, "test")
    onnx_model = load_model(client, ready.model, 32, config.preprocess.image_size)
    mxnet_model = bind_model(
        source.spec, source.symbol.decode(), source.params, source.labels, 32, 32
    )
    np.testing.assert_allclose(
        onnx_model.predict(tensors[:32]), mxnet_model.predict(tensors[:32]), atol=1e-5
    )

    # the file replaced after the driver pinned it: a task refuses it rather than mix models
    client.put_object(Bucket=bucket, Key="onnx/digits.onnx", Body=onnx + b"\0")
    with pytest.raises(ModelLoadError, match="sha256 mismatch for the ONNX model"):
        load_model(client, ready.model, 16, config.preprocess.image_size)


def test_an_onnx_file_whose_digest_differs_from_the_pipelines_is_refused_by_the_driver(given_onnx):
    client, config, manifest, *_ = given_onnx
    wrong = dataclasses.replace(config.model, onnx_sha256="0" * 64)
    with pytest.raises(
        ModelLoadError, match=r"sha256 mismatch for --model-onnx s3://.*digits\.onnx"
    ):
        convert.prepare_runtime(client, dataclasses.replace(config, model=wrong), manifest)
    missing = dataclasses.replace(config.model, onnx_uri=config.model.onnx_uri + ".missing")
    with pytest.raises(ModelLoadError, match=r"cannot download --model-onnx"):
        convert.prepare_runtime(client, dataclasses.replace(config, model=missing), manifest)
