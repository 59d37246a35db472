"""The EMR-backend operators against moto's EMR (in-process) and botocore's Stubber.

moto covers cluster and step creation, listing and termination; moto never moves a step to a
terminal state, so the sensor's state transitions are replayed through botocore's Stubber.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re

import boto3
import pytest
from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    TaskDeferred,
)
from botocore.stub import Stubber
from emr_inference.dates import step_overrun, step_timeout
from emr_inference.emr.operators import (
    EmrCreateClusterOperator,
    EmrInferenceStepSensor,
    EmrInferenceStepTrigger,
    EmrSubmitStepOperator,
    EmrTerminateClusterOperator,
)
from emr_inference.request import resolve_request
from emr_inference.resolved import ResolvedRequest
from moto import mock_aws

from tests.support.moto_aws import REGION, use_moto_credentials
from tests.unit.emr_inference.pipeline_fixtures import FakeDag, pipeline

ARTIFACTS = {
    "job_zip": "s3://out-bucket/artifacts/unit/batch_inference-01.zip",
    "entry_point": "s3://out-bucket/artifacts/unit/main-02.py",
    "bootstrap": "s3://out-bucket/artifacts/unit/install_job_deps-03.sh",
    "bootstrap_requirements": "s3://out-bucket/artifacts/unit/requirements-emr-04.txt",
}
MANIFEST = {"manifest_uri": "s3://out-bucket/_staging/m/manifest.json", "total": 4, "shards": 1}
AWS = {"aws_conn_id": None, "region_name": REGION}


class RecordingTI:
    """The slice of a task instance the provider operators use: XCom pushes for console links."""

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


@pytest.fixture
def aws(monkeypatch):
    use_moto_credentials(monkeypatch)
    with mock_aws():
        yield boto3.client("emr", region_name=REGION)


RUN_ID = "manual__2026-11-22T00:00:00+00:00"


@pytest.fixture
def context():
    """What the operators read of a task's context: the TI (console links), the DAG run."""
    return {"ti": RecordingTI(), "dag": FakeDag("unit"), "run_id": RUN_ID}


def make_request(run_id: str = RUN_ID) -> dict:
    """The JSON form of the request (what the operators get from XCom)."""
    return resolve_request(
        pipeline(cluster={"log_uri": "s3://logs/emr/"}),
        {"partition_date": "2026-11-22"},
        dag_id="unit",
        run_id=run_id,
        data_interval_end=None,
    ).as_json()


def create(request: dict) -> EmrCreateClusterOperator:
    return EmrCreateClusterOperator(
        task_id="create_cluster", request=request, artifacts=ARTIFACTS, **AWS
    )


def test_create_builds_the_cluster_and_a_retry_reuses_it(aws, context):
    request = make_request()
    cluster_id = create(request).execute(context)

    cluster = aws.describe_cluster(ClusterId=cluster_id)["Cluster"]
    tags = {tag["Key"]: tag["Value"] for tag in cluster["Tags"]}
    assert tags["run_id"] == request["run_id"] and tags["dag_id"] == "unit"
    assert {app["Name"] for app in cluster["Applications"]} >= {"Spark", "MXNet"}
    assert cluster["ReleaseLabel"] == "emr-7.2.0"

    assert create(request).execute(context) == cluster_id  # the retry finds it
    assert len(aws.list_clusters()["Clusters"]) == 1

    other = create(make_request("manual__2026-11-23T00:00:00+00:00")).execute(context)
    assert other != cluster_id  # another run gets its own cluster
    aws.terminate_job_flows(JobFlowIds=[cluster_id])
    assert create(request).execute(context) not in (cluster_id, other)  # dead ones are not reused


def submit(request: dict, cluster_id: str) -> EmrSubmitStepOperator:
    return EmrSubmitStepOperator(
        task_id="submit_inference_step",
        request=request,
        artifacts=ARTIFACTS,
        manifest=MANIFEST,
        cluster_id=cluster_id,
        **AWS,
    )


