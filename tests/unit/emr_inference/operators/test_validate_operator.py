"""validate_request: the run's Params become the resolved request, or the task fails, unretried,
naming the field; an output prefix holding what its publication does not own fails it too, before
any cluster (against the local S3 server)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from airflow.sdk.exceptions import AirflowFailException
from emr_inference.operators.validate import ValidateRequestOperator

from tests.unit.emr_inference.pipeline_fixtures import pipeline

RUN_ID = "manual__2026-11-23T10:00:00+00:00"


@pytest.fixture
def run_validate(aws_conn: str, bucket: str):
    """Run validate_request for a pipeline publishing to ``s3://<fresh bucket>/predictions/...``."""

    def run(params: dict, data_interval_end: dt.datetime | None = None) -> dict:
        config = pipeline(output_uri=f"s3://{bucket}/predictions/dt={{{{ partition_date }}}}/")
        operator = ValidateRequestOperator(
            task_id="validate_request", config=config.model_dump(mode="json")
        )
        context = {"params": params, "run_id": RUN_ID, "data_interval_end": data_interval_end}
        return operator.execute(context)

    return run


def test_returns_the_resolved_request_with_the_run_overrides(run_validate):
    request = run_validate({"partition_date": "2026-11-20", "top_k": 2})

    assert request["partition_date"] == "2026-11-20"
    assert request["top_k"] == 2
    assert request["run_id"] == RUN_ID
    assert "dt=2026-11-20" in request["output_uri"]


def test_a_scheduled_run_without_params_processes_the_day_before_its_interval_end(run_validate):
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
def test_an_invalid_request_fails_without_retry_naming_the_field(run_validate, params, field):
    expected = rf"Invalid request for pipeline unit:\nparams: {field}: "
    with pytest.raises(AirflowFailException, match=expected):
        run_validate(params)


# --- the output prefix holds only what its publication owns (emr_inference.ownership)

DATE = "2026-12-06"


def put(s3_env, bucket: str, key: str, body: bytes = b"x") -> None:
    s3_env.client().put_object(Bucket=bucket, Key=key, Body=body)


def keys(s3_env, bucket: str) -> list[str]:
    listing = s3_env.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_an_output_holding_other_dates_publications_is_refused_and_untouched(
    run_validate, s3_env, bucket
):
    """The REST request that deleted every other date: output_uri the parent of all dates."""
    for day in ("2026-12-04", "2026-12-05"):
        for name in ("part-00000.jsonl", "_run_summary.json", "_SUCCESS"):
            put(s3_env, bucket, f"predictions/dt={day}/{name}")
    before = keys(s3_env, bucket)
    parent = f"s3://{bucket}/predictions/"
    with pytest.raises(AirflowFailException) as raised:
        run_validate({"partition_date": DATE, "output_uri": parent})
    message = str(raised.value)
    assert f"output_uri: {parent} ({DATE}) holds 6 object(s) that a publication" in message
    assert f"{parent}dt=2026-12-04/_SUCCESS" in message  # an example, named
    assert keys(s3_env, bucket) == before


def test_a_foreign_file_in_the_dates_own_prefix_is_refused(run_validate, s3_env, bucket):
    put(s3_env, bucket, f"predictions/dt={DATE}/part-00000.jsonl")
    put(s3_env, bucket, f"predictions/dt={DATE}/notes.txt")
    with pytest.raises(AirflowFailException, match=r"holds 1 object\(s\) .*notes\.txt"):
        run_validate({"partition_date": DATE})


def test_the_previous_publication_of_the_date_is_its_own(run_validate, s3_env, bucket):
    """Contract names, and whatever the previous summary listed, are the publication's."""
    prefix = f"predictions/dt={DATE}/"
    summary = {"published_objects": ["part-00000.jsonl", "_metrics/part-00000.json", "extra.bin"]}
    put(s3_env, bucket, prefix + "_run_summary.json", json.dumps(summary).encode())
    for name in ("part-00000.jsonl", "_metrics/part-00000.json", "extra.bin", "part-00007.jsonl"):
        put(s3_env, bucket, prefix + name)
    put(s3_env, bucket, prefix + "_SUCCESS")
    assert run_validate({"partition_date": DATE})["output_uri"] == f"s3://{bucket}/{prefix}"


def test_an_output_bucket_that_cannot_be_listed_names_the_field(run_validate):
    with pytest.raises(AirflowFailException, match=r"output_uri: cannot list s3://no-such-b"):
        run_validate({"partition_date": DATE, "output_uri": "s3://no-such-bucket-x/p/"})


@pytest.mark.parametrize(
    ("output_uri", "expected"),
    [
        ("s3://{bucket}", "is a bucket root"),
        ("s3://in-bucket/images/dt={{{{ partition_date }}}}/out/", "is inside the input_uri"),
        ("s3://in-bucket/", "is a bucket root"),
        ("s3://in-bucket/images/", "contains the input_uri s3://in-bucket/images/dt=2026-12-06/"),
    ],
)
def test_an_output_overlapping_another_prefix_is_refused_before_any_listing(
    run_validate, bucket, output_uri, expected
):
    with pytest.raises(AirflowFailException, match=r"params: output_uri: .*" + expected):
        run_validate({"partition_date": DATE, "output_uri": output_uri.format(bucket=bucket)})
