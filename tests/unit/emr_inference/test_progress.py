"""The sensors' progress lines: counted from the staged metrics parts, never fatal."""

from __future__ import annotations

import json

from emr_inference.progress import describe_progress, log_progress

from tests.unit.emr_inference.pipeline_fixtures import resolved_request


class RecordingLog:
    """A logger that keeps the formatted lines (Airflow's structlog bypasses caplog)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args) -> None:
        self.lines.append("INFO " + message % args)

    def warning(self, message: str, *args) -> None:
        self.lines.append("WARNING " + message % args)


def test_describe_progress_gives_rate_and_eta_once_known():
    assert describe_progress(0, 100, 0) == "0/100 images (0.0%), rate not known yet"
    assert describe_progress(25, 100, 5) == "25/100 images (25.0%), 5 images/s, ETA 0:00:15"


def test_log_progress_counts_the_rows_of_the_metrics_parts(s3_env, bucket, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
    request = resolved_request(staging_uri=f"s3://{bucket}/_staging/")
    output = request.job_output_uri.uri
    key = output.removeprefix(f"s3://{bucket}/") + "_metrics/part-00000.json"
    s3_env.client().put_object(Bucket=bucket, Key=key, Body=json.dumps({"rows": 30}))

    log = RecordingLog()
    log_progress(log, "aws_default", request, total=120, elapsed_seconds=10)

    assert log.lines == ["INFO Progress: 30/120 images (25.0%), 3 images/s, ETA 0:00:30"]


def test_log_progress_warns_instead_of_failing_when_s3_cannot_be_read(s3_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
    request = resolved_request(staging_uri="s3://no-such-bucket-here/_staging/")
    log = RecordingLog()
    log_progress(log, "aws_default", request, total=10, elapsed_seconds=1)

    assert len(log.lines) == 1
    assert log.lines[0].startswith("WARNING Could not read progress from the staged output")
