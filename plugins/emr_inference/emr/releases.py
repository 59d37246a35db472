"""The EMR releases this package supports, and what their nodes give the job.

One row per release label: the nodes' Python the job runs on (the interpreter the bootstrap builds
the job's virtualenv over, and its path), the Spark version its build is based on, the EMR
applications the cluster installs, the Python packages they put into that interpreter (the job
sees them through the virtualenv's system site-packages), the Amazon Linux ``python3-*`` packages
that interpreter already owns (RPMs: our pins must win over them in the virtualenv, and must never
be installed over them), the model runtimes its nodes can run and the bootstrap's hash-pinned
requirements file for them. Each row names its sources.

The node twin (``emr_inference_tools/node_twin.py``) is built from a row: the rehearsal and the
job's tests then
run on that interpreter and those packages, so what a release's nodes cannot run fails here. The
twin is this machine's architecture (x86_64): nothing here runs the job on aarch64 (Graviton).

Node architectures (:data:`RUNTIME_ARCHITECTURES`): a runtime runs on the machines its packages
exist for. MXNet (EMR's application, emr-7.2.0) has no aarch64 build, so an emr-7.2.0 cluster is
x86_64; OpenVINO is pinned for x86_64 only (its aarch64 wheels need glibc 2.35, Amazon Linux 2023
has 2.34); ONNX Runtime's pins have aarch64 wheels, so emr-7.13.0 with ``model.runtime:
onnxruntime`` runs on Graviton (c7g, m7g) too. The EMR backend checks a cluster's architecture
against them (:mod:`emr_inference.emr.architecture`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class EmrRelease:
    """What a release's nodes run (see the module docstring)."""

    label: str
    python: str
    spark: str
    application_packages: Mapping[str, str]
    system_packages: Mapping[str, str]
    #: the nodes' interpreter of version ``python`` (cluster.base_python's default)
    base_python: str = "/usr/bin/python3"
    #: the EMR applications a cluster of this release installs (RunJobFlow's Applications)
    applications: tuple[str, ...] = ("Spark",)
    #: the model runtimes the nodes can run (``model.runtime``)
    runtimes: tuple[str, ...] = ("mxnet",)
    #: the bootstrap's hash-pinned requirements, a file of include/bootstrap/
    requirements: str = "requirements-emr.txt"
    sources: tuple[str, ...] = field(default=())

    @property
    def architectures(self) -> tuple[str, ...]:
        """The node architectures some runtime of this release runs on."""
        return tuple(
            machine
            for machine in ("x86_64", "aarch64")
            if any(machine in RUNTIME_ARCHITECTURES[runtime] for runtime in self.runtimes)
        )

    @property
    def version(self) -> tuple[int, ...]:
        """``(7, 2, 0)`` for ``emr-7.2.0``: release labels compare as numbers, not strings."""
        return release_version(self.label)


#: runtime (``model.runtime``) -> the node architectures (``uname -m``) it runs on (see the
#: module docstring; OpenVINO's x86_64-only pin is include/bootstrap/requirements-emr-7.13.0.txt's
#: ``platform_machine`` marker, which tests/unit/emr_inference/emr/test_releases.py checks).
RUNTIME_ARCHITECTURES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "mxnet": ("x86_64",),
        "onnxruntime": ("x86_64", "aarch64"),
        "openvino": ("x86_64",),
    }
)


def release_version(label: str) -> tuple[int, ...]:
    """``emr-7.10.0`` -> ``(7, 10, 0)``; ``ValueError`` naming the label when it is not one."""
    if not re.fullmatch(r"emr-\d+(\.\d+)*", label):
        raise ValueError(f"cluster.release_label: {label!r} is not an EMR label (emr-X.Y.Z)")
    return tuple(int(part) for part in label[len("emr-") :].split("."))


