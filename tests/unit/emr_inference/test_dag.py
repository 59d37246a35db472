"""The DAG files: import cleanly, fast and light; graph shape, teardown wiring, Params rejection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.sdk.exceptions import ParamValidationError
from emr_inference.alerts import record_failure

from tests.conftest import REPO_ROOT

REPO = Path(__file__).resolve().parents[3]
DAGS = REPO / "dags"
HEAVY_MODULES = ("mxnet", "pyspark", "numpy", "pandas")
CHAIN = [
    "validate_request",
    "stage_job_artifacts",
    "stage_manifest",
    "plan_run",
    "wait_for_cluster_slot",
    "create_cluster",
    "date.submit_inference_step",
    "date.wait_for_inference_step",
    "date.publish_results",
    "terminate_cluster",
]

# Parse time is measured by `make bench` (bench/dag_parse.py), not asserted here.
_PARSE_SCRIPT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "dag_ids": sorted(bag.dag_ids),
    "errors": {path: str(error) for path, error in bag.import_errors.items()},
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(",")),
}))
"""


def parse_dags(heavy: tuple[str, ...] = HEAVY_MODULES, **env: str) -> dict:
    """Parse dags/ in a fresh interpreter, as the dag processor does, and report what happened
    (``heavy``: which of these top-level modules the parse imported)."""
    result = subprocess.run(
        [sys.executable, "-c", _PARSE_SCRIPT, str(DAGS), ",".join(heavy)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            **env,
        },
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def parsed() -> dict:
    """dags/ as the dag processor parses it, on the repository's pipelines."""
    return parse_dags()


def test_dags_import_without_errors(parsed):
    assert parsed["errors"] == {}
    assert parsed["dag_ids"] == [
        "cifar10_resnet18", "cifar10_resnet18_onnx", "demo", "emr_inference_sweeper",
    ]  # fmt: skip


def test_parsing_imports_no_heavy_library(parsed):
    assert parsed["heavy"] == []


def test_parsing_local_pipelines_imports_no_aws_sdk(tmp_path):
    """boto3 comes with the S3 hook, imported when a task runs; only the emr backend's operators
    (subclasses of the Amazon provider's, whose modules import botocore) bring it at parse time."""
    (tmp_path / "demo.yaml").write_text((REPO / "include" / "pipelines" / "demo.yaml").read_text())
    result = parse_dags(heavy=("boto3", "botocore"), EMR_INFERENCE_PIPELINES_DIR=str(tmp_path))
    assert result["errors"] == {}
    assert result["dag_ids"] == ["demo", "emr_inference_sweeper"]
    assert result["heavy"] == []


def test_a_broken_pipeline_file_is_an_import_error_and_the_others_stay(tmp_path):
    """Two pipelines, one with a typo: the good one and the sweeper load; the bad one is an
    import error of its own DAG file, naming the pipeline file and the field."""
    (tmp_path / "demo.yaml").write_text((REPO / "include" / "pipelines" / "demo.yaml").read_text())
    broken = (REPO / "include" / "pipelines" / "demo.yaml").read_text()
    broken = broken.replace("pipeline: demo", "pipeline: nightly").replace(
        "batch_size: 16", "batch_size: 0"
    )
    (tmp_path / "nightly.yaml").write_text(broken)

    result = parse_dags(EMR_INFERENCE_PIPELINES_DIR=str(tmp_path))

    assert result["dag_ids"] == ["demo", "emr_inference_sweeper"]
    assert list(result["errors"]) == [str(DAGS / "pipeline_file_errors.py")]
    message = result["errors"][str(DAGS / "pipeline_file_errors.py")]
    assert (
        f"{tmp_path / 'nightly.yaml'}: batch_size: Input should be greater than or equal to 1"
        in (message)
    )


@pytest.fixture(scope="module")
def dags() -> dict:
    from emr_inference.factory import build_dags

    return build_dags(REPO / "include" / "pipelines")


@pytest.mark.parametrize("dag_id", ["demo", "cifar10_resnet18"])
def test_graph_is_the_designed_chain(dags, dag_id):
    dag = dags[dag_id]
    assert set(dag.task_ids) == {*CHAIN, "report_dates"}
    for upstream, downstream in zip(CHAIN, CHAIN[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    first = dag.get_task("validate_request")
    assert first.upstream_task_ids == set()
    # the report runs whatever happened to the dates, and fails the run naming the failed ones
    report = dag.get_task("report_dates")
    assert report.upstream_task_ids == {
        "date.publish_results",
        "stage_manifest",
        "plan_run",
        "create_cluster",
        "terminate_cluster",  # the digest says what became of the cluster
    }
    assert report.trigger_rule == "all_done"


@pytest.mark.parametrize("dag_id", ["demo", "cifar10_resnet18"])
def test_each_date_is_a_mapped_instance_of_the_date_group(dags, dag_id):
    """One cluster for the run, one step, wait and publication per date (mapped over
    stage_manifest's work items) labelled with its date in the UI."""
    dag = dags[dag_id]
    group = dag.task_group_dict["date"]
    assert type(group).__name__ == "MappedTaskGroup"
    for task_id in ("submit_inference_step", "wait_for_inference_step", "publish_results"):
        task = dag.get_task(f"date.{task_id}")
        assert task.map_index_template == "{{ task.request.partition_date }}"
    for task_id in ("stage_manifest", "plan_run", "create_cluster", "terminate_cluster"):
        assert not dag.get_task(task_id).get_closest_mapped_task_group()


@pytest.mark.parametrize("dag_id", ["demo", "cifar10_resnet18"])
def test_terminate_is_the_teardown_of_create(dags, dag_id):
    dag = dags[dag_id]
    create, terminate = dag.get_task("create_cluster"), dag.get_task("terminate_cluster")
    assert create.is_setup and not create.is_teardown
    assert terminate.is_teardown
    assert "create_cluster" in terminate.upstream_task_ids
    # runs whatever happened before it, a failed create_cluster included (it may have made a
    # cluster and pushed no id: the teardown finds it by its run tags)
    assert terminate.trigger_rule == "all_done"
    # a cluster that could not be stopped fails the run (through report_dates, the run's leaf)
    assert terminate.on_failure_fail_dagrun


@pytest.mark.parametrize("dag_id", ["demo", "cifar10_resnet18"])
def test_the_run_ends_as_the_report_says_even_when_marked_failed_by_hand(dags, dag_id):
    """Marking a run failed kills its running tasks and skips the others, teardowns excepted,
    and then the run's state is that of its leaves. report_dates is a teardown whose failure
    fails the run: it is not skipped, and it is the leaf the run's state follows (Airflow's own
    rule, DagRun._tis_for_dagrun_state), so such a run ends failed naming its dates."""
    from airflow.models.dagrun import DagRun
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagSerialization.from_dict(DagSerialization.to_dict(dags[dag_id]))
    report = dag.get_task("report_dates")
    assert report.is_teardown and report.on_failure_fail_dagrun
    assert report.trigger_rule == "all_done"

    class TI:
        def __init__(self, task_id: str) -> None:
            self.task_id, self.state = task_id, None

    tis = [TI(task.task_id) for task in dag.tasks]
    leaves = DagRun._tis_for_dagrun_state(DagRun(), dag=dag, tis=tis)
    assert {ti.task_id for ti in leaves} == {"report_dates"}


@pytest.mark.parametrize("dag_id", ["demo", "cifar10_resnet18"])
def test_teardown_retries_with_backoff_whatever_the_pipeline_retries(dags, dag_id):
    terminate = dags[dag_id].get_task("terminate_cluster")
    assert terminate.retries == 6  # demo.yaml says retries: 0, cifar10 says 1
    assert terminate.retry_exponential_backoff == 2.0
    assert terminate.retry_delay.total_seconds() == 30
    assert terminate.max_retry_delay.total_seconds() == 600
    assert dags[dag_id].get_task("create_cluster").retries != 6


def test_a_pipeline_with_late_after_minutes_has_one_deadline_alert_through_sns(dags):
    """A run not finished 240 minutes after it was queued gets one SNS message, sent by the
    triggerer with the provider's SnsNotifier (a path: the provider is not imported when the DAG
    is parsed); the demo pipeline has no alerts, hence no deadline."""
    from airflow.sdk import DeadlineReference
    from emr_inference.config import AlertsConfig, load_pipeline
    from emr_inference.factory import build_dag

    config = load_pipeline(REPO_ROOT / "include" / "pipelines" / "cifar10_resnet18.yaml")
    alerts = AlertsConfig(sns_topic_arn=config.alerts.sns_topic_arn, late_after_minutes=240)
    (alert,) = build_dag(config.model_copy(update={"alerts": alerts})).deadline
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval.total_seconds() == 240 * 60
    assert alert.callback.path == "airflow.providers.amazon.aws.notifications.sns.SnsNotifier"
    kwargs = alert.callback.kwargs
    assert kwargs["target_arn"] == "arn:aws:sns:us-east-1:123456789012:inference-alerts"
    assert kwargs["aws_conn_id"] == "aws_default"
    assert "240 minutes after it was queued" in kwargs["message"]
    assert not dags["cifar10_resnet18"].deadline  # its file sets no late_after_minutes
    assert not dags["demo"].deadline
    # every task records why it failed, for the digest
    assert all(
        task.on_failure_callback == [record_failure] for task in dags["cifar10_resnet18"].tasks
    )


def test_backend_picks_the_operator_classes(dags):
    emr = dags["cifar10_resnet18"]
    assert type(emr.get_task("create_cluster")).__name__ == "EmrCreateClusterOperator"
    assert type(emr.get_task("date.wait_for_inference_step")).__name__ == "EmrInferenceStepSensor"
    assert emr.get_task("date.wait_for_inference_step").deferrable is True
    local = dags["demo"]
    assert type(local.get_task("create_cluster")).__name__ == "LocalCreateClusterOperator"
    assert type(local.get_task("terminate_cluster")).__name__ == "LocalTerminateClusterOperator"


def test_schedule_and_run_settings_come_from_the_yaml(dags):
    dag = dags["cifar10_resnet18"]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert {"emr", "inference", "resnet18"} <= set(dag.tags)
    assert dag.schedule == "0 3 * * *"
    assert dag.get_task("date.submit_inference_step").retries == 1
    assert dag.get_task("validate_request").retries == 0
    # A stuck step cannot keep the cluster (and the bill) forever: the sensor has a deadline.
    assert dag.get_task("date.wait_for_inference_step").timeout == 12 * 3600
    assert dags["demo"].get_task("date.wait_for_inference_step").timeout == 1800


def _trigger_params(dag, conf: dict) -> dict:
    """What the API does on POST dagRuns: the serialized DAG's Params, deep-merged and validated."""
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    return serialized.params.deep_merge(conf).validate()


def test_trigger_conf_is_validated_by_the_serialized_dag(dags):
    dag = dags["demo"]
    values = _trigger_params(dag, {"partition_date": "2026-11-22", "top_k": 1})
    assert values["top_k"] == 1
    assert values["model"]["name"] == "digits-cnn"


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"partition_date": "yesterday"}, "partition_date"),
        ({"input_uri": "s3://UPPER/x/"}, "input_uri"),
        ({"batch_size": 0}, "batch_size"),
        ({"top_k": "five"}, "top_k"),
        ({"model": {"image_size": 100000}}, "model"),
        ({"sse": {"mode": "des"}}, "sse"),
        # every free-form field is bounded: an oversize value is a 400, not a stored megabyte
        ({"cluster": {"tags": {"team": "x" * 257}}}, "cluster"),
        ({"cluster": {"tags": {f"t{n}": "v" for n in range(48)}}}, "cluster"),
        ({"cluster": {"spark_defaults": {"spark.x": "y" * 4097}}}, "cluster"),
        ({"cluster": {"bootstrap_args": ["--pre"] * 65}}, "cluster"),
        ({"cluster": {"ec2_key_name": "k" * 256}}, "cluster"),
        ({"extensions": [".jpg"] * 33}, "extensions"),
    ],
)
def test_bad_trigger_conf_is_rejected_naming_the_field(dags, conf, field):
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {field}"):
        _trigger_params(dags["demo"], conf)