def test_submit_adds_the_step_once(aws, context):
    request = make_request()
    cluster_id = create(request).execute(context)
    step_id = submit(request, cluster_id).execute(context)

    step = aws.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
    args = step["Config"]["Args"]
    assert step["Config"]["Jar"] == "command-runner.jar"
    assert args[0] == "spark-submit" and MANIFEST["manifest_uri"] in args
    assert step["ActionOnFailure"] == "CONTINUE"

    assert submit(request, cluster_id).execute(context) == step_id  # the retry reuses it
    assert len(aws.list_steps(ClusterId=cluster_id)["Steps"]) == 1


def test_terminate_ends_the_cluster_and_tolerates_no_cluster(aws, context):
    request = make_request()
    cluster_id = create(request).execute(context)
    EmrTerminateClusterOperator(task_id="terminate_cluster", cluster_id=cluster_id, **AWS).execute(
        context
    )
    state = aws.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    assert state in ("TERMINATING", "TERMINATED")

    EmrTerminateClusterOperator(task_id="terminate_cluster", cluster_id=None, **AWS).execute(
        context
    )  # create_cluster made nothing: nothing to do, no error


# --- the sensor: state transitions replayed with botocore's Stubber --------------------------


def step_response(state: str, **status) -> dict:
    """A DescribeStep answer for a step that started 100 s ago."""
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=100)
    return {
        "Step": {
            "Id": "s-1",
            "Name": "batch-inference",
            "Status": {"State": state, "Timeline": {"StartDateTime": started}, **status},
        }
    }


CLUSTER = {"Cluster": {"Id": "j-1", "Name": "c", "Status": {"State": "WAITING"}}}


def sensor(request: dict, **kwargs) -> EmrInferenceStepSensor:
    return EmrInferenceStepSensor(
        task_id="wait_for_inference_step",
        request=request,
        manifest=MANIFEST,
        cluster_id="j-1",
        step_id="s-1",
        poke_interval=60,
        **AWS,
        **kwargs,
    )


def stub_pokes(task: EmrInferenceStepSensor, *responses: dict) -> Stubber:
    stubber = Stubber(task.hook.conn)
    for response in responses:
        stubber.add_response("describe_step", response, {"ClusterId": "j-1", "StepId": "s-1"})
        stubber.add_response("describe_cluster", CLUSTER, {"ClusterId": "j-1"})  # console links
    stubber.activate()
    return stubber


def stage_metrics(request: dict, rows_by_partition: dict[int, int]) -> None:
    """Write the job's metrics parts, as finished partitions would, into (moto's) S3."""
    s3 = boto3.client("s3", region_name=REGION)
    output = ResolvedRequest.of(request).job_output_uri
    bucket, prefix = output.bucket, output.key
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    for partition, rows in rows_by_partition.items():
        s3.put_object(
            Bucket=bucket,
            Key=f"{prefix}_metrics/part-{partition:05d}.json",
            Body=json.dumps({"partition": partition, "rows": rows}),
        )


def test_sensor_goes_pending_running_completed_logging_progress(aws, context, capsys):
    request = make_request()
    task = sensor(request)
    stubber = stub_pokes(
        task, step_response("PENDING"), step_response("RUNNING"), step_response("COMPLETED")
    )
    assert task.poke(context) is False
    stage_metrics(request, {0: 2})
    assert task.poke(context) is False
    logs = capsys.readouterr().out  # task logs go through structlog to stdout
    # 2 images ~100 s after the step started: ~0.02 images/s, the other 2 in ~100 s more
    found = re.search(
        r"Progress: 2/4 images \(50\.0%\), ([\d.]+) images/s, ETA 0:(\d\d):(\d\d)", logs
    )
    assert found, logs
    assert 0.015 < float(found.group(1)) <= 0.02
    assert 95 <= int(found.group(2)) * 60 + int(found.group(3)) <= 140
    stage_metrics(request, {1: 2})
    assert task.poke(context) is True
    assert "Progress: 4/4 images (100.0%)" in capsys.readouterr().out
    stubber.assert_no_pending_responses()


