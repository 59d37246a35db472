"""int8 on the driver: the trained demo digits CNN quantized with MXNet's oneDNN quantization,
cached once, and used only when its top-1 agreement with fp32 on the run's own images is high
enough (batch_inference.quantize)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json

import pytest
from batch_inference import quantize
from batch_inference.config import Int8Settings, JobConfig, ModelSpec
from batch_inference.errors import JobFailed
from batch_inference.int8 import int8_gate, prepare_int8
from batch_inference.manifest import iter_keys, read_manifest
from PIL import Image

from tests.support.digits_run import digits_run
from tests.support.noisy_model import noisy_params


@pytest.fixture
def run(bucket, s3_env, trained_digits):
    """The digits model and 200 held-out digits in S3; an int8 config for them."""
    client = s3_env.client()
    config, manifest = digits_run(
        client, bucket, trained_digits, 200, {},
        precision="int8",
        int8=Int8Settings(
            cache_uri=f"s3://{bucket}/artifacts/int8/",
            min_agreement=0.97,
            calibration_images=64,
            agreement_images=100,
        ),
    )  # fmt: skip
    return client, config, manifest, bucket


def cache_entries(client, bucket: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=bucket, Prefix="artifacts/int8/")
    return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.mark.slow  # trains a model and quantizes it (~20 s)
def test_int8_is_made_once_and_used_when_it_agrees_with_fp32(run, monkeypatch):
    client, config, manifest, bucket = run
    ready = prepare_int8(client, config, manifest)

    assert ready.precision == "int8"
    assert ready.int8_agreement >= 0.97
    assert ready.model.symbol_uri.endswith("/int8-symbol.json")
    # oneDNN keeps the fp32 weights and quantizes them when the graph is bound: the symbol, with
    # its quantized operators and calibrated ranges, is what differs
    fp32_symbol = client.get_object(Bucket=bucket, Key="model/digits-cnn-symbol.json")["Body"]
    assert ready.model.symbol_sha256 != hashlib.sha256(fp32_symbol.read()).hexdigest()
    entries = cache_entries(client, bucket)
    assert [entry.split("/")[-1] for entry in entries] == [
        "int8-0000.params", "int8-symbol.json", "quantization.json",
    ]  # fmt: skip
    record = json.loads(client.get_object(Bucket=bucket, Key=entries[-1])["Body"].read())
    assert 60 <= record["calibration_images"] <= 64  # the first 64 keys, bad images skipped
    assert record["settings"]["calib_mode"] == "naive"
    symbol = client.get_object(Bucket=bucket, Key=entries[1])["Body"].read()
    ops = {node["op"] for node in json.loads(symbol)["nodes"]}
    assert any("quantize" in op for op in ops)  # a real int8 graph, dense layers kept fp32

    def must_not_quantize(*args, **kwargs):
        raise AssertionError("quantized again")

    monkeypatch.setattr(quantize, "quantize", must_not_quantize)
    again = prepare_int8(client, config, manifest)  # the cache is found: no quantize
    assert again.model == ready.model and again.int8_agreement == ready.int8_agreement


def plant_disagreeing_int8(
    client,
    config: JobConfig,
    bucket: str,
    symbol_key: str = "model/digits-cnn-symbol.json",
    params_key: str = "model/digits-cnn-0000.params",
    seed: int = 0,
) -> None:
    """Cache, as the int8 model of ``config``, one that disagrees with fp32 (noisy weights)."""
    symbol = client.get_object(Bucket=bucket, Key=symbol_key)["Body"].read()
    params = client.get_object(Bucket=bucket, Key=params_key)["Body"].read()
    noisy = noisy_params(params, seed=seed)
    folder = f"artifacts/int8/{quantize.cache_key(symbol, params, config)}/"
    client.put_object(Bucket=bucket, Key=folder + "int8-symbol.json", Body=symbol)
    client.put_object(Bucket=bucket, Key=folder + "int8-0000.params", Body=noisy)
    record = {
        "symbol_sha256": hashlib.sha256(symbol).hexdigest(),
        "params_sha256": hashlib.sha256(noisy).hexdigest(),
    }
    client.put_object(Bucket=bucket, Key=folder + "quantization.json", Body=json.dumps(record))


def assert_refused_then_run_in_fp32(client, config: JobConfig, manifest) -> None:
    """With a disagreeing int8 model cached: the run fails naming the agreement, or, with
    ``--int8-fallback``, runs its fp32 model (``config.model``)."""
    with pytest.raises(JobFailed, match=r"int8 top-1 agreement with fp32 is \d+\.\d+% on 98 "):
        prepare_int8(client, config, manifest)

    fallback = dataclasses.replace(config, int8=dataclasses.replace(config.int8, fallback=True))
    ready = prepare_int8(client, fallback, manifest)
    assert ready.precision == "fp32" and ready.model == config.model
    assert ready.int8_agreement < 0.97


@pytest.mark.slow  # trains a model and quantizes it (~20 s)
def test_an_int8_model_that_disagrees_is_refused_naming_the_agreement(run):
    client, config, manifest, bucket = run
    plant_disagreeing_int8(client, config, bucket)
    assert_refused_then_run_in_fp32(client, config, manifest)


@pytest.mark.slow  # trains a model and quantizes it (~20 s)
def test_calibration_images_come_from_the_named_prefix(run):
    client, config, manifest, bucket = run
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="PNG")
    for index in range(5):
        client.put_object(Bucket=bucket, Key=f"calib/{index}.png", Body=buffer.getvalue())
    client.put_object(Bucket=bucket, Key="calib/notes.txt", Body=b"not an image")
    settings = dataclasses.replace(config.int8, calibration_uri=f"s3://{bucket}/calib/")
    first_keys = quantize.manifest_keys(client, manifest)
    keys = quantize.calibration_keys(client, settings, first_keys)
    assert keys == [f"s3://{bucket}/calib/{index}.png" for index in range(5)]
    # without one, the run's own first images
    assert quantize.calibration_keys(client, config.int8, first_keys) == list(
        iter_keys(client, manifest, 0, config.int8.calibration_images)
    )


#: an int8 run's config and the int8 model the gate chooses between (no model is loaded)
FP32 = ModelSpec("m", "s3://b/m/s.json", "s3://b/m/p.params", "s3://b/m/l.txt")
INT8 = ModelSpec("m", "s3://b/c/int8-symbol.json", "s3://b/c/int8-0000.params", "s3://b/m/l.txt")
GATED = JobConfig(
    "s3://b/run/manifest.json", "s3://b/run/out/", "run-1", FP32,
    precision="int8", int8=Int8Settings("s3://b/c/", min_agreement=0.9),
)  # fmt: skip


@pytest.mark.parametrize("agreement", [0.9, 0.95, 1.0])
def test_the_gate_runs_int8_when_the_agreement_reaches_the_minimum(agreement):
    ready = int8_gate(GATED, INT8, agreement, 100)
    assert ready.precision == "int8" and ready.model == INT8
    assert ready.int8_agreement == agreement
    assert dataclasses.replace(ready, model=FP32, precision="int8", int8_agreement=None) == GATED


def test_the_gate_refuses_an_agreement_below_the_minimum_naming_both():
    with pytest.raises(JobFailed) as refused:
        int8_gate(GATED, INT8, 0.8875, 80)
    assert str(refused.value) == (
        "int8 top-1 agreement with fp32 is 88.75% on 80 images of this run, "
        "below --int8-min-agreement 90.00%"
    )


def test_the_gate_falls_back_to_the_fp32_model_with_int8_fallback():
    fallback = dataclasses.replace(GATED, int8=dataclasses.replace(GATED.int8, fallback=True))
    ready = int8_gate(fallback, INT8, 0.8999, 80)
    assert ready.precision == "fp32" and ready.model == FP32
    assert ready.int8_agreement == 0.8999  # measured, written into the metrics
    assert dataclasses.replace(ready, precision="int8", int8_agreement=None) == fallback


def tiny_int8_run(setup, bucket: str, **settings) -> tuple:
    """The unit tests' tiny model and run (40 images, 8 bad), in int8 with ``settings``."""
    env, config = setup
    int8 = Int8Settings(f"s3://{bucket}/artifacts/int8/", **{"calibration_images": 8, **settings})
    config = dataclasses.replace(config, precision="int8", int8=int8)
    return env["client"], config, read_manifest(env["client"], config.manifest_uri)


