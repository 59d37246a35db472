"""A wheelhouse of the bootstrap's pinned wheels in S3, so EMR nodes install with no package index.

Nodes in a private subnet without NAT cannot reach PyPI, and a nightly ``pip install`` from PyPI on
every node is a dependency on PyPI's availability at 3 a.m. Instead, ``stage_job_artifacts``
downloads the hash-pinned wheels of the release's requirements file once, for the nodes'
interpreter (CPython 3.9 or 3.11 on Amazon Linux 2023) and architecture (x86_64, or aarch64 on
Graviton: :mod:`emr_inference.emr.architecture`), and stages them at
``<artifacts_uri>wheelhouse/<architecture>/<sha256 of the requirements file>/``; the bootstrap
action then runs ``pip install --no-index --find-links`` on them, still checking every hash. The
prefix changes exactly when the pins or the architecture do (x86_64 and aarch64 wheelhouses of the
same pins never share one), and a ``_COMPLETE`` marker written last makes a half-staged wheelhouse
invisible: later runs cost one HeadObject.

The pins are narrowed to those the nodes install (environment markers evaluated for their Python
and machine: openvino's ``platform_machine == "x86_64"`` pin is not fetched for aarch64), and only
wheels of the nodes' platforms are accepted: manylinux tags up to glibc 2.34 (Amazon Linux 2023's)
for that machine, and pure-Python wheels.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from emr_inference import s3
from emr_inference.artifacts import sha256_file
from emr_inference.emr.instance_types import ARCHITECTURES, Architecture
from emr_inference.emr.releases import DEFAULT_RELEASE, supported_release
from emr_inference.pins import requirements_for
from emr_inference.s3 import S3Uri

if TYPE_CHECKING:  # the hook imports boto3: not when a DAG file is parsed
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)

#: The interpreter of the default release's nodes (Amazon Linux 2023's python3), the default
#: machine, and per machine the wheel platforms EMR 7's glibc 2.34 runs (pip does not expand a
#: manylinux tag to the older ones: each is listed).
NODE_PYTHON_VERSION = supported_release(DEFAULT_RELEASE).python
NODE_MACHINE: Architecture = "x86_64"
NODE_PLATFORMS: dict[Architecture, tuple[str, ...]] = {
    machine: (f"manylinux_2_34_{machine}", f"manylinux_2_28_{machine}", f"manylinux2014_{machine}")
    for machine in ARCHITECTURES
}
COMPLETE_MARKER = "_COMPLETE"


def download_wheels(
    requirements: Path,
    dest: Path,
    python_version: str = NODE_PYTHON_VERSION,
    machine: Architecture = NODE_MACHINE,
) -> list[Path]:
    """``pip download`` every pinned wheel for the nodes' interpreter and machine (hashes
    checked).

    pip evaluates environment markers for the interpreter it runs on, not for
    ``--python-version`` and ``--platform``: the pins are first narrowed to those the nodes'
    Python installs on ``machine`` (:func:`emr_inference.pins.requirements_for`), so a
    ``python_version < "3.10"`` pin is the one fetched for 3.9 nodes, and an x86_64-only pin is
    not fetched for aarch64 ones.
    """
    with tempfile.TemporaryDirectory(prefix="node-requirements-") as folder:
        node_requirements = Path(folder) / "requirements.txt"
        node_requirements.write_text(
            requirements_for(requirements.read_text(), python_version, machine)
        )
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--python-version", python_version, "--implementation", "cp",
            *(option for tag in NODE_PLATFORMS[machine] for option in ("--platform", tag)),
            "-r", str(node_requirements), "-d", str(dest),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(
            f"cluster.bootstrap_source: cannot download the {machine} wheelhouse of "
            f"{requirements.name} (pip exit {result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return sorted(dest.glob("*.whl"))


def wheelhouse_prefix(artifacts_uri: str, requirements: Path, machine: Architecture) -> str:
    """``<artifacts_uri>wheelhouse/<machine>/<sha256 of requirements>/``."""
    artifacts = S3Uri.parse(artifacts_uri, "artifacts_uri", prefix=True)
    return artifacts.join("wheelhouse", machine, sha256_file(requirements)).uri + "/"


def stage_wheelhouse(
    hook: S3Hook,
    requirements: Path,
    artifacts_uri: str,
    python_version: str = NODE_PYTHON_VERSION,
    machine: Architecture = NODE_MACHINE,
) -> str:
    """The staged wheelhouse prefix for ``requirements`` (the wheels of the nodes' Python
    ``python_version`` on ``machine``), downloading and uploading it once."""
    prefix = wheelhouse_prefix(artifacts_uri, requirements, machine)
    root = S3Uri.parse(prefix, "artifacts_uri", prefix=True)
    marker = root.join(COMPLETE_MARKER)
    if s3.exists(hook, marker):
        log.info("Wheelhouse already staged: %s", prefix)
        return prefix
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as folder:
        wheels = download_wheels(requirements, Path(folder), python_version, machine)
        for wheel in wheels:
            dest = root.join(wheel.name)
            hook.load_file(wheel, key=dest.key, bucket_name=dest.bucket, replace=True)
    s3.write_bytes(hook, marker, b"")
    log.info("Staged a wheelhouse of %d wheels at %s", len(wheels), prefix)
    return prefix
