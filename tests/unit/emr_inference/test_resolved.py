"""The typed resolved request: JSON through XCom, parsed locations, one date's request."""

from __future__ import annotations

import json

import pytest
from batch_inference.contract.s3 import S3Uri
from emr_inference.request import resolve_request
from emr_inference.resolved import ResolvedRequest
from pydantic import ValidationError

from tests.unit.emr_inference.pipeline_fixtures import pipeline, resolved_request


def range_request() -> ResolvedRequest:
    return resolve_request(
        pipeline(),
        {"date_range": {"start": "2026-03-01", "end": "2026-03-03"}},
        dag_id="unit",
        run_id="manual__r",
        data_interval_end=None,
    )


def test_the_json_form_round_trips_through_xcom_with_locations_as_strings():
    request = range_request()
    document = json.loads(json.dumps(request.as_json()))  # what an XCom backend stores
    assert document["output_uri"] == "s3://out-bucket/predictions/dt=2026-03-01/"
    assert (
        document["dates"][2]["staging_uri"] == "s3://out-bucket/_staging/unit/manual__r/2026-03-03/"
    )
    typed = ResolvedRequest.of(document)
    assert typed == request
    assert ResolvedRequest.of(typed) is typed
    assert typed.output_uri == S3Uri("out-bucket", "predictions/dt=2026-03-01/")
    assert typed.model.symbol == "s3://models/resnet18/resnet18-symbol.json"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("output_uri", "s3://out-bucket/predictions", "must be a prefix ending in '/'"),
        ("staging_uri", "gs://out-bucket/x/", "expected an s3://bucket/key URI"),
        ("manifest_uri", "s3://lists/dir/", "must name an object, not a prefix"),
    ],
)
def test_a_malformed_location_in_the_json_is_refused_naming_the_field(field, value, message):
    document = {**resolved_request().as_json(), field: value}
    with pytest.raises(ValidationError) as refused:
        ResolvedRequest.of(document)
    (error,) = refused.value.errors()
    assert error["loc"] == (field,) and message in error["msg"]


def test_a_dates_request_has_its_locations_and_counts_the_runs_dates():
    request = range_request()
    assert request.run_dates == 3 and request.dates_in_run is None
    last = request.for_date(request.dates[2])
    assert (last.partition_date, last.output_uri.key) == (
        "2026-03-03",
        "predictions/dt=2026-03-03/",
    )
    assert last.job_output_uri.uri == "s3://out-bucket/_staging/unit/manual__r/2026-03-03/output/"
    assert last.manifest_prefix.uri.endswith("/2026-03-03/manifest/")
    assert (last.dates, last.partition_dates, last.dates_in_run, last.run_dates) == (
        None,
        None,
        3,
        3,
    )
    assert last.model == request.model and last.run_id == request.run_id
    assert [d.partition_date for d in request.date_requests()] == [
        "2026-03-01", "2026-03-02", "2026-03-03",
    ]  # fmt: skip
    assert resolved_request().run_dates == 1
