"""``wait_for_cluster_slot``: no more clusters of a pipeline at once than its ``max_active_runs``.

A DAG's ``max_active_runs`` does not bound backfills in Airflow 3.3: backfill runs count only
against the backfill's own ``max_active_runs`` (10 by default through the REST API). So the
pipeline enforces its own limit, whoever made the run, with this sensor before ``create_cluster``:

* a run **holds a cluster slot** from the success of its ``wait_for_cluster_slot`` until its
  ``terminate_cluster`` (the teardown) is finished, or the run itself is finished;
* the sensor succeeds only while fewer than ``max_clusters`` other runs of the DAG hold a slot;
  otherwise it waits in ``reschedule`` mode (no worker slot held between pokes);
* ``max_active_tis_per_dag=1``: Airflow never runs two of these sensors at once across all the
  DAG's runs (backfill runs included), so two runs cannot both see the last free slot.

An Airflow pool cannot express this: a pool slot is held by one running task, not from
``create_cluster`` to ``terminate_cluster``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseSensorOperator, Context

#: Task states after which a teardown no longer holds its run's cluster.
FINISHED_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
#: Run states in which a run can still hold a cluster.
ACTIVE_RUN_STATES = frozenset({"queued", "running"})
#: The shortest wait between two pokes. Airflow 3.3 may queue a rescheduled try again before the
#: worker process of its last poke has exited (seconds on a loaded machine); the LocalExecutor
#: then fails the new try. A slot is held for a whole cluster's life, so waiting longer costs
#: little.
MIN_POKE_INTERVAL_SECONDS = 30


def runs_holding_slots(
    task_states: Mapping[str, Mapping[str, Any]], slot_task_id: str, release_task_id: str
) -> list[str]:
    """Run ids whose ``slot_task_id`` succeeded and whose ``release_task_id`` is not finished.

    :param task_states: ``{run_id: {task_id: state}}``, as ``RuntimeTaskInstance.get_task_states``
        returns it.
    """
    return sorted(
        run_id
        for run_id, states in task_states.items()
        if states.get(slot_task_id) == "success"
        and states.get(release_task_id) not in FINISHED_TASK_STATES
    )


class WaitForClusterSlotSensor(BaseSensorOperator):
    """Wait until this pipeline has fewer than ``max_clusters`` clusters held by other runs.

    :param max_clusters: the most runs of this DAG that may hold a cluster at once (the
        pipeline's ``max_active_runs``).
    :param release_task_id: the task whose end releases a run's slot (the teardown).
    :param poke_interval: seconds between pokes, at least ``MIN_POKE_INTERVAL_SECONDS``.
    """

    ui_color = "#fdf1d6"

    def __init__(
        self,
        *,
        max_clusters: int,
        release_task_id: str = "terminate_cluster",
        poke_interval: float = 60,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("timeout", dt.timedelta(days=7).total_seconds())
        super().__init__(
            max_active_tis_per_dag=1,
            poke_interval=max(poke_interval, MIN_POKE_INTERVAL_SECONDS),
            **kwargs,
        )
        self.max_clusters = max_clusters
        self.release_task_id = release_task_id

    def poke(self, context: Context) -> bool:
        ti = context["ti"]
        states = ti.get_task_states(
            dag_id=self.dag_id, task_ids=[self.task_id, self.release_task_id]
        )
        candidates = runs_holding_slots(states, self.task_id, self.release_task_id)
        holders = [
            run_id
            for run_id in candidates
            if run_id != ti.run_id and ti.get_dagrun_state(self.dag_id, run_id) in ACTIVE_RUN_STATES
        ]
        if len(holders) < self.max_clusters:
            self.log.info(
                "Cluster slot %d of %d taken (other runs holding one: %s)",
                len(holders) + 1,
                self.max_clusters,
                holders or "none",
            )
            return True
        self.log.info(
            "All %d cluster slots of %s are held, by %s: waiting for a teardown to finish",
            self.max_clusters,
            self.dag_id,
            holders,
        )
        return False
