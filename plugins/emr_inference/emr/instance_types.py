"""EC2 instance types an EMR pipeline may use: vCPUs, memory, and EMR's default YARN memory.

``yarn_memory_mb`` is EMR's default ``yarn.nodemanager.resource.memory-mb`` for the type (equal to
``yarn.scheduler.maximum-allocation-mb`` for every type here): the memory YARN may hand out to
containers on one node, so the budget that executors (heap + overhead + PySpark memory) must fit.

Sources:

* YARN memory: Amazon EMR Release Guide, "Task configuration", table "Default values for task
  configuration settings" (``emr-hadoop-task-config``; copy read from the awsdocs
  amazon-emr-release-guide repository, revision of 2022-01-24, the last one published there).
  The values have not changed for these families since; EMR 7.x uses the same defaults.
* vCPUs and memory: Amazon EC2 instance type specifications (compute optimized C5/C5d/C5n/C7i,
  general purpose M5/M5d/M7i, memory optimized R5/R5d).
* The 7th generation (c7i, m7i: 4th-generation Xeon with AMX): the current "Task configuration"
  page's "c7i instances" and "m7i instances" tables, and the EC2 Instance Types Guide's compute
  optimized and general purpose pages, read 2026-12-07.

Only x86_64 types are listed: EMR's MXNet application and the staged wheelhouse are built for
them (Graviton types would need an aarch64 wheelhouse; the emr-7.13.0 pins have aarch64 hashes
for ``bootstrap_source: index``). A type missing here is a config error naming the field; add it
with its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SOURCE = (
    "Amazon EMR Release Guide, 'Task configuration' (yarn.nodemanager.resource.memory-mb); "
    "Amazon EC2 instance type specifications (vCPUs, memory)"
)


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type as EMR's YARN sees it."""

    name: str
    vcpus: int
    memory_gib: float
    yarn_memory_mb: int


def _family(family: str, sizes: Mapping[str, tuple[int, float, int]]) -> dict[str, InstanceType]:
    return {
        f"{family}.{size}": InstanceType(f"{family}.{size}", vcpus, memory, yarn)
        for size, (vcpus, memory, yarn) in sizes.items()
    }


_C5 = {  # size: (vCPUs, memory GiB, YARN memory MiB)
    "xlarge": (4, 8, 6144),
    "2xlarge": (8, 16, 12288),
    "4xlarge": (16, 32, 24576),
    "9xlarge": (36, 72, 65536),
    "12xlarge": (48, 96, 90112),
    "18xlarge": (72, 144, 139264),
    "24xlarge": (96, 192, 188416),
}
_C5D = {size: _C5[size] for size in ("xlarge", "2xlarge", "4xlarge", "9xlarge", "18xlarge")}
_C5N = {
    "xlarge": (4, 10.5, 8064),
    "2xlarge": (8, 21, 16128),
    "4xlarge": (16, 42, 34816),
    "9xlarge": (36, 96, 90112),
    "18xlarge": (72, 192, 188416),
}
_M5 = {
    "xlarge": (4, 16, 12288),
    "2xlarge": (8, 32, 24576),
    "4xlarge": (16, 64, 57344),
    "8xlarge": (32, 128, 122880),
    "12xlarge": (48, 192, 188416),
    "16xlarge": (64, 256, 253952),
    "24xlarge": (96, 384, 385024),
}
_R5 = {
    "xlarge": (4, 32, 24576),
    "2xlarge": (8, 64, 57344),
    "4xlarge": (16, 128, 122880),
    "8xlarge": (32, 256, 253952),
    "12xlarge": (48, 384, 385024),
    "16xlarge": (64, 512, 516096),
    "24xlarge": (96, 768, 778240),
}

_C7I = {
    "xlarge": (4, 8, 5632),
    "2xlarge": (8, 16, 11712),
    "4xlarge": (16, 32, 23424),
    "8xlarge": (32, 64, 54272),
    "12xlarge": (48, 96, 85504),
    "16xlarge": (64, 128, 116736),
}
_M7I = {
    "xlarge": (4, 16, 11712),
    "2xlarge": (8, 32, 23424),
    "4xlarge": (16, 64, 54272),
    "8xlarge": (32, 128, 116736),
}

INSTANCE_TYPES: dict[str, InstanceType] = {
    **_family("c5", _C5),
    **_family("c5d", _C5D),
    **_family("c5n", _C5N),
    **_family("m5", _M5),
    **_family("m5d", _M5),
    **_family("r5", _R5),
    **_family("r5d", _R5),
    **_family("c7i", _C7I),
    **_family("m7i", _M7I),
}


def instance_type(name: str) -> InstanceType | None:
    """The type called ``name``, or None when it is not in the table."""
    return INSTANCE_TYPES.get(name)