def test_sensor_failure_raises_with_reason_and_log_file(aws, context):
    request = make_request()
    task = sensor(request)
    failure = {
        "Reason": "Job failed: error rate 0.4 above --max-error-rate 0.1",
        "Message": "Exception in thread main",
        "LogFile": "s3://logs/emr/j-1/steps/s-1/stderr.gz",
    }
    stub_pokes(task, step_response("RUNNING"), step_response("FAILED", FailureDetails=failure))
    assert task.poke(context) is False
    with pytest.raises(AirflowException) as info:
        task.poke(context)
    message = str(info.value)
    assert "s-1" in message and "FAILED" in message
    assert failure["Reason"] in message
    assert failure["LogFile"] in message


def test_sensor_cancelled_without_details_reports_the_cluster_reason(aws, context):
    task = sensor(make_request())
    stubber = stub_pokes(task, step_response("CANCELLED"))
    terminated = {
        "Cluster": {
            "Id": "j-1",
            "Name": "c",
            "Status": {
                "State": "TERMINATED_WITH_ERRORS",
                "StateChangeReason": {"Message": "Bootstrap failure"},
            },
        }
    }
    stubber.add_response("describe_cluster", terminated, {"ClusterId": "j-1"})
    with pytest.raises(AirflowException, match="TERMINATED_WITH_ERRORS: 'Bootstrap failure'"):
        task.poke(context)


def test_deferrable_sensor_hands_waiting_to_the_provider_trigger(aws, context):
    task = sensor(make_request(), deferrable=True, progress_interval=300)
    stub_pokes(task, step_response("RUNNING"), step_response("RUNNING"), step_response("COMPLETED"))
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, EmrStepSensorTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert trigger.attempts == 5  # wakes every 300 s to log progress
    # the trigger gave up polling while the step still runs: defer again
    with pytest.raises(TaskDeferred):
        task.execute_complete(context, {"status": "error", "message": "max attempts"})
    assert task.execute_complete(context, {"status": "success"}) is None


def test_deferrable_sensor_times_out_while_the_step_runs(aws, context):
    task = sensor(make_request(), deferrable=True, timeout=3600)
    stub_pokes(task, *[step_response("RUNNING")] * 3)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    deadline = dt.datetime.fromisoformat(deferred.value.kwargs["deadline"])
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3600)
    assert abs((deadline - expected).total_seconds()) < 60  # timeout counts from the first poke
    with pytest.raises(TaskDeferred) as again:  # before the deadline: wait on
        task.execute_complete(context, {"status": "error"}, **deferred.value.kwargs)
    assert again.value.kwargs == deferred.value.kwargs  # the deadline is kept, not renewed
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
    with pytest.raises(AirflowSensorTimeout, match="s-1 on j-1 is still running"):
        task.execute_complete(context, {"status": "error"}, deadline=past)


def test_on_kill_cancels_the_step(aws):
    task = sensor(make_request())
    stubber = Stubber(task.hook.conn)
    stubber.add_response(
        "cancel_steps",
        {"CancelStepsInfoList": [{"StepId": "s-1", "Status": "SUBMITTED"}]},
        {"ClusterId": "j-1", "StepIds": ["s-1"], "StepCancellationOption": "TERMINATE_PROCESS"},
    )
    with stubber:
        task.on_kill()
    stubber.assert_no_pending_responses()


def test_killed_submit_cancels_the_step_it_added(aws, context):
    request = make_request()
    cluster_id = create(request).execute(context)
    task = submit(request, cluster_id)
    task.on_kill()  # killed before it added a step: nothing to cancel, no call
    step_id = task.execute(context)
    stubber = Stubber(task.hook.conn)
    stubber.add_response(
        "cancel_steps",
        {"CancelStepsInfoList": [{"StepId": step_id, "Status": "SUBMITTED"}]},
        {
            "ClusterId": cluster_id,
            "StepIds": [step_id],
            "StepCancellationOption": "TERMINATE_PROCESS",
        },
    )
    with stubber:
        task.on_kill()
    stubber.assert_no_pending_responses()


# --- the teardown: idempotent, finds the cluster of a failed create by its run tags -----------


def terminate(cluster_id: str | None) -> EmrTerminateClusterOperator:
    return EmrTerminateClusterOperator(task_id="terminate_cluster", cluster_id=cluster_id, **AWS)


