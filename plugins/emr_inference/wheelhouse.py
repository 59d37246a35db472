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
from emr_inference.s3 import S3Uri

if TYPE_CHECKING:  # the hook imports boto3: not when a DAG file is parsed
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)

#: The interpreter of EMR 7 nodes (Amazon Linux 2023's python3) and the wheel platforms their
#: glibc 2.34 runs (pip does not expand a manylinux tag to the older ones: each is listed).
NODE_PYTHON_VERSION = "3.9"
NODE_PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64")
COMPLETE_MARKER = "_COMPLETE"


def download_wheels(requirements: Path, dest: Path) -> list[Path]:
    """``pip download`` every pinned wheel for the nodes' interpreter (hashes checked)."""
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--require-hashes",
        "--python-version", NODE_PYTHON_VERSION, "--implementation", "cp",
        *(option for tag in NODE_PLATFORMS for option in ("--platform", tag)),
        "-r", str(requirements), "-d", str(dest),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(
            f"cluster.bootstrap_source: cannot download the wheelhouse of {requirements.name} "
            f"(pip exit {result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return sorted(dest.glob("*.whl"))


def stage_wheelhouse(hook: S3Hook, requirements: Path, artifacts_uri: str) -> str:
    """The staged wheelhouse prefix for ``requirements``, downloading and uploading it once."""
    artifacts = S3Uri.parse(artifacts_uri, "artifacts_uri", prefix=True)
    prefix = artifacts.join("wheelhouse", sha256_file(requirements)).uri + "/"
    root = S3Uri.parse(prefix, "artifacts_uri", prefix=True)
    marker = root.join(COMPLETE_MARKER)
    if s3.exists(hook, marker):
        log.info("Wheelhouse already staged: %s", prefix)
        return prefix
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as folder:
        wheels = download_wheels(requirements, Path(folder))
        for wheel in wheels:
            dest = root.join(wheel.name)
            hook.load_file(wheel, key=dest.key, bucket_name=dest.bucket, replace=True)
    s3.write_bytes(hook, marker, b"")
    log.info("Staged a wheelhouse of %d wheels at %s", len(wheels), prefix)
    return prefix
