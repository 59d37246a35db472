"""The ``emr`` backend: a transient Amazon EMR cluster per run (:class:`EmrBackend`).

Its settings are the request's ``cluster`` section; its operators subclass the Amazon provider's
(:mod:`emr_inference.emr.operators`); sizing, prices and release rules are this package's
(:mod:`~emr_inference.emr.sizing`, :mod:`~emr_inference.emr.prices`,
:mod:`~emr_inference.emr.releases`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emr_inference.backend import ClusterShape, ClusterTasks, NodeGroup
from emr_inference.emr import prices
from emr_inference.emr.job_flow import RUN_TAG_KEYS
from emr_inference.sweeper import ClusterRecord, Sweep

if TYPE_CHECKING:
    from emr_inference.config import ClusterConfig, PipelineConfig, RequestDefaults
    from emr_inference.resolved import ResolvedRequest


class EmrBackend:
    """Amazon EMR (see :class:`emr_inference.backend.Backend` for what each method answers)."""

    name = "emr"

    def cluster_tasks(self, config: PipelineConfig) -> ClusterTasks:
        """The provider-based operators; the step sensor defers per ``config.deferrable``."""
        from emr_inference.emr import operators

        return ClusterTasks(
            operators.EmrCreateClusterOperator,
            operators.EmrSubmitStepOperator,
            operators.EmrInferenceStepSensor,
            operators.EmrTerminateClusterOperator,
            wait_kwargs={"deferrable": config.deferrable},
        )

    def check_request(self, values: RequestDefaults, source: str) -> None:
        """The release runs the model's runtime, on the nodes' architecture (every node group one
        architecture: :mod:`emr_inference.emr.architecture`), the engine's packages are on the
        nodes, and the executors fit the nodes (:mod:`emr_inference.emr.sizing`)."""
        from emr_inference.config import ConfigError
        from emr_inference.emr.architecture import ArchitectureError, check_architecture
        from emr_inference.emr.releases import releases_with_runtime, supported_release
        from emr_inference.emr.sizing import SizingError, check_sizing

        label, runtime = values.cluster.release_label, values.model.runtime
        try:
            release = supported_release(label)
        except KeyError as error:
            raise ConfigError(f"{source}: {error.args[0]}") from None
        if runtime not in release.runtimes:
            raise ConfigError(
                f"{source}: model.runtime: {release.label}'s nodes run "
                f"{', '.join(release.runtimes)}, not {runtime} (releases that run {runtime}: "
                f"{', '.join(releases_with_runtime(runtime))})"
            )
        try:
            check_architecture(values.cluster, release, runtime)
        except (ArchitectureError, SizingError) as error:
            raise ConfigError(f"{source}: {error}") from None
        if values.engine == "predict_batch_udf":
            raise ConfigError(
                f"{source}: engine: predict_batch_udf needs pandas and pyarrow on the nodes, which "
                "the EMR bootstrap (include/bootstrap/requirements-emr.txt) does not install; "
                "use engine rdd with backend emr"
            )
        try:
            check_sizing(values)
        except SizingError as error:
            raise ConfigError(f"{source}: {error}") from None

    def cluster_shape(self, request: RequestDefaults) -> ClusterShape:
        """Every node group, priced at its first instance type (Spot at on-demand); tasks at once
        = executors x tasks per executor."""
        from emr_inference.emr.sizing import executor_plan

        plan = executor_plan(request)
        executors = min(plan.instances, plan.capacity)
        return ClusterShape(
            node_groups(request.cluster), executors * plan.concurrent_tasks, prices.SOURCE
        )

    def stage_artifacts(
        self, s3: Any, request: ResolvedRequest, files: Mapping[str, Path]
    ) -> dict[str, str]:
        """With ``cluster.bootstrap_source: wheelhouse``, the pinned wheels for the release's
        Python on the nodes' architecture (:mod:`emr_inference.emr.wheelhouse`, staged once per
        requirements file and architecture)."""
        if request.cluster.bootstrap_source != "wheelhouse":
            return {}
        from emr_inference.emr.architecture import cluster_architecture
        from emr_inference.emr.releases import supported_release
        from emr_inference.emr.wheelhouse import stage_wheelhouse

        python = supported_release(request.cluster.release_label).python
        machine = cluster_architecture(request.cluster)
        artifacts_uri = request.artifacts_uri.uri
        requirements = files["bootstrap_requirements"]
        prefix = stage_wheelhouse(s3, requirements, artifacts_uri, python, machine)
        return {"wheelhouse": prefix}

    def sweep_targets(self, configs: Sequence[PipelineConfig]) -> list[dict[str, Any]]:
        """One target per AWS connection (its region), each knowing every EMR pipeline's name."""
        pipelines = sorted(config.pipeline for config in configs)
        conn_ids = sorted({config.aws_conn_id for config in configs})
        return [{"backend": self.name, "conn_id": c, "pipelines": pipelines} for c in conn_ids]

    def sweep(self, target: Mapping[str, Any]) -> Sweep:
        """The live clusters in the connection's region; ours are those tagged with our run."""
        from airflow.providers.amazon.aws.hooks.emr import EmrHook

        client = EmrHook(aws_conn_id=target["conn_id"]).conn
        return Sweep(emr_clusters(client), partial(stop_emr_cluster, client), target["pipelines"])


def node_groups(cluster: ClusterConfig) -> list[NodeGroup]:
    """The cluster section's node groups (master, core, task when configured), each priced per
    node."""
    groups = []
    for role, node in (("master", cluster.master), ("core", cluster.core), ("task", cluster.task)):
        if node is None:
            continue
        name = node.instance_types[0]
        price = prices.hourly_price(name)
        groups.append(NodeGroup(role, name, node.count, price.total_usd if price else None))
    return groups


def emr_clusters(client: Any) -> list[ClusterRecord]:
    """Every live EMR cluster (any owner) with the run its tags name, if they name one (all of
    the tags ``dag_id``, ``run_id``, ``pipeline``, the last equal to the first)."""
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


BACKEND = EmrBackend()