def test_teardown_terminates_the_cluster_a_failed_create_left_without_an_id(
    aws, context, monkeypatch
):
    """RunJobFlow succeeded, then create_cluster failed before pushing the id (issue #16.5)."""
    from airflow.providers.amazon.aws.operators.emr import EmrCreateJobFlowOperator

    def run_job_flow_then_fail(self, context):
        self.hook.conn.run_job_flow(**self.job_flow_overrides)
        raise ConnectionError("the task lost the API server after RunJobFlow")

    monkeypatch.setattr(EmrCreateJobFlowOperator, "execute", run_job_flow_then_fail)
    request = make_request()
    with pytest.raises(ConnectionError):
        create(request).execute(context)
    other_run = make_request("manual__other")
    other_id = aws.run_job_flow(**_overrides(other_run))["JobFlowId"]

    terminate(cluster_id=None).execute(context)  # no XCom from create: found by the run's tags

    states = {c["Id"]: c["Status"]["State"] for c in aws.list_clusters()["Clusters"]}
    (leaked,) = [cid for cid in states if cid != other_id]
    assert states[leaked] in ("TERMINATING", "TERMINATED")
    assert states[other_id] == "WAITING"  # another run's cluster is not touched


def _overrides(request: dict) -> dict:
    from emr_inference.emr.job_flow import build_job_flow

    return build_job_flow(ResolvedRequest.of(request), ARTIFACTS)


def test_teardown_is_idempotent(aws, context):
    request = make_request()
    cluster_id = create(request).execute(context)
    terminate(cluster_id).execute(context)
    terminate(cluster_id).execute(context)  # a retry after it worked: success
    terminate("j-DOESNOTEXIST").execute(context)  # unknown to EMR: gone, success
    other_run = {**context, "run_id": "manual__never_created"}
    terminate(None).execute(other_run)  # no cluster was created for the run: nothing to do


def test_teardown_does_not_call_terminate_on_an_ended_cluster(aws, context):
    task = terminate("j-1")
    stubber = Stubber(task.hook.conn)
    ended = {"Cluster": {"Id": "j-1", "Name": "c", "Status": {"State": "TERMINATED"}}}
    stubber.add_response("describe_cluster", ended, {"ClusterId": "j-1"})
    with stubber:  # a TerminateJobFlows call would fail the test: none is stubbed
        task.execute(context)
    stubber.assert_no_pending_responses()


def test_teardown_failure_is_raised_so_that_it_retries(aws, context):
    task = terminate("j-1")
    stubber = Stubber(task.hook.conn)
    stubber.add_client_error("describe_cluster", "ThrottlingException", http_status_code=400)
    with stubber, pytest.raises(Exception, match="ThrottlingException"):
        task.execute(context)


# --- a kill while deferred: the trigger's on_kill, as Airflow 3.3's triggerer calls it ---------


def deferred_trigger(aws, context) -> EmrInferenceStepTrigger:
    """The trigger a deferrable sensor hands to the triggerer for step s-1 on j-1."""
    task = sensor(make_request(), deferrable=True)
    stub_pokes(task, step_response("RUNNING"))
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    return deferred.value.trigger


def test_the_deferred_sensor_uses_our_trigger_and_it_survives_serialization(aws, context):
    trigger = deferred_trigger(aws, context)
    classpath, kwargs = trigger.serialize()
    assert classpath == "emr_inference.emr.operators.EmrInferenceStepTrigger"  # importable
    assert isinstance(trigger, EmrStepSensorTrigger)  # the provider's polling, unchanged
    assert EmrInferenceStepTrigger(**kwargs).serialize() == (classpath, kwargs)


