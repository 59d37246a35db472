"""``stage_manifest``: every date's key manifest (written from a listing, or a supplied one
checked) and the date's status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from emr_inference.dates import stage_date
from emr_inference.request import request_for_date
from emr_inference.s3 import s3_hook


class StageManifestOperator(BaseOperator):
    """Per date of the run: list its ``input_uri`` into a sharded manifest, or check its
    ``manifest_uri``.

    Returns one work item per date, in date order: ``{"request": <the date's request>,
    "manifest": {"manifest_uri", "total", "shards", "bytes", "keys_sha256", "status"}}``; the
    date's request gains its ``request_fingerprint`` (:mod:`emr_inference.dates`). ``status`` is
    ``empty`` without keys, ``published`` when the date's output already holds a publication of
    the same request, otherwise ``pending``; ``plan_run`` decides from the statuses whether a
    cluster is needed, and the ``date`` task group is mapped over the items.

    :param request: the run's resolved request (``validate_request``'s XCom)
    :param aws_conn_id: the Airflow AWS connection for S3
    """

    template_fields: Sequence[str] = ("request",)

    def __init__(self, *, request: Any, aws_conn_id: str | None = "aws_default", **kwargs) -> None:
        super().__init__(**kwargs)
        self.request = request
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        hook = s3_hook(self.aws_conn_id, self.request.get("sse"))
        return [
            self._stage(hook, request_for_date(self.request, date))
            for date in self.request["dates"]
        ]

    def _stage(self, hook: Any, request: dict[str, Any]) -> dict[str, Any]:
        work = stage_date(hook, request)
        info = work["manifest"]
        self.log.info(
            "%s: manifest %s, %d keys (%s bytes) in %d shards: %s",
            request["partition_date"],
            info["manifest_uri"],
            info["total"],
            info["bytes"] if info["bytes"] is not None else "unknown",
            info["shards"],
            info["status"],
        )
        return work
