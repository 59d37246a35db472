"""Resolving Params + config + the run's dates into the resolved request (docs/CONTRACTS.md)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from emr_inference.config import ConfigError
from emr_inference.request import (
    MAX_PARAMS_BYTES,
    merge_params,
    resolve_request,
    run_key,
)
from emr_inference.resolved import ResolvedRequest

from tests.unit.emr_inference.pipeline_fixtures import ONNX_MODEL, pipeline

RUN_ID = "scheduled__2026-11-22T00:00:00+00:00"
INTERVAL_END = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)

CONTRACT_KEYS = {
    "dag_id", "run_id", "pipeline", "backend", "partition_date", "input_uri", "manifest_uri",
    "output_uri", "staging_uri", "artifacts_uri", "extensions", "sample_limit", "shard_size",
    "model", "batch_size", "top_k", "partitions", "max_error_rate", "prefetch_threads",
    "prefetch_depth", "omp_threads", "sse", "cluster", "local", "precision", "int8",
    "max_partition_keys", "partition_dates", "date_range", "dry_run", "estimate", "dates",
    "republish", "engine", "partition_seconds", "dates_in_run", "request_fingerprint",
    "conversion",
}  # fmt: skip


def resolve(params=None, config=None, *, data_interval_end=INTERVAL_END, run_id=RUN_ID):
    """The request's JSON form (validate_request's XCom, docs/CONTRACTS.md)."""
    return resolve_request(
        config or pipeline(),
        params or {},
        dag_id="unit",
        run_id=run_id,
        data_interval_end=data_interval_end,
    ).as_json()


def test_scheduled_run_processes_the_previous_day():
    request = resolve()
    assert set(request) == CONTRACT_KEYS
    assert request["partition_date"] == "2026-11-22"
    assert request["input_uri"] == "s3://in-bucket/images/dt=2026-11-22/"
    assert request["output_uri"] == "s3://out-bucket/predictions/dt=2026-11-22/"
    assert request["manifest_uri"] is None
    assert (request["dag_id"], request["run_id"], request["pipeline"]) == ("unit", RUN_ID, "unit")
    assert request["backend"] == "emr"


def test_staging_and_artifacts_default_to_the_output_bucket():
    request = resolve()
    key = "scheduled__2026-11-22T00-00-00-00-00/2026-11-22"
    assert request["staging_uri"] == f"s3://out-bucket/_staging/unit/{key}/"
    assert request["artifacts_uri"] == "s3://out-bucket/artifacts/unit/"
    typed = ResolvedRequest.of(request)
    assert typed.job_output_uri.uri == f"s3://out-bucket/_staging/unit/{key}/output/"
    assert typed.manifest_prefix.uri == f"s3://out-bucket/_staging/unit/{key}/manifest/"
    assert (typed.staging_uri.bucket, typed.staging_uri.key) == (
        "out-bucket",
        f"_staging/unit/{key}/",
    )


def test_manual_partition_date_and_templates():
    config = pipeline(output_uri="s3://out-bucket/{{ pipeline }}/{{ partition_date_nodash }}")
    request = resolve({"partition_date": "2026-01-31"}, config, data_interval_end=None)
    assert request["partition_date"] == "2026-01-31"
    assert request["input_uri"] == "s3://in-bucket/images/dt=2026-01-31/"
    assert request["output_uri"] == "s3://out-bucket/unit/20260131/"  # prefixes end with "/"


def test_partial_nested_override_merges_with_the_pipeline_values():
    request = resolve({"model": {"image_size": 64}, "sse": {"mode": "AES256"}, "batch_size": 8})
    assert request["model"]["image_size"] == 64
    assert request["model"]["name"] == "resnet18"  # kept from the pipeline
    assert request["sse"] == {"mode": "AES256", "kms_key_id": None}
    assert request["batch_size"] == 8


def test_a_manifest_takes_precedence_over_the_input_prefix():
    request = resolve({"manifest_uri": "s3://lists/{{ partition_date }}/manifest.json"})
    assert request["manifest_uri"] == "s3://lists/2026-11-22/manifest.json"
    assert request["input_uri"] is None


def test_merge_params_merges_objects_at_every_depth_and_replaces_the_rest():
    defaults = {"batch_size": 1, "cluster": {"core": {"types": ["a"], "market": "ON_DEMAND"}}}
    merged = merge_params(defaults, {"batch_size": 2, "cluster": {"core": {"market": "SPOT"}}})
    assert merged == {"batch_size": 2, "cluster": {"core": {"types": ["a"], "market": "SPOT"}}}
    assert merge_params(defaults, {"cluster": {"core": {"types": ["b"]}}})["cluster"]["core"] == {
        "types": ["b"],  # a list replaces
        "market": "ON_DEMAND",
    }
    assert defaults["cluster"]["core"]["market"] == "ON_DEMAND"  # the defaults are not modified


def test_a_deeply_nested_override_changes_one_field():
    request = resolve({"cluster": {"core": {"market": "SPOT"}, "tags": {"team": "ml"}}})
    assert request["cluster"]["core"] == {
        "instance_types": ["c5.9xlarge"],
        "count": 4,
        "market": "SPOT",
        "ebs_volume_gb": None,
    }
    assert request["cluster"]["release_label"] == "emr-7.2.0"


def test_an_invalid_nested_override_names_the_dotted_field():
    with pytest.raises(ConfigError, match=r"^params: cluster\.core\.market: Input should be"):
        resolve({"cluster": {"core": {"market": "CHEAP"}}})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"batchsize": 8}, "params: batchsize: not a request field; did you mean 'batch_size'?"),
        ({"topk": 1}, "params: topk: not a request field; did you mean 'top_k'?"),
        (
            {"retries": 3},
            "params: retries: a DAG setting: set it in the pipeline file, not per run",
        ),
        (
            {"cluster": {"core": {"markt": "SPOT"}}},
            "params: cluster.core.markt: Extra inputs are not permitted; did you mean 'market'?",
        ),
    ],
)
def test_an_unknown_field_is_refused_naming_the_closest_one(params, message):
    with pytest.raises(ConfigError) as refused:
        resolve(params)
    assert str(refused.value) == message


def test_an_unknown_field_is_refused_before_anything_else_is_checked():
    with pytest.raises(ConfigError) as refused:
        resolve({"bogus_field": 1, "batch_size": 0}, data_interval_end=None)
    # nothing is close to it: no hint (one naming output_uri would mislead)
    assert str(refused.value) == "params: bogus_field: not a request field"


def test_params_over_the_size_limit_are_refused_naming_the_largest():
    """Airflow stores any conf; validate_request refuses a run carrying more than 64 KiB of it
    before anything else, naming what weighs."""
    params = {"notes": "x" * MAX_PARAMS_BYTES, "batch_size": 8}
    with pytest.raises(ConfigError) as refused:
        resolve(params)
    message = str(refused.value)
    assert message.startswith(f"params: {len(json.dumps(params))} bytes of JSON, more than the ")
    assert "largest: notes (65538 bytes), batch_size (1 bytes)" in message
    # just under the limit, the request is judged on its fields
    with pytest.raises(ConfigError, match="notes: not a request field"):
        resolve({"notes": "x" * (MAX_PARAMS_BYTES - 100)})


@pytest.mark.parametrize(
    ("params", "data_interval_end", "pattern"),
    [
        ({}, None, r"partition_date: required"),
        ({"partition_date": "2026-02-30"}, INTERVAL_END, r"partition_date: .*'2026-02-30' is not"),
        ({"partition_date": "2026-13-45"}, INTERVAL_END, r"partition_date: String should match"),
        ({"output_uri": "s3://out-bucket/../x/"}, INTERVAL_END, r"output_uri: .*'\.\.'"),
        ({"batch_size": -1}, INTERVAL_END, r"params: batch_size: .*greater than or equal to 1"),
        ({"input_uri": "s3://in-bucket/a/../b/"}, INTERVAL_END, r"input_uri: .*'\.\.'"),
        ({"input_uri": "s3://in-bucket/{{ nope }}/"}, INTERVAL_END, r"input_uri: cannot render"),
        ({"model": {"symbol": "s3://models/dir/"}}, INTERVAL_END, r"model\.symbol: .*object"),
        ({"output_uri": "s3://Bad_Bucket/x/"}, INTERVAL_END, r"output_uri"),
    ],
)
def test_invalid_requests_name_the_field(params, data_interval_end, pattern):
    with pytest.raises(ConfigError, match=pattern):
        resolve(params, data_interval_end=data_interval_end)


def test_the_engine_is_set_per_run_and_refused_on_emr_naming_the_field():
    local = pipeline(backend="local")
    assert resolve(config=local)["engine"] == "rdd"
    assert resolve({"engine": "predict_batch_udf"}, config=local)["engine"] == "predict_batch_udf"
    with pytest.raises(ConfigError, match=r"params: engine: .*'rdd' or 'predict_batch_udf'"):
        resolve({"engine": "dataframe"}, config=local)
    with pytest.raises(ConfigError, match=r"params: engine: predict_batch_udf needs pandas"):
        resolve({"engine": "predict_batch_udf"}, config=pipeline(backend="emr"))


def test_run_key_is_safe_in_an_s3_key():
    assert run_key("manual__2026-01-01T00:00:00+00:00") == "manual__2026-01-01T00-00-00-00-00"
    assert run_key("../x") == "-x"


URI_PARAMS = {
    "input_uri": lambda uri: {"input_uri": uri},
    "manifest_uri": lambda uri: {"manifest_uri": uri},
    "output_uri": lambda uri: {"output_uri": uri},
    "staging_uri": lambda uri: {"staging_uri": uri},
    "artifacts_uri": lambda uri: {"artifacts_uri": uri},
    "model.symbol": lambda uri: {"model": {"symbol": uri}},
    "model.params": lambda uri: {"model": {"params": uri}},
    "model.labels": lambda uri: {"model": {"labels": uri}},
    "model.onnx": lambda uri: {
        "model": {**ONNX_MODEL, "symbol": None, "params": None, "onnx": uri},
        "cluster": {"release_label": "emr-7.13.0"},
    },
    "cluster.log_uri": lambda uri: {"cluster": {"log_uri": uri}},
}
BAD_URIS = [
    "https://in-bucket/x/",
    "file:///etc/passwd",
    "s3a://in-bucket/x/",
    "hdfs:///x/",
    "s3://in-bucket/a/../x/",
    "s3://In_Bucket/x/",
    "s3://in-bucket/a\nb/",
]


def test_an_output_over_the_pipelines_onnx_file_is_refused_and_the_request_names_the_file():
    """The ONNX file is a model file like the others: no run may write where it lies."""
    onnx = {"model": {**ONNX_MODEL, "symbol": None, "params": None}}
    config = pipeline(cluster={"release_label": "emr-7.13.0"}, **onnx)
    request = resolve(config=config)
    assert request["model"]["onnx"] == ONNX_MODEL["onnx"] and request["model"]["symbol"] is None
    with pytest.raises(ConfigError, match=r"output_uri: s3://models/onnx/ .* holds model.onnx"):
        resolve({"output_uri": "s3://models/onnx/"}, config)


@pytest.mark.parametrize("uri", BAD_URIS)
@pytest.mark.parametrize("field", sorted(URI_PARAMS))
def test_every_uri_param_rejects_bad_uris_naming_the_field(field, uri):
    with pytest.raises(ConfigError, match=rf"^params: {re.escape(field)}\b"):
        resolve(URI_PARAMS[field](uri))
