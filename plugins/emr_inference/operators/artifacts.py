"""``stage_job_artifacts``: build the job zip and stage it, ``main.py`` and the bootstrap files."""

from __future__ import annotations

import tempfile
from pathlib import Path

from airflow.sdk import Context

from emr_inference.operators.base import RequestOperator


class StageJobArtifactsOperator(RequestOperator):
    """Stage the job's files, content-addressed, under the request's ``artifacts_uri``.

    Returns ``{"job_zip", "entry_point", "bootstrap", "bootstrap_requirements"}`` (S3 URIs); a
    file whose bytes are already staged is not uploaded again. An EMR request with
    ``cluster.bootstrap_source: wheelhouse`` also gets ``"wheelhouse"``: the prefix of the pinned
    wheels (:mod:`emr_inference.wheelhouse`, staged once per requirements file).
    """

    def execute(self, context: Context) -> dict[str, str]:
        # here, not at module level: building and staging import boto3; parsing a DAG must not
        from emr_inference.artifacts import build_artifacts, stage_artifacts

        request = self.run_request
        artifacts_uri = request.artifacts_uri.uri
        release = request.cluster.release_label
        with tempfile.TemporaryDirectory(prefix="job-artifacts-") as build_dir:
            files = build_artifacts(Path(build_dir), release)
            staged = stage_artifacts(self.s3, files, artifacts_uri)
        if request.backend == "emr" and request.cluster.bootstrap_source == "wheelhouse":
            from emr_inference.emr.releases import supported_release
            from emr_inference.wheelhouse import stage_wheelhouse

            requirements = files["bootstrap_requirements"]
            python = supported_release(release).python
            staged["wheelhouse"] = stage_wheelhouse(self.s3, requirements, artifacts_uri, python)
        return staged
