"""What a backend is: where a run's cluster comes from, and everything that depends on it.

A backend (``emr``: Amazon EMR; ``local``: a Spark standalone cluster here) implements
:class:`Backend`, in its own package (``emr_inference/<name>/backend.py``, which defines
``BACKEND``), registered by name in :data:`emr_inference.backends.REGISTERED`. The rest of the
package asks the backend and never branches on its name:

* the DAG factory: the operator classes of the four cluster tasks (:meth:`Backend.cluster_tasks`);
* the pipeline and trigger-time checks: what the cluster section must satisfy beyond its schema
  (:meth:`Backend.check_request`);
* the run plan: what the cluster is made of, its price and the tasks it runs at once
  (:meth:`Backend.cluster_shape`);
* ``stage_job_artifacts``: the files this backend's clusters need besides the job's
  (:meth:`Backend.stage_artifacts`);
* the sweeper: where this backend's clusters are listed and how one is stopped
  (:meth:`Backend.sweep_targets`, :meth:`Backend.sweep`).

A backend's settings are its section of the request (``cluster``: EMR's, ``local``: the local
cluster's), declared in :mod:`emr_inference.config` like every request field, so the Params, the
YAML check and docs/CONFIGURATION.md have one schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the interface imports nothing at run time: the registry loads backends lazily
    from emr_inference.config import PipelineConfig, RequestDefaults
    from emr_inference.resolved import ResolvedRequest
    from emr_inference.sweeper import Sweep


@dataclass(frozen=True)
class ClusterTasks:
    """The operator classes of a backend's four cluster tasks, plus extra sensor arguments."""

    create: type
    submit: type
    wait: type
    terminate: type
    wait_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeGroup:
    """Nodes of one role, priced at ``hourly_usd`` each (None: not in the price table)."""

    role: str
    instance_type: str
    count: int
    hourly_usd: float | None


@dataclass(frozen=True)
class ClusterShape:
    """What a cluster is made of, how many inference tasks it runs at once, and where its prices
    come from (None: the backend costs nothing, such as the local one)."""

    nodes: list[NodeGroup]
    task_slots: int
    price_source: str | None = None

    @property
    def hourly_usd(self) -> float | None:
        """The whole cluster per hour, or None when a node type has no price (or locally)."""
        prices = [group.hourly_usd for group in self.nodes]
        if not prices or any(price is None for price in prices):
            return None
        return sum(group.count * (group.hourly_usd or 0.0) for group in self.nodes)


class Backend(Protocol):
    """One place where runs get their cluster (see the module doc for who asks what)."""

    #: the pipelines' ``backend`` value
    name: str

    def cluster_tasks(self, config: PipelineConfig) -> ClusterTasks:
        """The operator classes of ``create_cluster``, ``submit_inference_step``,
        ``wait_for_inference_step`` and ``terminate_cluster`` (imported only when asked: a DAG
        parse imports only its own backend's operators)."""
        ...

    def check_request(self, values: RequestDefaults, source: str) -> None:
        """Raise :class:`~emr_inference.config.ConfigError` (message starting with ``source``,
        naming the field) when the request's values (a pipeline's, a run's Params validated, or
        a resolved request) cannot run on this backend."""
        ...

    def cluster_shape(self, request: RequestDefaults) -> ClusterShape:
        """The cluster a request gets, priced, and its concurrent tasks."""
        ...

    def stage_artifacts(
        self, s3: Any, request: ResolvedRequest, files: Mapping[str, Path]
    ) -> dict[str, str]:
        """Stage what this backend needs besides the job's files (``files``: what was built);
        ``{name: s3 URI}`` added to ``stage_job_artifacts``' result."""
        ...

    def sweep_targets(self, configs: Sequence[PipelineConfig]) -> list[dict[str, Any]]:
        """Where the sweeper looks for the clusters of these pipelines (all of this backend):
        JSON-able targets, each with ``"backend": name``."""
        ...

    def sweep(self, target: Mapping[str, Any]) -> Sweep:
        """The clusters at one of :meth:`sweep_targets`' targets, and how to stop one."""
        ...
