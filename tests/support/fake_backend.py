"""A third backend that exists only in the tests: registered by name, it must be all the package
needs (tests/unit/emr_inference/test_backends.py). Its cluster tasks are the local backend's
operators under its own class names; its clusters live in :attr:`FakeBackend.clusters`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from emr_inference.backend import ClusterShape, ClusterTasks, NodeGroup
from emr_inference.config import ConfigError, PipelineConfig, RequestDefaults
from emr_inference.local import operators
from emr_inference.resolved import ResolvedRequest
from emr_inference.sweeper import ClusterRecord, Sweep


class FakeCreate(operators.LocalCreateClusterOperator):
    """create_cluster on the fake backend."""


class FakeSubmit(operators.LocalSubmitStepOperator):
    """submit_inference_step on the fake backend."""


class FakeWait(operators.LocalStepSensor):
    """wait_for_inference_step on the fake backend."""


class FakeTerminate(operators.LocalTerminateClusterOperator):
    """terminate_cluster on the fake backend."""


class FakeBackend:
    """Two priced nodes of 4 task slots each; refuses batch sizes over 64; one sweep target."""

    name = "fake"

    def __init__(self) -> None:
        #: cluster id -> (dag_id, run_id) of the fake clusters alive; the sweeper stops them here
        self.clusters: dict[str, tuple[str, str]] = {}

    def cluster_tasks(self, config: PipelineConfig) -> ClusterTasks:
        return ClusterTasks(FakeCreate, FakeSubmit, FakeWait, FakeTerminate)

    def check_request(self, values: RequestDefaults, source: str) -> None:
        if values.batch_size > 64:
            raise ConfigError(f"{source}: batch_size: the fake backend takes at most 64")

    def cluster_shape(self, request: RequestDefaults) -> ClusterShape:
        return ClusterShape([NodeGroup("node", "fake.large", 2, 1.5)], 8, "fake price list")

    def stage_artifacts(
        self, s3: Any, request: ResolvedRequest, files: Mapping[str, Path]
    ) -> dict[str, str]:
        return {"fake_extra": request.artifacts_uri.uri + "fake/"}

    def sweep_targets(self, configs: Sequence[PipelineConfig]) -> list[dict[str, Any]]:
        return [{"backend": self.name, "pipelines": sorted(c.pipeline for c in configs)}]

    def sweep(self, target: Mapping[str, Any]) -> Sweep:
        records = [
            ClusterRecord(self.name, cluster_id, dag_id, run_id, alive=True)
            for cluster_id, (dag_id, run_id) in sorted(self.clusters.items())
        ]
        return Sweep(records, self.clusters.pop, target["pipelines"])


BACKEND = FakeBackend()
