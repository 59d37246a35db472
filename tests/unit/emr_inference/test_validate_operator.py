"""validate_request: the run's Params become the resolved request, or the task fails, unretried,
naming the field."""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk.exceptions import AirflowFailException
from emr_inference.operators.validate import ValidateRequestOperator

from tests.unit.emr_inference.pipeline_fixtures import pipeline

RUN_ID = "manual__2026-11-23T10:00:00+00:00"


def run_validate(params: dict, data_interval_end: dt.datetime | None = None) -> dict:
    config = pipeline()
    operator = ValidateRequestOperator(
        task_id="validate_request", config=config.model_dump(mode="json")
    )
    context = {"params": params, "run_id": RUN_ID, "data_interval_end": data_interval_end}
    return operator.execute(context)


def test_returns_the_resolved_request_with_the_run_overrides():
    request = run_validate({"partition_date": "2026-11-20", "top_k": 2})

    assert request["partition_date"] == "2026-11-20"
    assert request["top_k"] == 2
    assert request["run_id"] == RUN_ID
    assert "dt=2026-11-20" in request["output_uri"]


def test_a_scheduled_run_without_params_processes_the_day_before_its_interval_end():
    request = run_validate({}, data_interval_end=dt.datetime(2026, 11, 23, 2, tzinfo=dt.UTC))

    assert request["partition_date"] == "2026-11-22"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "partition_date"),
        ({"partition_date": "2026-11-20", "batch_size": 0}, "batch_size"),
        ({"partition_date": "2026-11-20", "bogus_field": 1}, "bogus_field"),
    ],
)
def test_an_invalid_request_fails_without_retry_naming_the_field(params, field):
    expected = rf"Invalid request for pipeline unit:\nparams: {field}: "
    with pytest.raises(AirflowFailException, match=expected):
        run_validate(params)
