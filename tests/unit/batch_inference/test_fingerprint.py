"""The run fingerprint: what changes a partition's rows changes it, nothing else does."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
from batch_inference.config import (
    ConversionSettings,
    Encryption,
    Int8Settings,
    JobConfig,
    ModelSpec,
    Preprocess,
)
from batch_inference.contract.settings import (
    CONVERSION,
    FLOAT,
    FLOATS3,
    INT,
    REPEAT,
    ROW_SETTINGS,
    SETTINGS,
    JobSetting,
)
from batch_inference.errors import ModelLoadError
from batch_inference.fingerprint import model_identity, run_fingerprint
from batch_inference.manifest import parse_manifest

MODEL = ModelSpec("m", "s3://b/m/s.json", "s3://b/m/p.params", "s3://b/m/l.txt")
CONFIG = JobConfig("s3://b/run/manifest.json", "s3://b/run/out/", "run-1", MODEL)
IDENTITY = {"symbol": "etag:1", "params": "etag:2", "labels": "etag:3"}


def fingerprint(config: JobConfig = CONFIG, manifest: str = "0" * 64, model=None) -> str:
    return run_fingerprint(config, manifest, model or IDENTITY)


@pytest.mark.parametrize(
    "config",
    [
        replace(CONFIG, batch_size=7),
        replace(CONFIG, partitions=9),
        replace(CONFIG, max_error_rate=0.5),
        replace(CONFIG, prefetch_threads=2, prefetch_depth=5, omp_threads=3),
        replace(CONFIG, resume=False),
    ],
)
def test_execution_parameters_do_not_change_the_fingerprint(config):
    assert fingerprint(config) == fingerprint()


@pytest.mark.parametrize(
    ("config", "manifest", "model"),
    [
        (replace(CONFIG, top_k=3), None, None),
        (replace(CONFIG, run_id="run-2"), None, None),
        (replace(CONFIG, preprocess=Preprocess(image_size=96)), None, None),
        (replace(CONFIG, model=replace(MODEL, params_uri="s3://b/m/other.params")), None, None),
        (replace(CONFIG, model=replace(MODEL, input_name="x")), None, None),
        (replace(CONFIG, encryption=Encryption("AES256")), None, None),
        (CONFIG, "1" * 64, None),
        (CONFIG, None, {**IDENTITY, "params": "etag:changed"}),
    ],
)
def test_what_changes_the_rows_changes_the_fingerprint(config, manifest, model):
    assert fingerprint(config, manifest or "0" * 64, model) != fingerprint()
    assert len(fingerprint(config, manifest or "0" * 64, model)) == 64


#: every section set, so that each setting has a value to change
FULL = replace(
    CONFIG,
    precision="int8",
    int8=Int8Settings("s3://b/int8-cache/"),
    encryption=Encryption("aws:kms", "alias/a"),
)
#: the same on a runtime other than MXNet (its conversion settings set too)
CONVERTED = replace(
    FULL,
    model=replace(MODEL, runtime="onnxruntime"),
    conversion=ConversionSettings("s3://b/converted/"),
)


def changed(config, setting: JobSetting):
    """``config`` with ``setting`` at another valid value (at its ``job`` path)."""
    if setting.name == "sse.mode":  # a KMS key id needs aws:kms, so change the whole section
        return replace(config, encryption=Encryption("AES256"))
    value = setting.job_value(config)
    if isinstance(value, bool):  # a flag
        other = not value
    elif setting.choices:
        other = next(choice for choice in setting.choices if choice != value)
    elif setting.kind == INT:
        other = (value or 0) + 100
    elif setting.kind == FLOAT:
        other = value / 2
    elif setting.kind == FLOATS3:
        other = tuple(item / 2 for item in value)
    elif setting.kind == REPEAT:
        other = (*value, "numpy==1.0")
    else:  # text, set or unset
        other = (value or "s3://b/x/") + "other"
    *sections, field = setting.job.split(".")
    if not sections:
        return replace(config, **{field: other})
    section = getattr(config, sections[0])
    return replace(config, **{sections[0]: replace(section, **{field: other})})


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.name)
def test_exactly_the_settings_that_shape_the_rows_change_the_fingerprint(setting):
    """One list (the contract's ``shapes_rows``) decides it for the job and for the request
    fingerprint of a published date."""
    converted_only = setting.name in ("model.runtime", "model.onnx", "model.onnx_sha256")
    base = CONVERTED if converted_only or setting.group == CONVERSION else FULL
    other = changed(base, setting)
    assert setting.job_value(other) != setting.job_value(base)
    assert (fingerprint(other) != fingerprint(base)) == setting.shapes_rows


@pytest.mark.parametrize("config", [CONFIG, FULL], ids=["fp32", "int8"])
def test_settings_added_later_leave_earlier_fingerprints_as_they_were(config):
    """A run resumed across the deploy that added the runtime settings, with those at their
    defaults, has the fingerprint it had before they existed: its partitions are reused."""
    before = {
        "manifest_sha256": "0" * 64,
        "model_files": IDENTITY,
        "settings": {s.name: s.job_value(config) for s in ROW_SETTINGS if not s.added_later},
    }
    canonical = json.dumps(before, sort_keys=True, separators=(",", ":")).encode()
    assert fingerprint(config) == hashlib.sha256(canonical).hexdigest()
    assert fingerprint(CONVERTED) != fingerprint(replace(CONVERTED, model=MODEL, conversion=None))


def test_the_manifest_digest_is_that_of_its_bytes():
    body = b'{"version": 1, "total": 0, "shards": []}'
    other = b'{"version": 1, "total": 0, "shards": [], "source": "s3://b/x/"}'
    assert (
        parse_manifest("s3://b/m.json", body).sha256
        != parse_manifest("s3://b/m.json", other).sha256
    )
    assert (
        parse_manifest("s3://b/m.json", body).sha256 == parse_manifest("s3://c/n.json", body).sha256
    )


def test_model_identity_uses_digests_or_etags(bucket, s3_env):
    client = s3_env.client()
    for key in ("s.json", "p.params", "l.txt"):
        client.put_object(Bucket=bucket, Key=f"m/{key}", Body=key.encode())
    spec = ModelSpec(
        "m", f"s3://{bucket}/m/s.json", f"s3://{bucket}/m/p.params", f"s3://{bucket}/m/l.txt",
        symbol_sha256="AB" * 32,
    )  # fmt: skip
    identity = model_identity(client, spec)
    assert identity["symbol"] == "sha256:" + "ab" * 32
    assert identity["params"].startswith("etag:") and identity["labels"].startswith("etag:")
    client.put_object(Bucket=bucket, Key="m/p.params", Body=b"retrained in place")
    assert model_identity(client, spec)["params"] != identity["params"]
    with pytest.raises(ModelLoadError, match=r"cannot read --model-labels s3://.*/m/gone\.txt"):
        model_identity(client, replace(spec, labels_uri=f"s3://{bucket}/m/gone.txt"))


def test_model_identity_of_an_etag_is_its_bare_value(bucket, s3_env):
    import hashlib

    client = s3_env.client()
    client.put_object(Bucket=bucket, Key="m/p.params", Body=b"weights")
    spec = ModelSpec(
        "m", "s3://x/s.json", f"s3://{bucket}/m/p.params", "s3://x/l.txt",
        symbol_sha256="a" * 64, labels_sha256="b" * 64,
    )  # fmt: skip
    # S3 returns the ETag quoted ("<md5>" for a single-part upload); the identity drops the quotes.
    assert model_identity(client, spec)["params"] == "etag:" + hashlib.md5(b"weights").hexdigest()


@pytest.mark.parametrize("part", ["symbol", "params", "labels"])
def test_a_model_uri_that_is_not_s3_names_its_option(part):
    digests = {f"{other}_sha256": "c" * 64 for other in ("symbol", "params", "labels")}
    spec = replace(MODEL, **{**digests, f"{part}_uri": "https://example.com/model"})
    spec = replace(spec, **{f"{part}_sha256": None})  # only this part is looked up
    with pytest.raises(ValueError, match=f"--model-{part} must be an s3:// URI"):
        model_identity(None, spec)  # refused before any request


def test_model_identity_names_the_files_the_model_has(bucket, s3_env):
    """An ONNX-file model has no symbol or params; an MXNet model has no ONNX file."""
    client = s3_env.client()
    client.put_object(Bucket=bucket, Key="m/model.onnx", Body=b"graph")
    onnx_file = ModelSpec(
        "m", None, None, "s3://x/l.txt", labels_sha256="b" * 64,
        runtime="onnxruntime", onnx_uri=f"s3://{bucket}/m/model.onnx",
    )  # fmt: skip
    assert model_identity(client, onnx_file) == {
        "labels": "sha256:" + "b" * 64,
        "onnx": "etag:" + hashlib.md5(b"graph").hexdigest(),
    }
    pinned = replace(onnx_file, onnx_sha256=" " + "C" * 64 + "\n")
    assert model_identity(None, pinned) == {
        "labels": "sha256:" + "b" * 64,
        "onnx": "sha256:" + "c" * 64,
    }
    with pytest.raises(ModelLoadError, match=r"cannot read --model-onnx s3://.*/m/gone\.onnx"):
        model_identity(client, replace(onnx_file, onnx_uri=f"s3://{bucket}/m/gone.onnx"))
    with pytest.raises(ValueError, match="--model-onnx must be an s3:// URI"):
        model_identity(None, replace(onnx_file, onnx_uri="https://example.com/model.onnx"))
    digests = {f"{part}_sha256": "c" * 64 for part in ("symbol", "params", "labels")}
    assert model_identity(None, replace(MODEL, **digests)) == {
        part: "sha256:" + "c" * 64 for part in ("symbol", "params", "labels")
    }