def run_in_triggerer(trigger: EmrInferenceStepTrigger, cancel_message: str | None) -> None:
    """Run ``trigger`` in Airflow's TriggerRunner until it is cancelled with ``cancel_message``
    (the triggerer's message for a user's action on the task, or none: a triggerer shutdown)."""
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    async def wait_forever():  # the step never finishes; no AWS call while waiting
        await asyncio.Event().wait()
        yield

    trigger.run = wait_forever

    async def main() -> None:
        runner = TriggerRunner()
        runner.triggers[1] = {"name": "wait_for_inference_step", "events": 0}
        task = asyncio.create_task(runner.run_trigger(1, trigger))
        await asyncio.sleep(0.1)
        task.cancel(cancel_message)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_user_kill_while_deferred_cancels_the_step(aws, context, monkeypatch):
    from airflow.jobs.triggerer_job_runner import _USER_ACTION_CANCEL_MSG

    trigger = deferred_trigger(aws, context)
    hook = trigger.hook()
    monkeypatch.setattr(trigger, "hook", lambda: hook)
    stubber = Stubber(hook.conn)
    stubber.add_response(
        "cancel_steps",
        {"CancelStepsInfoList": [{"StepId": "s-1", "Status": "SUBMITTED"}]},
        {"ClusterId": "j-1", "StepIds": ["s-1"], "StepCancellationOption": "TERMINATE_PROCESS"},
    )
    with stubber:
        run_in_triggerer(trigger, _USER_ACTION_CANCEL_MSG)  # mark failed / success, clear
    stubber.assert_no_pending_responses()


def test_a_triggerer_restart_leaves_the_step_running(aws, context, monkeypatch):
    trigger = deferred_trigger(aws, context)
    hooks_made = []  # on_kill's only way to AWS (its errors would be logged, not raised)
    monkeypatch.setattr(trigger, "hook", lambda: hooks_made.append(1))
    run_in_triggerer(trigger, None)  # the trigger moves to another triggerer
    assert hooks_made == []


