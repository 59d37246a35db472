"""``stage_job_artifacts``: build the job zip and stage it, ``main.py`` and the bootstrap files."""

from __future__ import annotations

import tempfile
from pathlib import Path

from airflow.sdk import Context

from emr_inference.backends import backend_named
from emr_inference.operators.base import RequestOperator


class StageJobArtifactsOperator(RequestOperator):
    """Stage the job's files, content-addressed, under the request's ``artifacts_uri``.

    Returns ``{"job_zip", "entry_point", "bootstrap", "bootstrap_requirements"}`` (S3 URIs) plus
    what the backend stages (:meth:`~emr_inference.backend.Backend.stage_artifacts`; EMR with
    ``cluster.bootstrap_source: wheelhouse``: ``"wheelhouse"``, the pinned wheels' prefix); a
    file whose bytes are already staged is not uploaded again.
    """

    def execute(self, context: Context) -> dict[str, str]:
        # here, not at module level: building and staging import boto3; parsing a DAG must not
        from emr_inference.artifacts import build_artifacts, stage_artifacts

        request = self.run_request
        with tempfile.TemporaryDirectory(prefix="job-artifacts-") as build_dir:
            files = build_artifacts(Path(build_dir), request.cluster.release_label)
            staged = stage_artifacts(self.s3, files, request.artifacts_uri.uri)
            staged.update(backend_named(request.backend).stage_artifacts(self.s3, request, files))
        return staged
