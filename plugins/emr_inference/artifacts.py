"""The job's artifacts (zip, entry point, bootstrap script and its requirements), content-addressed.

Each file is staged at ``<artifacts_uri><sha256>/<file name>``: the key changes exactly when the
bytes do, so a cluster never runs a half-replaced artifact, runs of different code versions never
see each other's files, and an unchanged file is not uploaded again.

Where the sources live: :func:`emr_inference.project_root` (the repository, or
``EMR_INFERENCE_PROJECT_ROOT``), whose ``spark_jobs/`` importing ``emr_inference`` puts on
``sys.path``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from emr_inference import project_root, s3
from emr_inference.emr.releases import DEFAULT_RELEASE, supported_release
from emr_inference.s3 import S3Uri

if TYPE_CHECKING:  # the hook imports boto3: not when a DAG file is parsed
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)


def bootstrap_files(release_label: str = DEFAULT_RELEASE) -> dict[str, Path]:
    """The EMR bootstrap action and the hashed requirements file it installs on the nodes of
    ``release_label``."""
    folder = project_root() / "include" / "bootstrap"
    return {
        "bootstrap": folder / "install_job_deps.sh",
        "bootstrap_requirements": folder / supported_release(release_label).requirements,
    }


def import_job_package():
    """Import ``batch_inference.package`` (the job's zip builder)."""
    from batch_inference import package

    return package


def build_artifacts(build_dir: Path, release_label: str = DEFAULT_RELEASE) -> dict[str, Path]:
    """Build the job zip in ``build_dir``; return every artifact's local path by XCom name (the
    bootstrap files of ``release_label``)."""
    package = import_job_package()
    return {
        "job_zip": package.build_job_zip(build_dir / "batch_inference.zip"),
        "entry_point": package.ENTRY_POINT,
        **bootstrap_files(release_label),
    }


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stage_file(hook: S3Hook, path: Path, artifacts: S3Uri) -> S3Uri:
    """Upload ``path`` to ``<artifacts><sha256>/<name>`` unless that object already exists."""
    dest = artifacts.join(sha256_file(path), path.name)
    if s3.exists(hook, dest):
        log.info("Unchanged, not uploaded again: %s", dest)
    else:
        hook.load_file(path, key=dest.key, bucket_name=dest.bucket, replace=True)
        log.info("Uploaded %s to %s", path, dest)
    return dest


def stage_artifacts(hook: S3Hook, files: dict[str, Path], artifacts_uri: str) -> dict[str, str]:
    """Stage every file; returns ``{name: s3 uri}`` (the ``stage_job_artifacts`` XCom)."""
    artifacts = S3Uri.parse(artifacts_uri, "artifacts_uri", prefix=True)
    return {name: stage_file(hook, path, artifacts).uri for name, path in files.items()}
