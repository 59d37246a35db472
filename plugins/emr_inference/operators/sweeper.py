"""The sweeper task: stop every cluster of ours whose DAG run is over (see
:mod:`emr_inference.sweeper` for the rules).

Run states come from Airflow through the Task SDK (``ti.get_dr_count`` and
``ti.get_dagrun_state``: the execution API, no database access from the task). With the DAG
Param ``dry_run`` the task only logs what it would stop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from emr_inference.backends import backend_named
from emr_inference.sweeper import ClusterRecord, Verdict, decide, run_states


def dagrun_state(ti: Any, dag_id: str, run_id: str) -> str | None:
    """The state of a DAG run as Airflow knows it, None when there is no such run."""
    if not ti.get_dr_count(dag_id=dag_id, run_ids=[run_id]):
        return None
    state = ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)
    return str(getattr(state, "value", state))


class SweepClustersOperator(BaseOperator):
    """Stop the clusters of finished (or unknown) runs; returns one summary per cluster stopped.

    :param targets: where to look, each ``{"backend": name, ...}`` as that backend's
        :meth:`~emr_inference.backend.Backend.sweep_targets` gives it (EMR: an AWS connection and
        our pipelines' names; local: a state dir, "" = the default one)
    """

    def __init__(self, *, targets: Sequence[Mapping[str, Any]] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.targets = [dict(target) for target in targets]

    def execute(self, context: Context) -> list[dict[str, Any]]:
        dry_run = bool(context["params"].get("dry_run", False))
        ti = context["ti"]

        def lookup(dag_id: str, run_id: str) -> str | None:
            return dagrun_state(ti, dag_id, run_id)

        failures: list[str] = []
        stopped: list[dict[str, Any]] = []
        for target in self.targets:
            sweep = backend_named(target["backend"]).sweep(target)
            states = run_states(sweep.clusters, lookup)
            verdicts = decide(sweep.clusters, states, sweep.pipelines)
            stopped += self._apply(verdicts, sweep.stop, dry_run, failures)
        self.log.info("%s %d cluster(s)", "Would stop" if dry_run else "Stopped", len(stopped))
        if failures:
            raise AirflowException("Could not stop: " + "; ".join(failures))
        return stopped

    def _apply(
        self,
        verdicts: Sequence[Verdict],
        stop: Callable[[str], None],
        dry_run: bool,
        failures: list[str],
    ) -> list[dict[str, Any]]:
        """Log every verdict, stop (unless dry run) the clusters to stop; their summaries."""
        done = []
        for verdict in verdicts:
            cluster: ClusterRecord = verdict.cluster
            what = f"{cluster.backend} cluster {cluster.cluster_id} (dag_id={cluster.dag_id!r})"
            if not verdict.stop:
                self.log.info("Keeping %s: %s", what, verdict.reason)
                continue
            if dry_run:
                self.log.info("Dry run: would stop %s: %s", what, verdict.reason)
            else:
                self.log.info("Stopping %s: %s", what, verdict.reason)
                try:
                    stop(cluster.cluster_id)
                except Exception as error:  # one failure must not spare the other clusters
                    self.log.exception("Could not stop %s", what)
                    failures.append(f"{cluster.cluster_id}: {error}")
                    continue
            done.append({**verdict.as_dict(), "dry_run": dry_run})
        return done
