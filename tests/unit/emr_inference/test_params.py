"""Params derived from the config: defaults from the pipeline, JSON-schema rules from the models."""

from __future__ import annotations

import copy

import pytest
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError
from emr_inference.config import DATE_PATTERN, S3_URI_FORBIDDEN, RequestDefaults
from emr_inference.params import build_params, param_schemas
from pydantic import ValidationError

from tests.unit.emr_inference.pipeline_fixtures import pipeline

_DEFAULTS = pipeline().request_defaults()


def _validated(conf: dict) -> dict:
    """What Airflow does on trigger: merge the conf into the DAG's Params and validate."""
    params = ParamsDict(copy.deepcopy(build_params(pipeline())))
    params.update(conf)
    return params.validate()


def test_every_request_field_is_a_param_with_the_pipeline_value_as_default():
    params = build_params(pipeline(batch_size=32))
    assert set(params) == set(RequestDefaults.model_fields)
    assert all(isinstance(param, Param) for param in params.values())
    assert params["batch_size"].value == 32
    assert params["model"].value["name"] == "resnet18"
    assert params["cluster"].value["release_label"] == "emr-7.2.0"


def test_schemas_carry_types_bounds_enums_and_patterns():
    schemas = param_schemas()
    assert schemas["batch_size"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 4096,
        "description": "Images per forward pass",  # the trigger form shows it
    }
    assert schemas["partition_date"]["type"] == ["string", "null"]
    assert schemas["partition_date"]["pattern"] == DATE_PATTERN
    assert schemas["partition_date"]["format"] == "date"
    assert schemas["input_uri"]["pattern"].startswith("^s3://")
    assert schemas["input_uri"]["not"] == {"type": "string", "pattern": S3_URI_FORBIDDEN}
    assert schemas["sse"]["properties"]["mode"]["enum"] == ["none", "AES256", "aws:kms"]
    assert schemas["model"]["additionalProperties"] is False
    # nested fields are optional so that a run can override part of an object
    assert "required" not in schemas["model"]
    assert "$ref" not in str(schemas) and "$defs" not in str(schemas)


def test_valid_conf_passes():
    values = _validated(
        {"partition_date": "2026-11-22", "batch_size": 128, "model": {"image_size": 64}}
    )
    assert values["batch_size"] == 128
    assert values["model"] == {"image_size": 64}


@pytest.mark.parametrize(
    ("conf", "field", "words"),
    [
        ({"batch_size": 0}, "batch_size", "less than the minimum"),
        ({"batch_size": "big"}, "batch_size", "is not of type"),
        ({"partition_date": "22/11/2026"}, "partition_date", "is not a 'date'"),
        ({"partition_date": "2026-13-45"}, "partition_date", "is not a 'date'"),
        ({"partition_date": "2026-02-30"}, "partition_date", "is not a 'date'"),
        ({"input_uri": "file:///etc/"}, "input_uri", "does not match"),
        ({"output_uri": "s3://demo-predictions/../x/"}, "output_uri", "should not be valid"),
        ({"output_uri": "s3://demo-predictions/a//x/"}, "output_uri", "should not be valid"),
        ({"output_uri": "s3://demo..predictions/x/"}, "output_uri", "should not be valid"),
        ({"model": {"symbol": "s3://models/./x.json"}}, "model", "should not be valid"),
        ({"max_error_rate": 1.5}, "max_error_rate", "greater than the maximum"),
        ({"sse": {"mode": "rot13"}}, "sse", "is not one of"),
        ({"model": {"image_size": 2}}, "model", "less than the minimum"),
        ({"model": {"colour": "red"}}, "model", "Additional properties"),
        ({"cluster": {"core": {"market": "CHEAP"}}}, "cluster", "is not one of"),
        ({"engine": "spark"}, "engine", "is not one of"),
    ],
)
def test_bad_conf_is_rejected_naming_the_field(conf, field, words):
    with pytest.raises(ParamValidationError) as info:
        _validated(conf)
    assert f"Invalid input for param {field}" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket",
        "s3://bucket/",
        "s3://my.bucket-1/a/b.json",
        "s3://bucket/dt={{ partition_date }}/",
        "s3://bucket/.hidden/...x/..y/",
        "s3://bucket/a/b/",
    ],
)
def test_valid_s3_uris_pass_the_schema_and_the_model(uri):
    assert _validated({"output_uri": uri})["output_uri"] == uri
    assert RequestDefaults.model_validate({**_DEFAULTS, "output_uri": uri}).output_uri == uri


@pytest.mark.parametrize(
    "uri", ["s3://bucket/../x/", "s3://bucket//x", "s3://bucket/a/./", "s3://a-.b/", "s3://a..b/"]
)
def test_the_model_refuses_what_the_schema_refuses(uri):
    with pytest.raises(ParamValidationError):
        _validated({"output_uri": uri})
    with pytest.raises(ValidationError, match="output_uri"):
        RequestDefaults.model_validate({**_DEFAULTS, "output_uri": uri})
