"""Build one DAG per pipeline YAML file.

Every pipeline has the same task graph; the backend (``emr`` or ``local``) picks the operator
classes of the four cluster tasks::

    validate_request -> stage_job_artifacts -> stage_manifest -> wait_for_cluster_slot
      -> create_cluster (setup) -> submit_inference_step -> wait_for_inference_step
      -> publish_results
      -> terminate_cluster (teardown of create_cluster: runs even when a task before it failed)

Parsing imports no heavy library: operators import boto3 clients, Spark or MXNet only when they run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, chain

from emr_inference.config import ConfigError, PipelineConfig, load_pipeline
from emr_inference.params import build_params


@dataclass(frozen=True)
class Backend:
    """The operator classes of one backend's cluster tasks, plus extra sensor arguments."""

    create: type
    submit: type
    wait: type
    terminate: type
    wait_kwargs: Mapping[str, Any] = field(default_factory=dict)


def backend_for(config: PipelineConfig) -> Backend:
    """The operator classes for ``config.backend`` (imported only for the backend in use)."""
    if config.backend == "emr":
        from emr_inference.operators import emr

        return Backend(
            emr.EmrCreateClusterOperator,
            emr.EmrSubmitStepOperator,
            emr.EmrInferenceStepSensor,
            emr.EmrTerminateClusterOperator,
            wait_kwargs={"deferrable": config.deferrable},
        )
    from emr_inference.operators import local

    return Backend(
        local.LocalCreateClusterOperator,
        local.LocalSubmitStepOperator,
        local.LocalStepSensor,
        local.LocalTerminateClusterOperator,
    )


def build_dag(config: PipelineConfig, source: str | None = None) -> DAG:
    """The DAG of one pipeline: Params from the config, tasks wired for its backend."""
    from emr_inference.operators.artifacts import StageJobArtifactsOperator
    from emr_inference.operators.manifest import StageManifestOperator
    from emr_inference.operators.publish import PublishResultsOperator
    from emr_inference.operators.slots import WaitForClusterSlotSensor
    from emr_inference.operators.validate import ValidateRequestOperator

    backend = backend_for(config)
    aws = {"aws_conn_id": config.aws_conn_id}
    doc = f"{config.description or ''}\n\nPipeline file: `{source}`" if source else None
    with DAG(
        dag_id=config.pipeline,
        description=config.description,
        doc_md=doc,
        schedule=config.schedule,
        start_date=dt.datetime.combine(config.start_date, dt.time(), dt.UTC),
        catchup=config.catchup,
        max_active_runs=config.max_active_runs,
        tags=sorted({*config.tags, config.backend, "inference"}),
        params=build_params(config),
        default_args={
            "retries": config.retries,
            "retry_delay": dt.timedelta(seconds=config.retry_delay_seconds),
        },
    ) as dag:
        validate = ValidateRequestOperator(
            task_id="validate_request", config=config.model_dump(mode="json"), retries=0
        )
        request = validate.output
        artifacts = StageJobArtifactsOperator(task_id="stage_job_artifacts", request=request, **aws)
        manifest = StageManifestOperator(task_id="stage_manifest", request=request, **aws)
        # no more clusters at once than max_active_runs, backfills included (operators/slots.py)
        slot = WaitForClusterSlotSensor(
            task_id="wait_for_cluster_slot",
            max_clusters=config.max_active_runs,
            poke_interval=config.poke_interval_seconds,
        )
        create = backend.create(
            task_id="create_cluster", request=request, artifacts=artifacts.output, **aws
        )
        submit = backend.submit(
            task_id="submit_inference_step",
            request=request,
            artifacts=artifacts.output,
            manifest=manifest.output,
            cluster_id=create.output,
            **aws,
        )
        wait = backend.wait(
            task_id="wait_for_inference_step",
            request=request,
            manifest=manifest.output,
            cluster_id=create.output,
            step_id=submit.output,
            poke_interval=config.poke_interval_seconds,
            timeout=config.step_timeout_seconds,
            **backend.wait_kwargs,
            **aws,
        )
        publish = PublishResultsOperator(
            task_id="publish_results", request=request, manifest=manifest.output, **aws
        )
        terminate = backend.terminate(
            task_id="terminate_cluster", request=request, cluster_id=create.output, **aws
        )
        chain(validate, artifacts, manifest, slot, create, submit, wait, publish, terminate)
        terminate.as_teardown(setups=create)
    return dag


def build_dags(pipelines_dir: str | Path) -> dict[str, DAG]:
    """``{dag_id: DAG}`` for every ``*.yaml`` in ``pipelines_dir``.

    Raises one ConfigError listing every invalid file (Airflow shows it as the DAG file's import
    error) rather than silently dropping a pipeline.
    """
    dags: dict[str, DAG] = {}
    errors: list[str] = []
    for path in sorted(Path(pipelines_dir).glob("*.yaml")):
        try:
            config = load_pipeline(path)
        except ConfigError as error:
            errors.append(str(error))
            continue
        if config.pipeline in dags:
            errors.append(f"{path}: pipeline: {config.pipeline!r} is already defined")
            continue
        dags[config.pipeline] = build_dag(config, source=path.name)
    if errors:
        raise ConfigError("\n".join(errors))
    return dags
