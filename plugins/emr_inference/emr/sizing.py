"""Spark executor settings for an EMR cluster: derived from the nodes and the model, then checked.

The arithmetic (docs/SIZING.md has it with a worked example):

* an executor runs ``tasks_per_executor`` tasks of ``task_cpus`` vCPUs each, so
  ``spark.executor.cores = task_cpus x tasks_per_executor``; one Python worker per running task;
* its YARN container is ``spark.executor.memory`` (JVM heap) + ``spark.executor.memoryOverhead``
  + ``spark.executor.pyspark.memory`` (when set). YARN on EMR places containers by memory only, so
  a node holds ``min(yarn_memory // container, (vcpus - reserved_vcpus) // executor cores)``
  executors, and the step asks for exactly that many per node (``spark.executor.instances``), less
  one where the YARN application master (client mode: ~896 MiB) does not fit beside them;
* the Python workers' memory: Spark divides ``spark.executor.pyspark.memory`` by
  ``spark.executor.cores`` (not by the running tasks) and applies the result to each worker as an
  address-space limit (``RLIMIT_AS``). We do not set it: we reserve each worker's measured
  resident peak (``model.worker_memory_mb``) in the overhead instead, which YARN accounts for
  exactly. An explicit ``spark.executor.pyspark.memory`` is checked against the model's measured
  peak address space (``model.worker_address_space_mb``).

Explicit ``cluster.spark_defaults`` win over every derived value and are checked the same way; a
setting that cannot work is a :class:`SizingError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emr_inference.emr.instance_types import INSTANCE_TYPES, InstanceType, instance_type

if TYPE_CHECKING:
    from emr_inference.config import ClusterConfig, ModelConfig, NodeGroupConfig, RequestDefaults

#: Spark's default ``spark.executor.memoryOverhead``: max(384 MiB, 10 % of the heap).
JVM_OVERHEAD_MIN_MB = 384
JVM_OVERHEAD_FACTOR = 0.10
#: The YARN application master of a client-mode job: spark.yarn.am.memory 512m + 384m overhead.
APPLICATION_MASTER_MB = 896

EXECUTOR_KEYS = (
    "spark.executor.cores",
    "spark.executor.memory",
    "spark.executor.memoryOverhead",
    "spark.executor.pyspark.memory",
    "spark.executor.instances",
)
_UNITS = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


class SizingError(ValueError):
    """Executor settings that cannot work on the cluster; ``field`` is the dotted config field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def memory_mb(value: str, field: str) -> int:
    """A Spark memory string (``512m``, ``2g``, ``1024`` = MiB) in MiB."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)b?\s*", str(value).lower())
    if not match:
        raise SizingError(field, f"{value!r} is not a memory size such as 512m or 2g")
    return math.ceil(int(match.group(1)) * _UNITS[match.group(2) or "m"])


def jvm_overhead_mb(heap_mb: int) -> int:
    """Spark's default memoryOverhead for a heap: what the JVM needs beside its heap."""
    return max(JVM_OVERHEAD_MIN_MB, math.ceil(heap_mb * JVM_OVERHEAD_FACTOR))


def executor_node_groups(cluster: ClusterConfig) -> list[tuple[str, NodeGroupConfig]]:
    """``(role, node group)`` of the groups that run executors: core, and task when present."""
    groups = [("core", cluster.core)]
    if cluster.task:
        groups.append(("task", cluster.task))
    return groups


def node_types(cluster: ClusterConfig, role: str, node: NodeGroupConfig) -> list[InstanceType]:
    """The instance types of ``cluster``'s node group ``role`` (every fleet type; a group's one
    type)."""
    names = node.instance_types
    if cluster.instance_collection == "groups":
        names = names[:1]
    types = []
    for name in names:
        found = instance_type(name)
        if found is None:
            families = sorted({known.split(".")[0] for known in INSTANCE_TYPES})
            raise SizingError(
                f"cluster.{role}.instance_types",
                f"{name!r} is not in the instance type table (emr_inference/emr/instance_types.py:"
                f" families {', '.join(families)}); add it there with its YARN memory and source",
            )
        types.append(found)
    return types


@dataclass(frozen=True)
class ExecutorPlan:
    """The effective executor settings of a request and what they give on its nodes."""

    task_cpus: int
    executor_cores: int
    heap_mb: int
    overhead_mb: int
    pyspark_mb: int  # 0 = spark.executor.pyspark.memory not set
    instances: int
    capacity: int  # executors the nodes can hold (the AM's container taken into account)

    @property
    def container_mb(self) -> int:
        """The YARN container of one executor."""
        return self.heap_mb + self.overhead_mb + self.pyspark_mb

    @property
    def concurrent_tasks(self) -> int:
        """Tasks (so Python workers) running at once in one executor."""
        return self.executor_cores // self.task_cpus

    @property
    def worker_limit_mb(self) -> int | None:
        """The address-space limit of each Python worker (None: no limit)."""
        return self.pyspark_mb // self.executor_cores if self.pyspark_mb else None

    @property
    def python_reserved_mb(self) -> int:
        """Container memory left to the Python workers of one executor."""
        return self.pyspark_mb or self.overhead_mb - jvm_overhead_mb(self.heap_mb)