EMR_7_2_0 = EmrRelease(
    label="emr-7.2.0",
    python="3.9",
    spark="3.5.1",
    # EMR's MXNet application. EMR does not publish the numpy its MXNet RPM brings; mxnet 1.9.1
    # needs numpy < 1.24 (it uses np.bool), and 1.23.5 is the newest such release.
    application_packages=MappingProxyType({"mxnet": "1.9.1", "numpy": "1.23.5"}),
    # Amazon Linux 2023's python3-* RPMs: those the job's own pins override in its virtualenv,
    # and requests (with its dependencies), which mxnet imports. certifi stands in for the
    # system CA bundle that Amazon Linux's requests is patched to use.
    system_packages=MappingProxyType(
        {
            "urllib3": "1.25.10",
            "six": "1.15.0",
            "jmespath": "0.10.0",
            "python-dateutil": "2.8.1",
            "requests": "2.25.1",
            "idna": "2.10",
            "chardet": "4.0.0",
            "certifi": "2020.6.20",
        }  # fmt: skip
    ),
    applications=("Spark", "MXNet"),
    runtimes=("mxnet",),
    requirements="requirements-emr.txt",
    sources=(
        "EMR Release Guide, 'Application versions in Amazon EMR 7.x releases': emr-7.2.0 "
        "Python 3.9, 3.11 (python3 is 3.9), Spark 3.5.1-amzn-0",
        "EMR Release Guide, 'MXNet release history': emr-7.2.0 MXNet 1.9.1, the last release "
        "with MXNet",
        "Amazon Linux 2023 package list: python3-urllib3 1.25.10, python3-six 1.15.0, "
        "python3-jmespath 0.10.0, python3-dateutil 2.8.1, python3-requests 2.25.1, "
        "python3-idna 2.10, python3-chardet 4.0.0",
    ),
)

EMR_7_13_0 = EmrRelease(
    label="emr-7.13.0",
    python="3.11",
    spark="3.5.6",
    # No MXNet application (EMR's last is emr-7.2.0's): the job runs ONNX Runtime or OpenVINO from
    # its own pins (OpenVINO on x86_64 only: its aarch64 wheels need glibc 2.35, Amazon Linux 2023
    # has 2.34).
    application_packages=MappingProxyType({}),
    # Amazon Linux 2023's python3.11 RPM: the interpreter alone (its python3.11-* packages are not
    # installed on EMR nodes), so nothing of it competes with the job's pins.
    system_packages=MappingProxyType({}),
    base_python="/usr/bin/python3.11",
    applications=("Spark",),
    runtimes=("onnxruntime", "openvino"),
    requirements="requirements-emr-7.13.0.txt",
    sources=(
        "EMR Release Guide, 'Spark release history': emr-7.13.0 Spark 3.5.6-amzn-2",
        "EMR Release Guide, 'Amazon EMR release 7.13.0': Python 3.9, 3.11; released 2026-04-21, "
        "standard support until 2028-04-21",
        "EMR Release Guide, 'MXNet release history': no MXNet after emr-7.2.0",
    ),
)

#: label -> release, for every release the EMR backend supports.
SUPPORTED_RELEASES: Mapping[str, EmrRelease] = MappingProxyType(
    {release.label: release for release in (EMR_7_2_0, EMR_7_13_0)}
)
DEFAULT_RELEASE = EMR_7_2_0.label


def releases_with_runtime(runtime: str) -> list[str]:
    """The supported labels whose nodes run ``runtime``."""
    return [label for label, release in SUPPORTED_RELEASES.items() if runtime in release.runtimes]


def supported_release(label: str) -> EmrRelease:
    """The row of ``label``; ``KeyError`` naming the supported labels when there is none."""
    try:
        return SUPPORTED_RELEASES[label]
    except KeyError:
        raise KeyError(
            f"cluster.release_label: no node description for {label!r} "
            f"(supported: {', '.join(SUPPORTED_RELEASES)}; see emr_inference/emr/releases.py)"
        ) from None