def _set_step_state(cluster_id: str, step_id: str, state: str) -> None:
    """Move a step of moto's EMR to ``state`` (moto never ends a step by itself)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.emr.models import emr_backends

    (step,) = [s for s in emr_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[cluster_id].steps
               if s.id == step_id]  # fmt: skip
    step.state = state


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED", "INTERRUPTED"])
def test_a_retried_submit_adds_a_new_step_after_a_dead_one(aws, context, state):
    request = make_request()
    cluster_id = create(request).execute(context)
    first = submit(request, cluster_id).execute(context)
    _set_step_state(cluster_id, first, state)

    retried = submit(request, cluster_id).execute(context)
    assert retried != first  # a dead step is never reused: the retry runs the job again
    steps = aws.list_steps(ClusterId=cluster_id)["Steps"]
    assert {step["Id"]: step["Status"]["State"] for step in steps} == {
        first: state,
        retried: "PENDING",
    }


@pytest.mark.parametrize("state", ["RUNNING", "COMPLETED"])
def test_a_retried_submit_reuses_a_live_or_completed_step(aws, context, state):
    request = make_request()
    cluster_id = create(request).execute(context)
    first = submit(request, cluster_id).execute(context)
    _set_step_state(cluster_id, first, state)
    assert submit(request, cluster_id).execute(context) == first
    assert len(aws.list_steps(ClusterId=cluster_id)["Steps"]) == 1


@pytest.mark.parametrize(
    ("step_reason", "expected"),
    [
        (
            {"Message": "Cancelled by user"},
            "step reason 'Cancelled by user', cluster WAITING: 'none'",
        ),
        (None, "step reason 'none', cluster WAITING: 'none'"),
    ],
    ids=["step reason only", "no reason anywhere"],
)
def test_sensor_failure_without_details_names_whatever_reason_exists(
    aws, context, step_reason, expected
):
    task = sensor(make_request())
    status = {"StateChangeReason": step_reason} if step_reason else {}
    stubber = stub_pokes(task, step_response("CANCELLED", **status))
    stubber.add_response("describe_cluster", CLUSTER, {"ClusterId": "j-1"})
    with pytest.raises(AirflowException) as failure:
        task.poke(context)
    assert f"CANCELLED with no failure details; {expected}" in str(failure.value)


def test_deferrable_sensor_polls_at_least_once_per_deferral(aws, context):
    # A progress interval shorter than the poke interval still gives the trigger one poll.
    task = sensor(make_request(), deferrable=True, progress_interval=10)
    stub_pokes(task, step_response("RUNNING"))
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    assert deferred.value.trigger.attempts == 1


def test_sensor_and_terminate_publish_the_console_links(aws, context):
    from airflow.providers.amazon.aws.links.emr import EmrClusterLink, EmrLogsLink

    links = {EmrClusterLink.key, EmrLogsLink.key}
    task = sensor(make_request(), deferrable=True)
    stub_pokes(task, step_response("RUNNING"), step_response("COMPLETED"))
    with pytest.raises(TaskDeferred):
        task.execute(context)
    assert links <= set(context["ti"].pushed)
    resumed = {"ti": RecordingTI()}
    assert task.execute_complete(resumed, {"status": "success"}) is None
    assert links <= set(resumed["ti"].pushed)
    waiting = sensor(make_request())  # not deferrable: the provider's own poke loop
    stub_pokes(waiting, step_response("COMPLETED"))
    blocking = {"ti": RecordingTI()}
    waiting.execute(blocking)
    assert links <= set(blocking["ti"].pushed)

    request = make_request()
    cluster_id = create(request).execute(context)
    teardown = {"ti": RecordingTI()}
    EmrTerminateClusterOperator(task_id="terminate_cluster", cluster_id=cluster_id, **AWS).execute(
        teardown
    )
    assert EmrClusterLink.key in teardown["ti"].pushed


@pytest.mark.parametrize("timeline", [True, False], ids=["started", "no timeline yet"])
def test_progress_is_read_through_the_tasks_connection(aws, context, monkeypatch, timeline):
    import emr_inference.emr.operators as emr_operators

    calls = []
    monkeypatch.setattr(emr_operators, "log_progress", lambda *args: calls.append(args))
    task = EmrInferenceStepSensor(
        task_id="wait_for_inference_step",
        request=make_request(),
        manifest=MANIFEST,
        cluster_id="j-1",
        step_id="s-1",
        aws_conn_id="pipeline_aws",
        region_name=REGION,
    )
    response = step_response("RUNNING")
    if not timeline:
        del response["Step"]["Status"]["Timeline"]
    stub_pokes(task, response)
    assert task.poke(context) is False
    ((log, conn_id, request, total, elapsed),) = calls
    assert (conn_id, request, total) == ("pipeline_aws", task.run_request, MANIFEST["total"])
    if timeline:
        assert 100 <= elapsed < 160  # the step started 100 s ago
    else:
        assert elapsed == 0


def test_the_trigger_polls_this_step_through_this_tasks_connection(aws, context):
    botocore_config = {"retries": {"max_attempts": 2}}
    task = EmrInferenceStepSensor(
        task_id="wait_for_inference_step",
        request=make_request(),
        manifest=MANIFEST,
        cluster_id="j-1",
        step_id="s-1",
        poke_interval=60,
        deferrable=True,
        aws_conn_id="pipeline_aws",
        region_name=REGION,
        verify=False,
        botocore_config=botocore_config,
    )
    stub_pokes(task, step_response("RUNNING"))
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    trigger = deferred.value.trigger
    attempts = 5  # the default progress interval, 300 s, / 60 s
    assert trigger.serialize()[1] == {
        "job_flow_id": "j-1",
        "step_id": "s-1",
        "waiter_delay": 60,
        "waiter_max_attempts": attempts,
        "aws_conn_id": "pipeline_aws",
        "region_name": REGION,
        "verify": False,
        "botocore_config": botocore_config,
    }
    # The trigger gives up by itself (after attempts * delay) before its deferral times out.
    assert deferred.value.timeout > dt.timedelta(seconds=attempts * 60)


def test_a_killed_create_that_reused_the_cluster_terminates_it(aws, context):
    request = make_request()
    cluster_id = create(request).execute(context)
    retry = create(request)
    assert retry.execute(context) == cluster_id  # reused
    retry.on_kill()
    state = aws.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    assert state in ("TERMINATING", "TERMINATED")


def test_a_cluster_of_the_same_name_without_tags_is_not_this_runs():
    from emr_inference.emr.cluster import LIVE_CLUSTER_STATES, find_run_cluster
    from emr_inference.emr.job_flow import cluster_name

    request = make_request()
    client = boto3.client("emr", region_name=REGION)
    stubber = Stubber(client)
    name = cluster_name(request["dag_id"], request["run_id"])
    summary = {"Id": "j-9", "Name": name, "Status": {"State": "WAITING"}}
    stubber.add_response(
        "list_clusters", {"Clusters": [summary]}, {"ClusterStates": LIVE_CLUSTER_STATES}
    )
    stubber.add_response("describe_cluster", {"Cluster": summary}, {"ClusterId": "j-9"})
    with stubber:
        assert find_run_cluster(client, request["dag_id"], request["run_id"]) is None


def test_a_killed_submit_cancels_the_step_it_reused(aws, context):
    request = make_request()
    cluster_id = create(request).execute(context)
    step_id = submit(request, cluster_id).execute(context)
    retry = submit(request, cluster_id)
    assert retry.execute(context) == step_id  # reused
    stubber = Stubber(retry.hook.conn)
    expected = {"ClusterId": cluster_id, "StepIds": [step_id]}
    stubber.add_response(
        "cancel_steps",
        {"CancelStepsInfoList": [{"StepId": step_id, "Status": "SUBMITTED"}]},
        {**expected, "StepCancellationOption": "TERMINATE_PROCESS"},
    )
    with stubber:
        retry.on_kill()
    stubber.assert_no_pending_responses()


def test_the_runs_cluster_is_found_behind_other_runs_clusters():
    """list_clusters gives every live cluster of the account: another run's (another name) listed
    first is passed over, not the end of the search."""
    from emr_inference.emr.cluster import LIVE_CLUSTER_STATES, find_run_cluster
    from emr_inference.emr.job_flow import cluster_name

    request = make_request()
    ours = {"Id": "j-2", "Name": cluster_name("unit", RUN_ID), "Status": {"State": "RUNNING"}}
    other = {"Id": "j-1", "Name": cluster_name("unit", "manual__other"), "Status": ours["Status"]}
    tags = [{"Key": "dag_id", "Value": "unit"}, {"Key": "run_id", "Value": RUN_ID}]
    client = boto3.client("emr", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_response(
        "list_clusters", {"Clusters": [other, ours]}, {"ClusterStates": LIVE_CLUSTER_STATES}
    )
    stubber.add_response(
        "describe_cluster", {"Cluster": {**ours, "Tags": tags}}, {"ClusterId": "j-2"}
    )
    with stubber:
        assert find_run_cluster(client, request["dag_id"], request["run_id"]) == "j-2"
    stubber.assert_no_pending_responses()


def test_a_step_running_past_its_own_timeout_is_cancelled_and_fails(aws, context):
    """A 92-date range waits 92 timeouts in all, but each step only one from its own start."""
    request = make_request()
    task = sensor(request, timeout=3600)
    stubber = stub_pokes(task, step_response("RUNNING"))  # started 100 s ago: within 3600 s
    assert task.poke(context) is False
    stubber.deactivate()
    stuck = step_response("RUNNING")
    stuck["Step"]["Status"]["Timeline"]["StartDateTime"] -= dt.timedelta(seconds=3600)
    stubber = stub_pokes(task, stuck)
    stubber.add_response(
        "cancel_steps",
        {"CancelStepsInfoList": [{"StepId": "s-1", "Status": "SUBMITTED"}]},
        {"ClusterId": "j-1", "StepIds": ["s-1"], "StepCancellationOption": "TERMINATE_PROCESS"},
    )
    # 3700 s plus however long this test took since step_response() read the clock
    overrun = r"running for 370\d s, more than step_timeout_seconds \(3600 s\)"
    with pytest.raises(AirflowFailException, match=overrun):
        task.poke(context)
    stubber.assert_no_pending_responses()  # the step was cancelled


def test_the_whole_wait_scales_with_the_dates_but_a_step_does_not(aws, context):
    request = {**make_request(), "dates_in_run": 92}
    task = sensor(request, timeout=43200)
    assert step_timeout(task.timeout, ResolvedRequest.of(request)) == 43200 * 92
    assert task.running_timeout == 43200
    assert step_overrun("s-1", 43201, task.running_timeout)
    assert step_overrun("s-1", 43200, task.running_timeout) is None
    assert step_overrun("s-1", None, task.running_timeout) is None  # not started: queued
