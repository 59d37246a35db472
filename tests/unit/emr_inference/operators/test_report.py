"""report_dates: the dates read from S3, the run's digest, and the alerts it publishes.

The alerts go to a real SNS API (moto's server, the same endpoint as the S3 one) with an SQS
queue subscribed to the topic: each test reads back what a subscriber would get.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from types import SimpleNamespace

import pytest
from airflow.sdk import DAG, TaskGroup
from airflow.sdk.exceptions import AirflowFailException
from emr_inference import alerts
from emr_inference.operators.report import ReportDatesOperator
from emr_inference.s3 import S3Uri

from tests.support.sns_inbox import sns_inbox
from tests.unit.emr_inference.test_plan import cifar_request, works

RUN_ID = "manual__plan"
PLAN = {"range_run": {"clusters": 1, "cluster_hours": 1.25, "cost_usd": 4.5}}
REASON = "AirflowException: Step s-1 failed: OOM (s3://logs/j-1/steps/s-1/stdout.gz)"


class RunTI:
    """The TaskInstance methods report_dates uses: the run's task states and failure reasons."""

    run_id = RUN_ID

    def __init__(self, states: dict | None = None, reasons: dict | None = None) -> None:
        default = {"create_cluster": "success", "terminate_cluster": "success"}
        self.states = default if states is None else states
        self.reasons = reasons or {}
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value

    def get_task_states(self, dag_id: str, run_ids: list[str]) -> dict:
        assert run_ids == [self.run_id]
        return {self.run_id: {**self.states, "report_dates": "running"}}

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> object:
        assert key == alerts.FAILURE_KEY
        return self.reasons.get((task_ids, map_indexes))


def report_operator(works_: list[dict] | None, **kwargs) -> ReportDatesOperator:
    """report_dates in a DAG shaped like a pipeline's (a mapped ``date`` group)."""
    from airflow.providers.standard.operators.empty import EmptyOperator

    with DAG("cifar10_resnet18", schedule=None) as dag:
        for task_id in ("validate_request", "create_cluster", "terminate_cluster"):
            EmptyOperator(task_id=task_id)
        with TaskGroup("date"):
            EmptyOperator(task_id="wait_for_inference_step")
            EmptyOperator(task_id="publish_results")
        report = ReportDatesOperator(task_id="report_dates", works=works_, plan=PLAN, **kwargs)
    assert report.dag is dag
    return report


def run_report(report: ReportDatesOperator, ti: RunTI | None = None):
    """``report.execute`` with a run's context: the result (with the digest it pushed under
    ``"digest"``), or the exception it raised."""
    ti = ti or RunTI()
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3)
    context = {
        "ti": ti,
        "dag": report.dag,
        "run_id": ti.run_id,
        "dag_run": SimpleNamespace(start_date=started),
    }
    try:
        result = report.execute(context)
    except AirflowFailException as error:
        return error
    assert "digest" not in result
    return {**result, "digest": ti.pushed["digest"]}


def publish(s3_env, request: dict, run_id: str | None = None, rows: int = 5) -> None:
    """A complete publication of ``request``'s date (``_SUCCESS`` and a summary) by ``run_id``."""
    output = S3Uri.parse(request["output_uri"], "output_uri", prefix=True)
    client = s3_env.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=output.bucket)
    summary = {"run_id": run_id or request["run_id"], "rows": rows, "errors": 1}
    client.put_object(Bucket=output.bucket, Key=output.key + "_run_summary.json",
                      Body=json.dumps(summary))  # fmt: skip
    client.put_object(Bucket=output.bucket, Key=output.key + "_SUCCESS", Body=b"")


@pytest.fixture
def report_works(aws_conn, s3_env, bucket) -> list[dict]:
    """Three dates (the second empty) whose output is in a fresh bucket."""
    request = cifar_request().as_json()
    request["output_uri"] = f"s3://{bucket}/predictions/dt=2026-11-01/"
    request["dates"] = [
        {**date, "output_uri": f"s3://{bucket}/predictions/dt={date['partition_date']}/"}
        for date in request["dates"]
    ]
    return works(request, [5, 0, 5])


@pytest.fixture
def topic(s3_env, aws_conn):
    """An SNS topic on the local server with an SQS queue subscribed (tests/support/sns_inbox)."""
    with sns_inbox(s3_env.endpoint_url) as inbox:
        yield inbox


def alerts_settings(arn: str, **changes) -> dict:
    return {"sns_topic_arn": arn, "on_failure": True, "on_success": False, **changes}


# -- the dates, read from S3 ----------------------------------------------------------------