@pytest.mark.parametrize("dag_id", ["demo", "cifar10_resnet18"])
def test_a_cluster_slot_is_taken_one_run_at_a_time_up_to_max_active_runs(dags, dag_id):
    slot = dags[dag_id].get_task("wait_for_cluster_slot")
    assert slot.max_clusters == dags[dag_id].max_active_runs
    assert slot.max_active_tis_per_dag == 1  # across all runs, backfill runs included
    assert slot.mode == "reschedule"
    assert slot.release_task_id == "terminate_cluster"


def test_a_partitioned_pipeline_keys_its_scheduled_runs_by_the_date_they_process():
    """CronPartitionTimetable: the run of the 2026-11-23 02:00 tick has partition_key
    2026-11-22 (the day it processes) and no data interval."""
    import datetime as dt

    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import TimeRestriction
    from emr_inference.factory import build_dag

    from tests.unit.emr_inference.pipeline_fixtures import pipeline

    dag = build_dag(pipeline(partitioned=True, schedule="0 2 * * *", start_date="2026-11-01"))
    assert type(dag.timetable).__name__ == "CronPartitionTimetable"
    core = decode_timetable(encode_timetable(dag.timetable))
    start = dt.datetime(2026, 11, 23, 1, tzinfo=dt.UTC)
    info = core.next_dagrun_info_v2(
        last_dagrun_info=None, restriction=TimeRestriction(start, None, catchup=True)
    )
    assert info.run_after == dt.datetime(2026, 11, 23, 2, tzinfo=dt.UTC)
    assert info.partition_key == "2026-11-22"
    assert info.data_interval is None
    # what the REST API's trigger checks of a partition_key (a 400 otherwise)
    assert core.resolve_partition_date("2026-11-22") == dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    with pytest.raises(Exception, match="does not match the timetable's key_format"):
        core.resolve_partition_date("22/11/2026")
    # a pipeline that is not partitioned keeps its cron
    assert build_dag(pipeline(schedule="0 2 * * *")).timetable.__class__.__name__ != (
        "CronPartitionTimetable"
    )


def test_published_dates_are_events_of_the_pipelines_asset(dags):
    publish = dags["demo"].get_task("date.publish_results")
    (asset,) = [o for o in publish.outlets if type(o).__name__ == "Asset"]
    assert asset.name == asset.uri == "demo.predictions"
    assert asset.extra == {
        "output_uri_template": "s3://demo-predictions/predictions/dt={{ partition_date }}/"
    }
