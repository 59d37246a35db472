"""Build one DAG per pipeline YAML file.

Every pipeline has the same task graph; its backend (:mod:`emr_inference.backends`: ``emr`` or
``local``) gives the operator classes of the four cluster tasks::

    validate_request -> stage_job_artifacts -> stage_manifest (every date) -> plan_run
      -> wait_for_cluster_slot -> create_cluster (setup)
      -> date (a task group, one per date): submit_inference_step -> wait_for_inference_step
         -> publish_results
      -> terminate_cluster (teardown of create_cluster: runs whatever happened before it, with
         its own retries)
      -> report_dates (a teardown too: fails the run naming the dates that are not published;
         its digest goes to the pipeline's alerts topic)

A run processes one date or several (a range) on one cluster; each date has its own manifest,
step, publication and Asset event, and fails alone (:mod:`emr_inference.dates`).

Parsing imports no heavy library: operators import boto3 clients, Spark or MXNet only when they run
(the S3 hook too; only the emr backend's operators, subclasses of the Amazon provider's, bring
botocore at parse time: tests/unit/emr_inference/test_dag.py). Each backend has its package:
:mod:`emr_inference.emr` and :mod:`emr_inference.local`, each with its
:class:`~emr_inference.backend.Backend` (``backend.py``), its cluster helpers (``cluster.py``) and
its four operators (``operators.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, TriggerRule, chain, task_group

from emr_inference.alerts import lateness_deadline, record_failure
from emr_inference.backends import backend_named
from emr_inference.config import ConfigError, PipelineConfig, load_pipeline
from emr_inference.deployment import PIPELINES_DIR_ENV as PIPELINES_DIR_ENV  # re-exported
from emr_inference.deployment import pipelines_dir as pipelines_dir  # re-exported
from emr_inference.params import build_params

#: How a partitioned pipeline's partition keys spell the date a run processes.
PARTITION_KEY_FORMAT = "%Y-%m-%d"
#: What the UI shows for each mapped instance of a per-date task: its date.
DATE_LABEL = "{{ task.request.partition_date }}"
#: The teardown's own retries, whatever the pipeline's ``retries``: a pipeline that wants to fail
#: fast still wants its cluster stopped. Delays grow 30 s, 1, 2, 4, 8 min, then 10 min (each up to
#: twice that, Airflow's jitter, capped at 10 min): the seven tries span 25 to 35 minutes.
TEARDOWN_RETRY_POLICY: Mapping[str, Any] = {
    "retries": 6,
    "retry_delay": dt.timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": dt.timedelta(minutes=10),
}


def build_dag(config: PipelineConfig, source: str | None = None) -> DAG:
    """The DAG of one pipeline: Params from the config, tasks wired for its backend."""
    from emr_inference.operators.artifacts import StageJobArtifactsOperator
    from emr_inference.operators.manifest import StageManifestOperator
    from emr_inference.operators.plan import PlanRunOperator
    from emr_inference.operators.publish import PublishResultsOperator
    from emr_inference.operators.report import ReportDatesOperator
    from emr_inference.operators.slots import WaitForClusterSlotSensor
    from emr_inference.operators.validate import ValidateRequestOperator

    backend = backend_named(config.backend).cluster_tasks(config)
    alerts_settings = config.alerts.model_dump(mode="json") if config.alerts else None
    aws = {"aws_conn_id": config.aws_conn_id}
    doc = f"{config.description or ''}\n\nPipeline file: `{source}`" if source else None
    with DAG(
        dag_id=config.pipeline,
        description=config.description,
        doc_md=doc,
        schedule=schedule_of(config),
        start_date=dt.datetime.combine(config.start_date, dt.time(), dt.UTC),
        catchup=config.catchup,
        max_active_runs=config.max_active_runs,
        tags=sorted({*config.tags, config.backend, "inference"}),
        params=build_params(config),
        default_args={
            "retries": config.retries,
            "retry_delay": dt.timedelta(seconds=config.retry_delay_seconds),
            "on_failure_callback": record_failure,  # the digest names each failure's reason
        },
        deadline=lateness_deadline(alerts_settings, config.aws_conn_id),
    ) as dag:
        validate = ValidateRequestOperator(
            task_id="validate_request", config=config.model_dump(mode="json"), retries=0, **aws
        )
        request = validate.output
        artifacts = StageJobArtifactsOperator(task_id="stage_job_artifacts", request=request, **aws)
        manifests = StageManifestOperator(task_id="stage_manifest", request=request, **aws)
        plan = PlanRunOperator(
            task_id="plan_run",
            request=request,
            works=manifests.output,
            max_active_runs=config.max_active_runs,
        )
        # no more clusters at once than max_active_runs, backfills included (operators/slots.py)
        slot = WaitForClusterSlotSensor(
            task_id="wait_for_cluster_slot",
            max_clusters=config.max_active_runs,
            poke_interval=config.poke_interval_seconds,
        )
        create = backend.create(
            task_id="create_cluster", request=request, artifacts=artifacts.output, **aws
        )

        @task_group(group_id="date")
        def run_date(request: Any, manifest: Any) -> None:
            """One date of the run on the run's cluster: its step, its wait, its publication."""
            submit = backend.submit(
                task_id="submit_inference_step",
                request=request,
                artifacts=artifacts.output,
                manifest=manifest,
                cluster_id=create.output,
                map_index_template=DATE_LABEL,
                **aws,
            )
            wait = backend.wait(
                task_id="wait_for_inference_step",
                request=request,
                manifest=manifest,
                cluster_id=create.output,
                step_id=submit.output,
                poke_interval=config.poke_interval_seconds,
                timeout=config.step_timeout_seconds,
                map_index_template=DATE_LABEL,
                **backend.wait_kwargs,
                **aws,
            )
            publish = PublishResultsOperator(
                task_id="publish_results",
                request=request,
                manifest=manifest,
                plan=plan.output,
                asset=predictions_asset(config),
                map_index_template=DATE_LABEL,
                **aws,
            )
            chain(submit, wait, publish)

        dates = run_date.expand_kwargs(manifests.output)
        terminate = backend.terminate(
            task_id="terminate_cluster",
            cluster_id=create.output,
            **TEARDOWN_RETRY_POLICY,
            **aws,
        )
        report = ReportDatesOperator(
            task_id="report_dates",
            works=manifests.output,
            plan=plan.output,
            alerts=alerts_settings,
            retries=0,
            **aws,
        )
        chain(validate, artifacts, manifests, plan, slot, create, dates, terminate)
        [dates, terminate] >> report  # after the teardown: the digest says what became of it
        # Both are teardowns, and their failure fails the run: a run marked failed by hand
        # (which kills running tasks and skips those not started, but not teardowns) still stops
        # its cluster and reports, so it ends failed with its unpublished dates named, never
        # success; a teardown that could not stop the cluster fails the run too.
        for teardown in (terminate, report):
            teardown.as_teardown(setups=create, on_failure_fail_dagrun=True)
            # as_teardown sets ALL_DONE_SETUP_SUCCESS, which skips a teardown when
            # create_cluster failed; a failed create may still have made a cluster (found by its
            # run tags), and the report must say what happened to the dates
            teardown.trigger_rule = TriggerRule.ALL_DONE
    return dag