def test_the_report_reads_s3_and_fails_the_run_naming_the_dates_not_published(report_works, s3_env):
    report = report_operator(report_works)
    first, _, third = (work["request"] for work in report_works)
    publish(s3_env, first)
    publish(s3_env, third, run_id="another_run")  # not this run's publication
    failed = run_report(report)
    assert isinstance(failed, AirflowFailException)
    assert "1 of 2 dates were not published: 2026-11-03" in str(failed)
    publish(s3_env, third)
    result = run_report(report)
    assert {k: v for k, v in result.items() if k != "digest"} == {
        "published": ["2026-11-01", "2026-11-03"],
        "empty": ["2026-11-02"],
        "already_published": [],
        "planned_only": [],
        "failed": [],
    }


def test_a_publication_whose_task_state_was_lost_is_reported_published(report_works, s3_env):
    """The crash case: publish_results published, then its task was reported failed (no XCom):
    the report goes by what readers see in S3."""
    for work in report_works:
        publish(s3_env, work["request"])
    result = run_report(report_operator(report_works))
    assert result["published"] == ["2026-11-01", "2026-11-03"] and result["failed"] == []


def test_a_dry_run_is_reported_as_planned_not_failed(aws_conn):
    request = cifar_request(dry_run=True)
    result = run_report(report_operator(works(request, [5, 0, 5])), RunTI({}))
    assert {k: v for k, v in result.items() if k != "digest"} == {
        "published": [],
        "empty": ["2026-11-02"],
        "already_published": [],
        "planned_only": ["2026-11-01", "2026-11-03"],
        "failed": [],
    }
    assert result["digest"]["outcome"] == "success"
    assert result["digest"]["cluster"].startswith("none started")


def test_the_report_fails_a_run_that_failed_before_listing_its_dates():
    """validate_request failed: stage_manifest pushed nothing; the run must not end success."""
    ti = RunTI({"validate_request": "failed"})
    failed = run_report(report_operator(None), ti)
    assert isinstance(failed, AirflowFailException)
    assert "failed before its dates were listed" in str(failed)
    digest = ti.pushed["digest"]  # no request: the DAG names the pipeline, no cluster logs
    assert (digest["pipeline"], digest["backend"], digest["outputs"]) == (
        "cifar10_resnet18",
        None,
        {},
    )
    assert list(digest["logs"]) == ["airflow"]


def test_the_digest_says_where_the_logs_are():
    """Airflow's task logs always; the cluster's log_uri too on EMR, when it has one."""
    context = {"dag": SimpleNamespace(dag_id="cifar10_resnet18"), "run_id": RUN_ID}
    airflow_logs = {
        "airflow": f"task logs of dag_id=cifar10_resnet18/run_id={RUN_ID} (UI: the run's Logs)"
    }
    emr = cifar_request()
    cluster_logs = "s3://example-emr-logs/cifar10_resnet18/"  # the pipeline's cluster.log_uri
    assert alerts.log_locations(context, emr) == {**airflow_logs, "cluster": cluster_logs}
    no_log_uri = emr.model_copy(
        update={"cluster": emr.cluster.model_copy(update={"log_uri": None})}
    )
    assert alerts.log_locations(context, no_log_uri) == airflow_logs
    assert (
        alerts.log_locations(context, emr.model_copy(update={"backend": "local"})) == airflow_logs
    )
    assert alerts.log_locations(context, None) == airflow_logs


# -- the digest and the alerts ----------------------------------------------------------------


def test_a_failed_range_runs_digest_reaches_the_topic_with_every_dates_outcome(
    report_works, s3_env, topic
):
    first, _, third = (work["request"] for work in report_works)
    publish(s3_env, first, rows=400)
    ti = RunTI(
        {
            "create_cluster": "success",
            "terminate_cluster": "success",
            "date.wait_for_inference_step_0": "success",
            "date.wait_for_inference_step_2": "failed",
            "date.publish_results_2": "upstream_failed",
        },
        reasons={("date.wait_for_inference_step", 2): REASON},
    )
    failed = run_report(report_operator(report_works, alerts=alerts_settings(topic.arn)), ti)
    assert isinstance(failed, AirflowFailException)

    ((subject, message),) = topic.read()
    assert subject == "cifar10_resnet18 2026-11-01..2026-11-03: failed: 1 of 2 dates not published"
    lines = message.splitlines()
    assert lines[1] == f"run {RUN_ID} of cifar10_resnet18 (emr backend)"
    assert lines[2] == (
        "dates: published 2026-11-01; empty 2026-11-02; already_published -; planned_only -; "
        "failed 2026-11-03"
    )
    assert f"  date.wait_for_inference_step (2026-11-03) failed: {REASON}" in lines
    assert "  date.publish_results (2026-11-03) upstream_failed: an upstream task failed" in lines
    assert "images: 400 rows published, 1 of them error rows" in lines
    assert any(line.startswith("run time: 18") and "1.25 cluster-hours, $4.50" in line
               for line in lines)  # fmt: skip
    assert f"2026-11-03 {third['output_uri']}" in message
    assert "cluster: stopped by terminate_cluster" in lines


