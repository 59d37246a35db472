"""Runs of several dates: which dates a request names, their fields, and the refusals."""

from __future__ import annotations

import pytest
from airflow.sdk import Param
from airflow.sdk.exceptions import ParamValidationError
from emr_inference.config import ConfigError
from emr_inference.params import build_params
from emr_inference.request import resolve_request
from emr_inference.resolved import ResolvedRequest

from tests.unit.emr_inference.pipeline_fixtures import pipeline


def resolve(params: dict, **config) -> dict:
    """The request's JSON form (validate_request's XCom)."""
    return resolve_request(
        pipeline(**config), params, dag_id="unit", run_id="manual__r", data_interval_end=None
    ).as_json()


def test_a_range_and_a_list_are_one_sorted_set_of_dates():
    request = resolve(
        {
            "date_range": {"start": "2026-02-27", "end": "2026-03-01"},
            "partition_dates": ["2026-03-05", "2026-02-28"],
        }
    )
    assert request["partition_dates"] == ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-05"]
    # every date has its own input, output and staging area; the top level is the first date's
    first, last = request["dates"][0], request["dates"][-1]
    assert first["input_uri"] == "s3://in-bucket/images/dt=2026-02-27/"
    assert last["output_uri"] == "s3://out-bucket/predictions/dt=2026-03-05/"
    assert last["staging_uri"] == "s3://out-bucket/_staging/unit/manual__r/2026-03-05/"
    assert request["output_uri"] == first["output_uri"]
    typed = ResolvedRequest.of(request)
    one = typed.for_date(typed.dates[-1]).as_json()
    assert one["partition_date"] == "2026-03-05"
    assert one["output_uri"] == last["output_uri"] and one["staging_uri"] == last["staging_uri"]
    assert one["model"] == request["model"]
    # a date's request (one per date in stage_manifest's XCom) names the count, not every date
    assert one["dates"] is None and one["partition_dates"] is None and one["dates_in_run"] == 4
    assert [d.partition_date for d in typed.date_requests()] == request["partition_dates"]


def test_one_date_is_a_range_of_one():
    request = resolve({"partition_date": "2026-11-22"})
    assert request["partition_dates"] == ["2026-11-22"]
    assert [d["partition_date"] for d in request["dates"]] == ["2026-11-22"]


def test_a_range_longer_than_the_pipeline_allows_is_refused():
    with pytest.raises(
        ConfigError, match=r"date_range: .* is 31 dates, more than max_range_dates 30"
    ):
        resolve({"date_range": {"start": "2026-01-01", "end": "2026-01-31"}}, max_range_dates=30)
    with pytest.raises(
        ConfigError, match="partition_dates: 3 dates .* more than max_range_dates 2"
    ):
        resolve(
            {"partition_dates": ["2026-01-01", "2026-01-05"], "partition_date": "2026-01-09"},
            max_range_dates=2,
        )


def test_a_range_ending_before_it_starts_or_without_an_end_is_refused():
    with pytest.raises(ConfigError, match="params: date_range: .*end 2026-01-01 is before start"):
        resolve({"date_range": {"start": "2026-01-02", "end": "2026-01-01"}})
    # nested Params are partial overrides (no "required" in their schema): validate_request says
    with pytest.raises(ConfigError, match="params: date_range.end: Field required"):
        resolve({"date_range": {"start": "2026-01-02"}})


def test_dates_that_would_publish_to_one_prefix_are_refused():
    """Each date replaces what its output prefix holds: two dates there would erase each other."""
    with pytest.raises(ConfigError, match=r"output_uri: 2026-01-01 and 2026-01-02 would both"):
        resolve(
            {"partition_dates": ["2026-01-01", "2026-01-02"]},
            output_uri="s3://out-bucket/latest/",
        )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"start": "2026-13-01", "end": "2026-12-01"}, "date_range"),
        (["2026-02-30"], "partition_dates"),
        ([], "partition_dates"),
        (["2026-01-01"] * 367, "partition_dates"),
    ],
)
def test_the_params_schema_refuses_bad_dates_at_trigger_time(value, problem):
    """The REST API's 400: the Param's JSON schema checks the dates before any task runs."""
    params = build_params(pipeline())
    param: Param = params[problem]
    with pytest.raises(ParamValidationError):
        param.resolve(value)
    assert param.resolve(None) is None  # a one-date run names neither


def test_dry_run_and_the_estimate_are_params():
    request = resolve(
        {"partition_date": "2026-11-22", "dry_run": True, "estimate": {"cluster_start_seconds": 5}}
    )
    assert request["dry_run"] is True
    assert request["estimate"]["cluster_start_seconds"] == 5
    assert request["estimate"]["images_per_task_second"] == 25.0  # the pipeline's default


def test_a_partitioned_runs_key_is_its_date_unless_the_params_name_one():
    config = pipeline(partitioned=True)
    request = resolve_request(
        config, {}, dag_id="unit", run_id="scheduled__x", data_interval_end=None,
        partition_key="2026-11-22",
    )  # fmt: skip
    assert request.partition_dates == ["2026-11-22"]
    named = resolve_request(
        config, {"partition_date": "2026-11-01"}, dag_id="unit", run_id="manual__x",
        data_interval_end=None, partition_key="2026-11-22",
    )  # fmt: skip
    assert named.partition_dates == ["2026-11-01"]
    with pytest.raises(ConfigError, match="partition_key: 'eu-west' is not a date"):
        resolve_request(
            config, {}, dag_id="unit", run_id="manual__x", data_interval_end=None,
            partition_key="eu-west",
        )  # fmt: skip
