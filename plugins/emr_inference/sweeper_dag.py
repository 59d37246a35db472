"""The ``emr_inference_sweeper`` maintenance DAG (``dags/emr_inference_sweeper.py``).

One task, :class:`~emr_inference.operators.sweeper.SweepClustersOperator`, every
:data:`SWEEP_SCHEDULE`: it stops every cluster of the pipelines' backends whose DAG run is
finished or unknown, at the targets each backend in use names (EMR: the regions of the EMR
pipelines' AWS connections; local: the local backend's state dir).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from airflow.sdk import DAG, Param

from emr_inference.backends import backend_named
from emr_inference.config import PipelineConfig

DAG_ID = "emr_inference_sweeper"
SWEEP_SCHEDULE = "*/15 * * * *"


def build_sweeper_dag(configs: Iterable[PipelineConfig], schedule: str | None = SWEEP_SCHEDULE):
    """The sweeper DAG for these pipelines (Param ``dry_run``: log, stop nothing)."""
    from emr_inference.operators.sweeper import SweepClustersOperator

    configs = list(configs)
    targets = [
        target
        for name in sorted({config.backend for config in configs})
        for target in backend_named(name).sweep_targets(
            [config for config in configs if config.backend == name]
        )
    ]
    with DAG(
        dag_id=DAG_ID,
        description="Stops the clusters of inference runs that are over (the teardown's backstop)",
        doc_md=__doc__,
        schedule=schedule,
        start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        tags=["inference", "maintenance"],
        params={
            "dry_run": Param(False, type="boolean", description="Only log what would be stopped")
        },
        default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=1)},
    ) as dag:
        SweepClustersOperator(
            task_id="sweep_clusters",
            targets=targets,
            execution_timeout=dt.timedelta(minutes=10),
        )
    return dag
