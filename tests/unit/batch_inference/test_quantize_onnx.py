"""int8 on ONNX Runtime, on the driver: the converted digits CNN quantized once by ONNX Runtime's
static quantizer, cached by content, and used only when its top-1 agreement with the converted fp32
model on the run's own images is high enough (batch_inference.quantize_onnx through
batch_inference.int8.prepare_int8)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from batch_inference import convert, quantize_onnx
from batch_inference.config import ConversionSettings, Int8Settings, JobConfig
from batch_inference.errors import JobFailed
from batch_inference.int8 import prepare_int8
from batch_inference.manifest import read_manifest

from tests.support.digits_run import digits_run
from tests.support.noisy_model import noisy_params
from tests.unit.batch_inference.test_quantize import assert_refused_then_run_in_fp32

pytest.importorskip("onnxruntime", reason="emr-7.2.0 EMR nodes lack it")
#: the digits tests train a model, convert and quantize it (~20 s)
slow = pytest.mark.slow

INT8_CACHE = "artifacts/int8/"


@pytest.fixture
def run(bucket, s3_env, trained_digits):
    """The digits model and 200 held-out digits in S3; an onnxruntime int8 config for them, its
    model already converted (as prepare_runtime leaves it for prepare_int8)."""
    client = s3_env.client()
    config, manifest = digits_run(
        client, bucket, trained_digits, 200, {"runtime": "onnxruntime"},
        precision="int8",
        conversion=ConversionSettings(cache_uri=f"s3://{bucket}/artifacts/converted/"),
        int8=Int8Settings(
            cache_uri=f"s3://{bucket}/{INT8_CACHE}",
            min_agreement=0.97,
            calibration_images=64,
            agreement_images=100,
        ),
    )  # fmt: skip
    return client, convert.prepare_runtime(client, config, manifest), manifest, bucket


def cache_entries(client, bucket: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=bucket, Prefix=INT8_CACHE)
    return sorted(item["Key"] for item in listing.get("Contents", []))


@slow
def test_int8_is_quantized_once_from_the_converted_model_and_used_when_it_agrees(run, monkeypatch):
    import onnx

    client, config, manifest, bucket = run
    ready = prepare_int8(client, config, manifest)

    assert ready.precision == "int8" and 0.97 <= ready.int8_agreement <= 1.0
    assert ready.conversion_agreement == config.conversion_agreement == 1.0
    assert ready.model.onnx_uri.endswith("/int8.onnx") and ready.model.runtime == "onnxruntime"
    entries = cache_entries(client, bucket)
    assert [entry.split("/")[-1] for entry in entries] == ["int8.onnx", "quantization.json"]
    int8_file = client.get_object(Bucket=bucket, Key=entries[0])["Body"].read()
    record = json.loads(client.get_object(Bucket=bucket, Key=entries[1])["Body"].read())
    assert record["onnx_sha256"] == hashlib.sha256(int8_file).hexdigest() == ready.model.onnx_sha256
    assert record["fp32_onnx_sha256"] == config.model.onnx_sha256  # made from the converted one
    assert 60 <= record["calibration_images"] <= 64  # the run's first 64 keys, bad ones skipped
    assert record["calibration"] == f"{config.manifest_uri} (first keys)"
    # a real int8 graph: int8 weights, quantize/dequantize pairs around the int8 kernels
    graph = onnx.load_from_string(int8_file).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(item.data_type == onnx.TensorProto.INT8 for item in graph.initializer)

    def must_not_quantize(*args, **kwargs):
        raise AssertionError("quantized again")

    monkeypatch.setattr(quantize_onnx, "quantize", must_not_quantize)
    again = prepare_int8(client, config, manifest)  # found in the cache
    assert again.model == ready.model and again.int8_agreement == ready.int8_agreement


def plant_disagreeing_int8(client, config: JobConfig, bucket: str) -> None:
    """Cache, as the int8 model of ``config``'s converted model, one that disagrees with it."""
    source = convert.MxnetModel.fetch(client, config.model)
    noisy = convert.export_onnx(source.symbol.decode(), noisy_params(source.params), "data", 32)
    folder = f"{INT8_CACHE}{quantize_onnx.cache_key(config.model.onnx_sha256, config)}/"
    client.put_object(Bucket=bucket, Key=folder + "int8.onnx", Body=noisy)
    record = {"onnx_sha256": hashlib.sha256(noisy).hexdigest()}
    client.put_object(Bucket=bucket, Key=folder + "quantization.json", Body=json.dumps(record))