def test_the_tiny_models_int8_is_gated_on_the_runs_middle_images(setup, bucket):
    """int8 made from the run's first images, then measured against fp32 on
    ``--int8-agreement-images`` from the middle of the run (undecodable ones left out)."""
    client, config, manifest = tiny_int8_run(setup, bucket, agreement_images=10)
    ready = prepare_int8(client, config, manifest)
    assert ready.precision == "int8" and ready.int8_agreement == 1.0  # dense layers stay fp32
    assert ready.model.symbol_uri.startswith(f"s3://{bucket}/artifacts/int8/")
    assert ready.model.symbol_uri.endswith("/int8-symbol.json")
    assert dataclasses.replace(ready, model=config.model, int8_agreement=None) == config

    # seed 1: the tiny model's weights were drawn with seed 0, whose noise would only scale them
    plant_disagreeing_int8(
        client, config, bucket, "model/symbol.json", "model/model.params", seed=1
    )
    with pytest.raises(JobFailed, match=r"is \d+\.\d+% on 8 images of this run, below"):
        prepare_int8(client, config, manifest)  # the middle 10 keys hold 2 bad images


def test_a_run_whose_agreement_sample_does_not_decode_fails_naming_the_int8_gate(setup, bucket):
    client, config, manifest = tiny_int8_run(setup, bucket, agreement_images=1)
    middle = setup[0]["uris"][(manifest.total - 1) // 2]
    bucket_name, key = middle.removeprefix("s3://").split("/", 1)
    client.put_object(Bucket=bucket_name, Key=key, Body=b"not an image")
    with pytest.raises(JobFailed, match=r"^int8: none of the sample images could be decoded$"):
        prepare_int8(client, config, manifest)
