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
* The Graviton3 types (c7g, m7g; aarch64): the current "Task configuration" page's "c7g
  instances" and "m7g instances" tables (the page listing c8g, whose example uses emr-7.12.0; a
  stored copy read 2026-12-07), and the EC2 User Guide's "Hardware specifications" tables of
  ``compute-optimized-instances.md`` (c7g) and ``general-purpose-instances.md`` (m7g) in the
  awsdocs amazon-ec2-user-guide repository, revision e3707c4 of 2023-06-15 (the last one with
  content), which also name their processor, AWS Graviton3.

``architecture`` is the machine of a type's nodes (``uname -m``): ``aarch64`` for the AWS
Graviton families (c7g, m7g), ``x86_64`` for the Intel ones. It is set per family
(:data:`FAMILY_ARCHITECTURES`), not guessed from the name, and decides which wheels the nodes
install (the staged wheelhouse is per architecture, :mod:`emr_inference.emr.wheelhouse`) and
which release and runtime can run there: the EMR backend refuses an aarch64 cluster on emr-7.2.0
(EMR's MXNet has no aarch64 build) or with ``model.runtime: openvino`` (pinned x86_64-only), and a
cluster whose node groups mix architectures (:mod:`emr_inference.emr.architecture`). A type
missing here is a config error naming the field; add it with its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

SOURCE = (
    "Amazon EMR Release Guide, 'Task configuration' (yarn.nodemanager.resource.memory-mb); "
    "Amazon EC2 instance type specifications (vCPUs, memory)"
)

#: A node's machine as ``uname -m`` (and Python's ``platform.machine()``) names it.
Architecture = Literal["x86_64", "aarch64"]
ARCHITECTURES: tuple[Architecture, ...] = ("x86_64", "aarch64")


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type as EMR's YARN sees it."""

    name: str
    vcpus: int
    memory_gib: float
    yarn_memory_mb: int
    #: the nodes' machine, from the family (:data:`FAMILY_ARCHITECTURES`)
    architecture: Architecture


def _family(family: str, sizes: Mapping[str, tuple[int, float, int]]) -> dict[str, InstanceType]:
    architecture = FAMILY_ARCHITECTURES[family]
    return {
        f"{family}.{size}": InstanceType(f"{family}.{size}", vcpus, memory, yarn, architecture)
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

# AWS Graviton3 (aarch64). Read from their own tables: c7g's vCPUs, memory and YARN memory equal
# c7i's size for size, m7g's equal m7i's plus the 12xlarge and 16xlarge sizes the m7i rows leave
# out (tests/unit/emr_inference/emr/test_architecture.py lists every value as read).
_C7G = dict(_C7I)
_M7G = {**_M7I, "12xlarge": (48, 192, 179200), "16xlarge": (64, 256, 241664)}

#: family -> the machine of its nodes (EC2 User Guide: C7g and M7g are AWS Graviton3, 64-bit Arm;
#: the others Intel Xeon).
FAMILY_ARCHITECTURES: Mapping[str, Architecture] = {
    **dict.fromkeys(("c5", "c5d", "c5n", "m5", "m5d", "r5", "r5d", "c7i", "m7i"), "x86_64"),
    **dict.fromkeys(("c7g", "m7g"), "aarch64"),
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
    **_family("c7g", _C7G),
    **_family("m7g", _M7G),
}


def instance_type(name: str) -> InstanceType | None:
    """The type called ``name``, or None when it is not in the table."""
    return INSTANCE_TYPES.get(name)