def schedule_of(config: PipelineConfig) -> Any:
    """The DAG's schedule: the pipeline's cron, as a ``CronPartitionTimetable`` keyed by the date a
    run processes (``%Y-%m-%d``, the day before the tick) when the pipeline is ``partitioned``."""
    if not (config.partitioned and config.schedule):
        return config.schedule
    from airflow.sdk import CronPartitionTimetable

    return CronPartitionTimetable(
        config.schedule, timezone="UTC", run_offset=-1, key_format=PARTITION_KEY_FORMAT
    )


def predictions_asset(config: PipelineConfig) -> Asset:
    """The pipeline's published predictions as one Asset, partitioned by date: ``publish_results``
    adds an event per date with the date as its partition key, so a DAG scheduled with
    ``PartitionedAssetTimetable`` on it gets one run per published date.

    Named, not an ``s3://`` URI: Airflow normalises S3 asset URIs with the Amazon provider, which
    would import boto3 whenever the DAG file is parsed; the output URI template is in its
    ``extra``, and each event's ``extra`` has the date's exact ``output_uri``.
    """
    return Asset(
        name=f"{config.pipeline}.predictions", extra={"output_uri_template": config.output_uri}
    )


@dataclass(frozen=True)
class Pipelines:
    """The pipeline files of a folder: the valid configs (by pipeline name, with their file) and
    one message per invalid file (``<file>: <dotted.field>: <problem>``)."""

    configs: dict[str, tuple[PipelineConfig, Path]]
    errors: list[str]


def load_pipelines(pipelines_dir: str | Path) -> Pipelines:
    """Validate every ``*.yaml`` in ``pipelines_dir``; an invalid file never hides a valid one.

    A file whose ``pipeline`` name an earlier file (in name order) already took is an error.
    """
    configs: dict[str, tuple[PipelineConfig, Path]] = {}
    errors: list[str] = []
    for path in sorted(Path(pipelines_dir).glob("*.yaml")):
        try:
            config = load_pipeline(path)
        except ConfigError as error:
            errors.append(str(error))
            continue
        if config.pipeline in configs:
            errors.append(f"{path}: pipeline: {config.pipeline!r} is already defined")
            continue
        configs[config.pipeline] = (config, path)
    return Pipelines(configs, errors)


def build_dags(pipelines_dir: str | Path) -> dict[str, DAG]:
    """``{dag_id: DAG}`` for every valid ``*.yaml`` in ``pipelines_dir``.

    Invalid files are left out here, so one broken file cannot take the other pipelines down;
    :func:`check_pipelines` (the DAG file ``dags/pipeline_file_errors.py``) makes them an import
    error of their own.
    """
    configs = load_pipelines(pipelines_dir).configs
    return {name: build_dag(config, source=path.name) for name, (config, path) in configs.items()}


def check_pipelines(pipelines_dir: str | Path) -> None:
    """Raise one ConfigError naming every invalid pipeline file and field, if there is one."""
    if errors := load_pipelines(pipelines_dir).errors:
        raise ConfigError(
            "Invalid pipeline files (their DAGs are not loaded):\n" + "\n".join(errors)
        )
