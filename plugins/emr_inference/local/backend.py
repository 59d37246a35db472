"""The ``local`` backend: a Spark standalone cluster here per run (:class:`LocalBackend`).

Its settings are the request's ``local`` section; its processes and their state live under
:func:`emr_inference.local.cluster.state_base`. It costs nothing, so its plan has times only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emr_inference.backend import ClusterShape, ClusterTasks
from emr_inference.sweeper import ClusterRecord, Sweep

if TYPE_CHECKING:
    from emr_inference.config import PipelineConfig, RequestDefaults
    from emr_inference.resolved import ResolvedRequest


class LocalBackend:
    """Spark standalone on loopback (see :class:`emr_inference.backend.Backend`)."""

    name = "local"

    def cluster_tasks(self, config: PipelineConfig) -> ClusterTasks:
        """The local operators (:mod:`emr_inference.local.operators`)."""
        from emr_inference.local import operators

        return ClusterTasks(
            operators.LocalCreateClusterOperator,
            operators.LocalSubmitStepOperator,
            operators.LocalStepSensor,
            operators.LocalTerminateClusterOperator,
        )

    def check_request(self, values: RequestDefaults, source: str) -> None:
        """Nothing beyond the ``local`` section's schema: every request runs here."""

    def cluster_shape(self, request: RequestDefaults) -> ClusterShape:
        """No priced nodes; tasks at once = the workers' cores."""
        return ClusterShape([], request.local.workers * request.local.worker_cores)

    def stage_artifacts(
        self, s3: Any, request: ResolvedRequest, files: Mapping[str, Path]
    ) -> dict[str, str]:
        """Nothing: the local workers run this interpreter's packages."""
        return {}

    def sweep_targets(self, configs: Sequence[PipelineConfig]) -> list[dict[str, Any]]:
        """The default state dir (``""``), when any pipeline runs locally."""
        return [{"backend": self.name, "state_dir": ""}] if configs else []

    def sweep(self, target: Mapping[str, Any]) -> Sweep:
        """Every cluster recorded in the target's state dir (``""``: the default one)."""
        base = Path(target["state_dir"]) if target.get("state_dir") else None
        return Sweep(local_clusters(base), partial(stop_local_cluster, base=base), None)


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


BACKEND = LocalBackend()
