"""The sweeper: find the clusters this package made whose DAG run is over, and stop them.

The teardown task stops a run's cluster; the sweeper is for when it could not (the Airflow host
died, the teardown ran out of retries, the run was marked failed by hand). It works in three steps:

1. list the clusters: :func:`emr_clusters` (live EMR clusters and their tags) and
   :func:`local_clusters` (every recorded local cluster, see :mod:`emr_inference.local.cluster`);
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
from pathlib import Path
from typing import Any

from emr_inference.emr.job_flow import RUN_TAG_KEYS

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


# -- EMR ---------------------------------------------------------------------------------------


def emr_clusters(client: Any) -> list[ClusterRecord]:
    """Every live EMR cluster (any owner) with the run its tags name, if they name one."""
    from emr_inference.emr.cluster import LIVE_CLUSTER_STATES

    records = []
    paginator = client.get_paginator("list_clusters")
    for page in paginator.paginate(ClusterStates=LIVE_CLUSTER_STATES):
        for summary in page["Clusters"]:
            cluster = client.describe_cluster(ClusterId=summary["Id"])["Cluster"]
            tags = {tag["Key"]: tag["Value"] for tag in cluster.get("Tags", [])}
            ours = all(tags.get(key) for key in RUN_TAG_KEYS) and tags["pipeline"] == tags["dag_id"]
            records.append(ClusterRecord(
                "emr", summary["Id"], tags["dag_id"] if ours else None,
                tags["run_id"] if ours else None, alive=True,
            ))  # fmt: skip
    return records


def stop_emr_cluster(client: Any, cluster_id: str) -> None:
    """TerminateJobFlows (idempotent on EMR's side)."""
    client.terminate_job_flows(JobFlowIds=[cluster_id])


# -- local -------------------------------------------------------------------------------------


def local_clusters(base: Path | None = None) -> list[ClusterRecord]:
    """Every local cluster recorded under ``base`` (default: the local backend's state dir)."""
    from emr_inference.local.cluster import live_cluster_tags, recorded_clusters

    live_tags = live_cluster_tags()  # also finds executors left by a dead master or worker
    return [
        ClusterRecord(
            "local",
            cluster.cluster_id,
            cluster.dag_id or None,
            cluster.run_id or None,
            alive=cluster.cluster_id in live_tags or bool(cluster.live_processes()),
        )
        for cluster in recorded_clusters(base)
    ]


def stop_local_cluster(cluster_id: str, base: Path | None = None) -> None:
    """Stop every process of a recorded local cluster."""
    from emr_inference.local.cluster import LocalCluster, stop_cluster

    stop_cluster(LocalCluster.load(cluster_id, base))
