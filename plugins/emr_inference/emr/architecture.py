"""The node architecture of an EMR cluster (x86_64 or aarch64), and the check that its release and
model runtime run there.

Every node runs the bootstrap action (the job's virtualenv, from wheels for its machine), the
master runs the Spark driver, core and task nodes the executors: the model runtime must import on
all of them. An architecture is refused, naming the instance types field, where

* a runtime the nodes need has no build for it: ``model.runtime: mxnet`` (EMR's MXNet application,
  emr-7.2.0's only runtime) and ``openvino`` (pinned x86_64-only: its aarch64 wheels need glibc
  2.35, Amazon Linux 2023 has 2.34) are x86_64 only; ``onnxruntime`` on emr-7.13.0 runs on both
  (:data:`emr_inference.emr.releases.RUNTIME_ARCHITECTURES`);
* the node groups mix architectures (say an x86_64 master beside aarch64 core nodes).

Why one architecture per cluster rather than mixing where the wheelhouse covers both: the
bootstrap action is one script with one set of arguments for every node, pointing at one staged
wheelhouse (``<artifacts_uri>wheelhouse/<architecture>/<sha256>/``); a mixed cluster would need
two wheelhouses and the script choosing by ``uname -m``, and its driver and executors would run
different builds of the runtime, whose results the agreement gates were not measured across. A
Graviton master costs less than an x86_64 one anyway, so nothing is lost by asking for both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emr_inference.emr.instance_types import Architecture, InstanceType
from emr_inference.emr.releases import RUNTIME_ARCHITECTURES, SUPPORTED_RELEASES
from emr_inference.emr.sizing import node_types

if TYPE_CHECKING:
    from emr_inference.config import ClusterConfig, NodeGroupConfig
    from emr_inference.emr.releases import EmrRelease


class ArchitectureError(ValueError):
    """A cluster whose nodes cannot run the job; ``field`` is the dotted config field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def node_groups(cluster: ClusterConfig) -> list[tuple[str, NodeGroupConfig]]:
    """``(role, node group)`` of every node group: master, core, and task when present."""
    groups = [("master", cluster.master), ("core", cluster.core)]
    if cluster.task:
        groups.append(("task", cluster.task))
    return groups


def _describe(types: list[InstanceType]) -> str:
    return ", ".join(f"{kind.name} {kind.architecture}" for kind in types)


def cluster_architecture(cluster: ClusterConfig) -> Architecture:
    """The one architecture of every node type of ``cluster`` (the core nodes' when they agree);
    :class:`ArchitectureError` naming the group that differs, and
    :class:`~emr_inference.emr.sizing.SizingError` naming a type the table lacks."""
    core = node_types(cluster, "core", cluster.core)
    architecture = core[0].architecture
    for role, node in node_groups(cluster):
        types = node_types(cluster, role, node)
        if any(kind.architecture != architecture for kind in types):
            reference = "" if role == "core" else f"; cluster.core: {_describe(core)}"
            raise ArchitectureError(
                f"cluster.{role}.instance_types",
                f"{_describe(types)}{reference}: every node of a cluster must be one architecture "
                "(x86_64 or aarch64): the bootstrap action installs one wheelhouse on every node "
                "and the driver and executors run the same runtime build "
                "(emr_inference/emr/architecture.py)",
            )
    return architecture


def pairings_on(architecture: str) -> list[str]:
    """``emr-7.13.0 + onnxruntime``: every supported release and runtime that runs on
    ``architecture``."""
    return [
        f"{release.label} + {runtime}"
        for release in SUPPORTED_RELEASES.values()
        for runtime in release.runtimes
        if architecture in RUNTIME_ARCHITECTURES.get(runtime, ())
    ]


_WHY_NOT = {
    "mxnet": "EMR's MXNet application has no aarch64 build",
    "openvino": (
        "OpenVINO is pinned for x86_64 only: its aarch64 wheels need glibc 2.35, Amazon Linux "
        "2023 has 2.34"
    ),
}


def check_architecture(cluster: ClusterConfig, release: EmrRelease, runtime: str) -> Architecture:
    """The cluster's architecture when ``runtime`` on ``release`` runs there;
    :class:`ArchitectureError` naming the core nodes' instance types otherwise (see the module
    docstring)."""
    architecture = cluster_architecture(cluster)
    runs_on = RUNTIME_ARCHITECTURES.get(runtime, ())
    if architecture not in runs_on:
        names = ", ".join(kind.name for kind in node_types(cluster, "core", cluster.core))
        why = _WHY_NOT.get(runtime, f"{runtime} has no {architecture} build")
        raise ArchitectureError(
            "cluster.core.instance_types",
            f"{names} (and every other node) run {architecture}, but model.runtime {runtime} on "
            f"{release.label} runs on {', '.join(runs_on) or 'no architecture'} only ({why}); "
            f"{architecture} nodes run {', '.join(pairings_on(architecture)) or 'nothing here'}",
        )
    return architecture