@slow
def test_an_int8_model_that_disagrees_is_refused_or_falls_back_to_the_converted_fp32(run):
    client, config, manifest, bucket = run
    plant_disagreeing_int8(client, config, bucket)
    assert_refused_then_run_in_fp32(client, config, manifest)  # config.model: the converted one


@slow
def test_without_the_quantizer_a_cached_int8_is_used_and_a_missing_one_is_named(run, monkeypatch):
    """An emr-7.13.0 node: ONNX Runtime without onnx; the key needs only onnxruntime."""
    client, config, manifest, bucket = run
    monkeypatch.setattr(quantize_onnx, "quantizer_installed", lambda: False)
    with pytest.raises(
        JobFailed,
        match=r"precision int8 on onnxruntime: no int8 model of s3://.*/model\.onnx in "
        r"s3://.*/artifacts/int8/[0-9a-f]{64}/, .* \(make convert PIPELINE=<pipeline> DATE=",
    ):
        prepare_int8(client, config, manifest)
    assert cache_entries(client, bucket) == []

    monkeypatch.undo()
    made = prepare_int8(client, config, manifest)  # where the quantizer is
    monkeypatch.setattr(quantize_onnx, "quantizer_installed", lambda: False)
    found = prepare_int8(client, config, manifest)
    assert found.model == made.model and found.precision == "int8"


@slow
def test_openvino_runs_the_same_int8_model_behind_its_own_gate(run):
    """runtime openvino, precision int8: the one int8 file (ONNX Runtime's QDQ quantization of
    the shared converted model) run by OpenVINO's int8 kernels, gated on OpenVINO's agreement."""
    pytest.importorskip("openvino", reason="emr-7.2.0 EMR nodes lack it")
    from batch_inference.model import load_model
    from batch_inference.runtime import OpenVinoModel

    client, config, manifest, bucket = run
    onnx_ready = prepare_int8(client, config, manifest)
    openvino = dataclasses.replace(
        config, model=dataclasses.replace(config.model, runtime="openvino")
    )
    ready = prepare_int8(client, openvino, manifest)
    assert ready.precision == "int8" and ready.int8_agreement >= 0.97
    assert ready.model.onnx_uri == onnx_ready.model.onnx_uri  # quantized once
    assert len(cache_entries(client, bucket)) == 2
    model = load_model(client, ready.model, 32, config.preprocess.image_size)
    assert isinstance(model, OpenVinoModel)


def test_the_tiny_converted_models_int8_is_quantized_from_the_runs_first_images(setup, bucket):
    """A run on ONNX Runtime quantizes its converted model (not MXNet's), calibrated on the run's
    first images, and the gate measures it against the converted fp32 model."""
    env, config = setup
    client = env["client"]
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, runtime="onnxruntime"),
        precision="int8",
        conversion=ConversionSettings(cache_uri=f"s3://{bucket}/artifacts/converted/"),
        int8=Int8Settings(f"s3://{bucket}/{INT8_CACHE}", min_agreement=0.5, calibration_images=8),
    )
    manifest = read_manifest(client, config.manifest_uri)
    converted = convert.prepare_runtime(client, config, manifest)
    ready = prepare_int8(client, converted, manifest)
    assert ready.precision == "int8" and 0.5 <= ready.int8_agreement <= 1.0
    assert ready.model.runtime == "onnxruntime" and ready.model.onnx_uri.endswith("/int8.onnx")
    assert ready.model.onnx_uri.startswith(f"s3://{bucket}/{INT8_CACHE}")
    marker = next(key for key in cache_entries(client, bucket) if key.endswith(".json"))
    record = json.loads(client.get_object(Bucket=bucket, Key=marker)["Body"].read())
    assert record["fp32_onnx"] == converted.model.onnx_uri
    assert record["calibration"] == f"{config.manifest_uri} (first keys)"
    assert 6 <= record["calibration_images"] <= 8  # the first 8 keys, bad images skipped