def test_a_green_run_sends_nothing_unless_success_alerts_are_on(report_works, s3_env, topic):
    for work in report_works:
        publish(s3_env, work["request"])
    result = run_report(report_operator(report_works, alerts=alerts_settings(topic.arn)))
    assert result["digest"]["outcome"] == "success"
    assert topic.read() == []

    settings = alerts_settings(topic.arn, on_success=True)
    run_report(report_operator(report_works, alerts=settings))
    ((subject, _),) = topic.read()
    assert subject == "cifar10_resnet18 2026-11-01..2026-11-03: success"


def test_a_hand_marked_failure_and_a_cluster_left_running_are_in_the_digest(
    report_works, s3_env, topic
):
    """The sensor killed by a run marked failed has no recorded reason; a teardown that failed
    on every try leaves the cluster to the sweeper: both are said."""
    ti = RunTI(
        {
            "create_cluster": "success",
            "terminate_cluster": "failed",
            "date.wait_for_inference_step_0": "failed",
        }
    )
    failed = run_report(report_operator(report_works, alerts=alerts_settings(topic.arn)), ti)
    assert "The run's cluster: terminate_cluster is failed" in str(failed)
    ((_, message),) = topic.read()
    assert f"date.wait_for_inference_step (2026-11-01) failed: {alerts.NO_REASON}" in message
    assert "cluster: terminate_cluster is failed: the cluster may still be running" in message


def test_a_teardown_that_failed_fails_the_run_even_with_every_date_published(report_works, s3_env):
    """report_dates is the run's only leaf: a cluster that may be left running must not end in
    a green run."""
    for work in report_works:
        publish(s3_env, work["request"])
    ti = RunTI({"create_cluster": "success", "terminate_cluster": "failed"})
    failed = run_report(report_operator(report_works), ti)
    assert isinstance(failed, AirflowFailException)
    assert "the cluster may still be running" in str(failed)
    assert "dates were not published" not in str(failed)


def test_a_notifier_that_cannot_publish_never_fails_the_run(report_works, s3_env, caplog):
    """The topic does not exist: the run's outcome is the report's, and the log says why."""
    for work in report_works:
        publish(s3_env, work["request"])
    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    settings = alerts_settings(missing, on_success=True)
    result = run_report(report_operator(report_works, alerts=settings))
    assert result["published"] == ["2026-11-01", "2026-11-03"]
    assert f"could not publish the run's digest to {missing}" in caplog.text


def test_an_sns_endpoint_that_is_down_is_a_warning_not_an_error(monkeypatch, caplog):
    """Nothing listens where the connection points: publish_digest says so and returns."""
    from emr_inference_tools.airflow_env import aws_connection
    from emr_inference_tools.local_s3 import free_port

    down = aws_connection(f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DOWN", down)
    digest = {
        "pipeline": "demo", "dag_id": "demo", "run_id": RUN_ID, "backend": "local",
        "outcome": "failed", "dates": {"failed": ["2026-11-01"]}, "failed_tasks": [],
        "images": 0, "error_rows": 0, "run_seconds": 1,
        "modelled": {"cluster_hours": None, "cost_usd": None},
        "outputs": {"2026-11-01": "s3://b/p/"}, "logs": {}, "cluster": "stopped",
    }  # fmt: skip
    arn = "arn:aws:sns:us-east-1:123456789012:alerts"
    assert alerts.publish_digest(digest, arn, "aws_down") is False
    assert f"could not publish the run's digest to {arn}" in caplog.text


def test_a_failure_reason_keeps_the_error_lines_of_the_log_it_quotes():
    error = RuntimeError(
        "Step step-002 on local-1 failed (exit code 1). Driver log /x/driver.log, last lines:\n"
        "2026-12-07 09:59:44 INFO batch_inference.cli: listing\n"
        "2026-12-07 09:59:44 ERROR batch_inference.cli: error rate 100.00% is above 10.00%\n"
        "2026-12-07 09:59:45 INFO ShutdownHookManager: Deleting directory /tmp/spark-1\n"
    )
    assert alerts.failure_reason(error) == (
        "RuntimeError: Step step-002 on local-1 failed (exit code 1). Driver log /x/driver.log, "
        "last lines: | 2026-12-07 09:59:44 ERROR batch_inference.cli: error rate 100.00% is "
        "above 10.00%"
    )
    quiet = RuntimeError("it failed\nline 1\nline 2\nline 3")
    assert alerts.failure_reason(quiet) == "RuntimeError: it failed | line 2 | line 3"


def test_a_failure_reason_is_recorded_by_the_failing_task():
    pushed = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.update({key: value}))
    alerts.record_failure({"ti": ti, "exception": ValueError("x" * 900 + "\nthe last line")})
    reason = pushed[alerts.FAILURE_KEY]
    assert len(reason) == alerts.MAX_REASON_CHARS
    assert reason.startswith("ValueError: xxx") and reason.endswith("x | the last line")
    assert " … " in reason
    broken = SimpleNamespace(xcom_push=lambda key, value: 1 / 0)
    alerts.record_failure({"ti": broken, "exception": None})  # logged, never raised
