"""A wheelhouse of the bootstrap's pinned wheels in S3, so EMR nodes install with no package index.

Nodes in a private subnet without NAT cannot reach PyPI, and a nightly ``pip install`` from PyPI on
every node is a dependency on PyPI's availability at 3 a.m. Instead, ``stage_job_artifacts``
downloads the hash-pinned wheels of ``requirements-emr.txt`` once, for the nodes' interpreter
(CPython 3.9 on Amazon Linux 2023, x86_64), and stages them at
``<artifacts_uri>wheelhouse/<sha256 of the requirements file>/``; the bootstrap action then runs
``pip install --no-index --find-links`` on them, still checking every hash. The prefix changes
exactly when the pins do, and a ``_COMPLETE`` marker written last makes a half-staged wheelhouse
invisible: later runs cost one HeadObject.
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
from emr_inference.emr.releases import DEFAULT_RELEASE, supported_release
from emr_inference.pins import requirements_for
from emr_inference.s3 import S3Uri

if TYPE_CHECKING:  # the hook imports boto3: not when a DAG file is parsed
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)

#: The interpreter of the default release's nodes (Amazon Linux 2023's python3) and the wheel
#: platforms EMR 7's glibc 2.34 runs (pip does not expand a manylinux tag to the older ones: each
#: is listed).
NODE_PYTHON_VERSION = supported_release(DEFAULT_RELEASE).python
NODE_PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64")
NODE_MACHINE = "x86_64"
COMPLETE_MARKER = "_COMPLETE"


def download_wheels(
    requirements: Path, dest: Path, python_version: str = NODE_PYTHON_VERSION
) -> list[Path]:
    """``pip download`` every pinned wheel for the nodes' interpreter (hashes checked).

    pip evaluates environment markers for the interpreter it runs on, not for
    ``--python-version``: the pins are first narrowed to those the nodes' Python installs
    (:func:`emr_inference.pins.requirements_for`), so a ``python_version < "3.10"`` pin is the one
    fetched for 3.9 nodes.
    """
    with tempfile.TemporaryDirectory(prefix="node-requirements-") as folder:
        node_requirements = Path(folder) / "requirements.txt"
        node_requirements.write_text(
            requirements_for(requirements.read_text(), python_version, NODE_MACHINE)
        )
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--python-version", python_version, "--implementation", "cp",
            *(option for tag in NODE_PLATFORMS for option in ("--platform", tag)),
            "-r", str(node_requirements), "-d", str(dest),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(
            f"cluster.bootstrap_source: cannot download the wheelhouse of {requirements.name} "
            f"(pip exit {result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return sorted(dest.glob("*.whl"))


def stage_wheelhouse(
    hook: S3Hook, requirements: Path, artifacts_uri: str, python_version: str = NODE_PYTHON_VERSION
) -> str:
    """The staged wheelhouse prefix for ``requirements`` (the wheels of the nodes' Python
    ``python_version``), downloading and uploading it once."""
    artifacts = S3Uri.parse(artifacts_uri, "artifacts_uri", prefix=True)
    prefix = artifacts.join("wheelhouse", sha256_file(requirements)).uri + "/"
    root = S3Uri.parse(prefix, "artifacts_uri", prefix=True)
    marker = root.join(COMPLETE_MARKER)
    if s3.exists(hook, marker):
        log.info("Wheelhouse already staged: %s", prefix)
        return prefix
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as folder:
        wheels = download_wheels(requirements, Path(folder), python_version)
        for wheel in wheels:
            dest = root.join(wheel.name)
            hook.load_file(wheel, key=dest.key, bucket_name=dest.bucket, replace=True)
    s3.write_bytes(hook, marker, b"")
    log.info("Staged a wheelhouse of %d wheels at %s", len(wheels), prefix)
    return prefix
