"""``stage_job_artifacts``: build the job zip and stage it, ``main.py`` and the bootstrap files."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context


class StageJobArtifactsOperator(BaseOperator):
    """Stage the job's files, content-addressed, under ``request["artifacts_uri"]``.

    Returns ``{"job_zip", "entry_point", "bootstrap", "bootstrap_requirements"}`` (S3 URIs); a
    file whose bytes are already staged is not uploaded again. An EMR request with
    ``cluster.bootstrap_source: wheelhouse`` also gets ``"wheelhouse"``: the prefix of the pinned
    wheels (:mod:`emr_inference.wheelhouse`, staged once per requirements file).

    :param request: the resolved request (``validate_request``'s XCom)
    :param aws_conn_id: the Airflow AWS connection for S3
    """

    template_fields: Sequence[str] = ("request",)

    def __init__(self, *, request: Any, aws_conn_id: str | None = "aws_default", **kwargs) -> None:
        super().__init__(**kwargs)
        self.request = request
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> dict[str, str]:
        # here, not at module level: the S3 hook imports boto3, and parsing a DAG must not
        from emr_inference.artifacts import build_artifacts, stage_artifacts
        from emr_inference.s3 import s3_hook

        hook = s3_hook(self.aws_conn_id, self.request.get("sse"))
        with tempfile.TemporaryDirectory(prefix="job-artifacts-") as build_dir:
            files = build_artifacts(Path(build_dir))
            staged = stage_artifacts(hook, files, self.request["artifacts_uri"])
        cluster = self.request.get("cluster") or {}
        if self.request.get("backend") == "emr" and cluster.get("bootstrap_source") == "wheelhouse":
            from emr_inference.wheelhouse import stage_wheelhouse

            requirements = files["bootstrap_requirements"]
            staged["wheelhouse"] = stage_wheelhouse(
                hook, requirements, self.request["artifacts_uri"]
            )
        return staged
