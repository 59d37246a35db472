"""Params derived from the config: defaults from the pipeline, JSON-schema rules from the models."""

from __future__ import annotations

import copy

import pytest
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError
from emr_inference import params as params_module
from emr_inference.config import DATE_PATTERN, S3_URI_FORBIDDEN, RequestDefaults
from emr_inference.params import ADVANCED, FORM, RUN_PARAMETERS, build_params, param_schemas
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


# -- the trigger form ------------------------------------------------------------------------

FORM_KEYS = {"title", "section", "description"}  # what the form shows, not a rule
FORM_SECTIONS = ["Run Parameters", "Input and output", "Model", "Cluster", "Tuning (advanced)"]


def _sections_in_form_order(params: dict) -> list[str]:
    """The sections as Airflow 3.3's trigger form shows them: in the order of each one's first
    Param; Params without a ``section`` in the form's own "Run Parameters"."""
    sections = [param.schema.get("section", RUN_PARAMETERS) for param in params.values()]
    return list(dict.fromkeys(sections))


def test_the_form_shows_the_sections_in_order_each_params_together():
    params = build_params(pipeline())
    sections = [param.schema.get("section", RUN_PARAMETERS) for param in params.values()]
    assert _sections_in_form_order(params) == FORM_SECTIONS == list(FORM)
    # each section's Params come together, so the Param order is the form's order too
    assert sections == sorted(sections, key=FORM_SECTIONS.index)
    # what to run comes first and is the open section (no `section`); the date is its first field
    assert list(params)[:3] == ["partition_date", "partition_dates", "date_range"]
    assert "section" not in params["dry_run"].schema
    assert params["output_uri"].schema["section"] == "Input and output"
    assert params["model"].schema["section"] == "Model"
    assert params["cluster"].schema["section"] == "Cluster"
    assert params["prefetch_depth"].schema["section"] == "Tuning (advanced)"


def test_every_request_field_is_placed_in_the_form_by_hand():
    placed = [name for fields in FORM.values() for name in fields]
    assert len(placed) == len(set(placed)), "a field placed in two sections"
    missing = set(RequestDefaults.model_fields) - set(placed)
    assert not missing, f"request fields with no place in emr_inference.params.FORM: {missing}"
    assert set(placed) <= set(RequestDefaults.model_fields), "FORM names a field that is gone"


def test_a_field_missing_from_the_form_still_becomes_a_param_last(monkeypatch):
    form = {section: dict(fields) for section, fields in FORM.items()}
    del form[RUN_PARAMETERS]["dry_run"]
    monkeypatch.setattr(params_module, "FORM", form)
    params = build_params(pipeline())
    assert set(params) == set(RequestDefaults.model_fields)
    assert list(params)[-1] == "dry_run"
    assert params["dry_run"].schema["section"] == ADVANCED
    assert params["dry_run"].schema["title"] == "dry_run"


def test_every_param_has_a_title_and_a_one_line_description():
    for name, param in build_params(pipeline()).items():
        title = param.schema["title"]
        assert title and title != name and "_" not in title, name
        assert param.description, name
        assert "\n" not in param.description and len(param.description) <= 120, name
    params = build_params(pipeline())
    assert params["partition_date"].schema["title"] == "Date"
    assert params["batch_size"].description == "Images per forward pass"  # the field's own


def test_the_form_annotations_change_nothing_the_schema_accepts():
    schemas = param_schemas()
    for name, param in build_params(pipeline()).items():
        rules = {key: value for key, value in param.schema.items() if key not in FORM_KEYS}
        assert rules == {key: value for key, value in schemas[name].items() if key not in FORM_KEYS}