def executors_per_node(node: InstanceType, container_mb: int, cores: int, reserved: int) -> int:
    """Executors of ``container_mb`` and ``cores`` that one node holds."""
    return min(node.yarn_memory_mb // container_mb, max(node.vcpus - reserved, 0) // cores)


def executor_capacity(cluster: ClusterConfig, container_mb: int, cores: int) -> int:
    """Executors every executor node group can hold, with room for the application master."""
    reserved = cluster.reserved_vcpus
    total = 0
    for role, node in executor_node_groups(cluster):
        per_node = min(
            executors_per_node(kind, container_mb, cores, reserved)
            for kind in node_types(cluster, role, node)
        )
        total += per_node * node.count
    core = min(node_types(cluster, "core", cluster.core), key=lambda kind: kind.yarn_memory_mb)
    per_core = executors_per_node(core, container_mb, cores, reserved)
    if per_core and core.yarn_memory_mb - per_core * container_mb < APPLICATION_MASTER_MB:
        total -= 1  # the AM's container takes one executor's place on one core node
    return total


def derived_settings(cluster: ClusterConfig, model: ModelConfig) -> dict[str, str]:
    """The executor settings derived from the cluster shape and the model's measured needs
    (``spark.executor.instances`` is added by :func:`spark_properties`, once the explicit
    settings are known)."""
    heap = cluster.executor_memory_mb
    overhead = jvm_overhead_mb(heap) + cluster.tasks_per_executor * model.worker_memory_mb
    return {
        "spark.executor.cores": str(cluster.task_cpus * cluster.tasks_per_executor),
        "spark.executor.memory": f"{heap}m",
        "spark.executor.memoryOverhead": f"{overhead}m",
        "spark.dynamicAllocation.enabled": "false",  # YARN packs by memory: the count is pinned
    }


def spark_properties(request: RequestDefaults) -> dict[str, str]:
    """Every spark-defaults property of the step: ours, the derived executor settings, then the
    pipeline's explicit ``cluster.spark_defaults`` (which win); ``spark.executor.instances``
    unless given is what the nodes hold of the resulting executors."""
    cluster = request.cluster
    properties = {
        "spark.python.worker.reuse": "true",
        "spark.task.cpus": str(cluster.task_cpus),
        "spark.executorEnv.OMP_NUM_THREADS": str(omp_threads(request)),
        **derived_settings(cluster, request.model),
        **cluster.spark_defaults,
    }
    if "spark.executor.instances" not in properties:
        shape = _executor_shape(request, properties)
        capacity = executor_capacity(cluster, shape.container_mb, shape.executor_cores)
        properties["spark.executor.instances"] = str(max(capacity, 1))
    return properties


def omp_threads(request: RequestDefaults) -> int:
    """MXNet/OpenMP threads per Python worker: the request's, else ``spark.task.cpus``."""
    return request.omp_threads or request.cluster.task_cpus


def _field(request: RequestDefaults, key: str, derived_from: str) -> str:
    """The config field to blame for ``key``: the explicit spark_defaults entry, else its source."""
    if key in request.cluster.spark_defaults:
        return f"cluster.spark_defaults.{key}"
    return derived_from


def _cores_source(cluster: ClusterConfig) -> str:
    """The field that sets the derived executor cores: tasks_per_executor when above 1."""
    several = cluster.tasks_per_executor > 1
    return "cluster.tasks_per_executor" if several else "cluster.task_cpus"


def _int(properties: Mapping[str, str], key: str, field: str) -> int:
    try:
        value = int(properties[key])
    except ValueError:
        raise SizingError(field, f"{properties[key]!r} is not a whole number") from None
    if value < 1:
        raise SizingError(field, f"{value} must be at least 1")
    return value


def _executor_shape(request: RequestDefaults, properties: Mapping[str, str]) -> ExecutorPlan:
    """The executors that ``properties`` describe (instances and capacity left at 0)."""

    def field(key: str, source: str) -> str:
        return _field(request, key, source)

    task_cpus = _int(properties, "spark.task.cpus", field("spark.task.cpus", "cluster.task_cpus"))
    cores_field = field("spark.executor.cores", _cores_source(request.cluster))
    cores = _int(properties, "spark.executor.cores", cores_field)
    heap_field = field("spark.executor.memory", "cluster.executor_memory_mb")
    heap = memory_mb(properties["spark.executor.memory"], heap_field)
    overhead_key = "spark.executor.memoryOverhead"
    overhead = (
        memory_mb(properties[overhead_key], field(overhead_key, "model.worker_memory_mb"))
        if overhead_key in properties
        else jvm_overhead_mb(heap)
    )
    pyspark_key = "spark.executor.pyspark.memory"
    pyspark = 0
    if pyspark_key in properties:
        pyspark = memory_mb(properties[pyspark_key], f"cluster.spark_defaults.{pyspark_key}")
    return ExecutorPlan(task_cpus, cores, heap, overhead, pyspark, instances=0, capacity=0)


def executor_plan(request: RequestDefaults) -> ExecutorPlan:
    """The effective executor settings of ``request`` (after explicit overrides), parsed."""
    properties = spark_properties(request)
    shape = _executor_shape(request, properties)
    instances_field = _field(request, "spark.executor.instances", "cluster.core.count")
    return dataclasses.replace(
        shape,
        instances=_int(properties, "spark.executor.instances", instances_field),
        capacity=executor_capacity(request.cluster, shape.container_mb, shape.executor_cores),
    )


def check_sizing(request: RequestDefaults) -> ExecutorPlan:
    """The effective plan of an EMR request; :class:`SizingError` naming the field when the
    executors cannot run on its nodes or their Python workers cannot hold the model."""
    plan = executor_plan(request)
    cluster, model = request.cluster, request.model

    def field(key: str, source: str) -> str:
        return _field(request, key, source)

    cores_field = field("spark.executor.cores", _cores_source(cluster))
    if plan.task_cpus > plan.executor_cores:
        raise SizingError(
            field("spark.task.cpus", "cluster.task_cpus"),
            f"spark.task.cpus {plan.task_cpus} is above spark.executor.cores "
            f"{plan.executor_cores}: no task could ever run",
        )
    for role, node in executor_node_groups(cluster):
        for kind in node_types(cluster, role, node):
            if plan.executor_cores > kind.vcpus:
                raise SizingError(
                    cores_field,
                    f"spark.executor.cores {plan.executor_cores} is above the "
                    f"{kind.vcpus} vCPUs of {kind.name} (cluster.{role})",
                )
            if plan.container_mb > kind.yarn_memory_mb:
                memory_field = next(
                    (
                        f"cluster.spark_defaults.{key}"
                        for key in EXECUTOR_KEYS[1:4]
                        if key in cluster.spark_defaults
                    ),
                    "model.worker_memory_mb",
                )
                raise SizingError(
                    memory_field,
                    f"an executor's YARN container needs {plan.container_mb} MiB (heap "
                    f"{plan.heap_mb} + overhead {plan.overhead_mb} + pyspark {plan.pyspark_mb}) "
                    f"but {kind.name} (cluster.{role}) offers YARN {kind.yarn_memory_mb} MiB",
                )
    if plan.capacity < 1:
        raise SizingError(
            field("spark.executor.cores", "cluster.reserved_vcpus"),
            f"no executor of {plan.executor_cores} cores fits a node once "
            f"{cluster.reserved_vcpus} vCPUs are reserved",
        )
    limit = plan.worker_limit_mb
    if limit is not None and limit < model.worker_address_space_mb:
        raise SizingError(
            "cluster.spark_defaults.spark.executor.pyspark.memory",
            f"Spark gives each Python worker {plan.pyspark_mb} MiB / spark.executor.cores "
            f"{plan.executor_cores} = {limit} MiB of address space, below the model's measured "
            f"need (model.worker_address_space_mb {model.worker_address_space_mb}): every "
            "task would fail to allocate the model's memory. Leave it unset (the derived "
            f"overhead reserves the resident need) or set it to at least "
            f"{model.worker_address_space_mb * plan.executor_cores}m",
        )
    needed = plan.concurrent_tasks * model.worker_memory_mb
    if limit is None and plan.python_reserved_mb < needed:
        raise SizingError(
            field("spark.executor.memoryOverhead", "model.worker_memory_mb"),
            f"the overhead leaves {plan.python_reserved_mb} MiB to Python beside the JVM's "
            f"{jvm_overhead_mb(plan.heap_mb)} MiB, but {plan.concurrent_tasks} worker(s) need "
            f"{plan.concurrent_tasks} x model.worker_memory_mb {model.worker_memory_mb} = "
            f"{needed} MiB",
        )
    if plan.instances > plan.capacity:
        raise SizingError(
            field("spark.executor.instances", "cluster.core.count"),
            f"{plan.instances} executors of {plan.container_mb} MiB and {plan.executor_cores} "
            f"cores asked for, but the nodes hold {plan.capacity}: YARN would never start the "
            "rest",
        )
    return plan
