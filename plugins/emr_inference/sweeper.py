"""The sweeper: find the clusters this package made whose DAG run is over, and stop them.

The teardown task stops a run's cluster; the sweeper is for when it could not (the Airflow host
died, the teardown ran out of retries, the run was marked failed by hand). It works in three steps:

1. list the clusters: each backend's :meth:`~emr_inference.backend.Backend.sweep` (EMR: the live
   clusters and their tags; local: every recorded local cluster) at the targets its
   :meth:`~emr_inference.backend.Backend.sweep_targets` names;
2. look up the state of each cluster's DAG run (the operator asks Airflow);
3. :func:`decide` (pure): which to stop and why. A cluster is ours only when it names its run
   (EMR: all of the tags ``dag_id``, ``run_id``, ``pipeline``, the last equal to the first, and the
   dag_id one of our pipelines; local: the dag_id and run_id in ``cluster.json``). Ours and
   alive, it is stopped when its run is finished or unknown to Airflow, and kept while the run is
   queued or running. Anything else is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: DAG run states in which the run may still use its cluster.
ACTIVE_RUN_STATES = frozenset({"queued", "running"})

RunKey = tuple[str, str]


@dataclass(frozen=True)
class ClusterRecord:
    """A cluster as the sweeper sees it.

    :param backend: ``emr`` or ``local``
    :param cluster_id: ``j-...`` or ``local-...``
    :param dag_id: the run it belongs to, None when it does not name one (not ours)
    :param run_id: idem
    :param alive: EMR: in a live state; local: a process of it is still running
    """

    backend: str
    cluster_id: str
    dag_id: str | None
    run_id: str | None
    alive: bool

    @property
    def run(self) -> RunKey | None:
        """``(dag_id, run_id)``, or None for a cluster that names no run."""
        return (self.dag_id, self.run_id) if self.dag_id and self.run_id else None


@dataclass(frozen=True)
class Sweep:
    """One sweep target's clusters (as a backend lists them) and how to stop one.

    :param pipelines: the dag_ids that are ours (a cluster naming another is never touched); None
        when every cluster listed is ours (the local state dir holds only clusters we made)
    """

    clusters: list[ClusterRecord]
    stop: Callable[[str], None]
    pipelines: Collection[str] | None


@dataclass(frozen=True)
class Verdict:
    """What the sweeper does with one cluster and why."""

    cluster: ClusterRecord
    stop: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary (the sweeper task's XCom)."""
        return {
            "backend": self.cluster.backend,
            "cluster_id": self.cluster.cluster_id,
            "dag_id": self.cluster.dag_id,
            "run_id": self.cluster.run_id,
            "stop": self.stop,
            "reason": self.reason,
        }


def decide(
    clusters: Iterable[ClusterRecord],
    run_states: Mapping[RunKey, str | None],
    pipelines: Collection[str] | None = None,
) -> list[Verdict]:
    """Which clusters to stop, given their runs' states (None: Airflow does not know the run).

    ``pipelines``: the dag_ids that are ours; None accepts any (the local state dir holds only
    clusters this package made).
    """
    verdicts = []
    for cluster in clusters:
        run = cluster.run
        if run is None:
            verdicts.append(Verdict(cluster, False, "names no DAG run: not ours, never touched"))
        elif pipelines is not None and run[0] not in pipelines:
            verdicts.append(Verdict(cluster, False, f"dag_id {run[0]!r} is not one of ours"))
        elif not cluster.alive:
            verdicts.append(Verdict(cluster, False, "already stopped"))
        elif (state := run_states.get(run)) is None:
            verdicts.append(Verdict(cluster, True, f"its run {run[1]!r} is unknown to Airflow"))
        elif state in ACTIVE_RUN_STATES:
            verdicts.append(Verdict(cluster, False, f"its run {run[1]!r} is {state}"))
        else:
            verdicts.append(Verdict(cluster, True, f"its run {run[1]!r} is {state}"))
    return verdicts


def run_states(
    clusters: Iterable[ClusterRecord], lookup: Callable[[str, str], str | None]
) -> dict[RunKey, str | None]:
    """``{(dag_id, run_id): state}`` of every run the alive clusters name, one lookup per run."""
    runs = {cluster.run for cluster in clusters if cluster.alive and cluster.run}
    return {run: lookup(*run) for run in sorted(runs)}
