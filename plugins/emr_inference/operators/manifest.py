"""``stage_manifest``: every date's key manifest (written from a listing, or a supplied one
checked) and the date's status."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from emr_inference.dates import model_identity, stage_date
from emr_inference.operators.base import RequestOperator
from emr_inference.resolved import ResolvedRequest


class StageManifestOperator(RequestOperator):
    """Per date of the run: list its ``input_uri`` into a sharded manifest, or check its
    ``manifest_uri``.

    Returns one work item per date, in date order: ``{"request": <the date's request>,
    "manifest": {"manifest_uri", "total", "shards", "bytes", "keys_sha256", "status"}}``; the
    date's request gains its ``request_fingerprint`` (:mod:`emr_inference.dates`). ``status`` is
    ``empty`` without keys, ``published`` when the date's output already holds a publication of
    the same request, otherwise ``pending``; ``plan_run`` decides from the statuses whether a
    cluster is needed, and the ``date`` task group is mapped over the items.
    """

    def execute(self, context: Context) -> list[dict[str, Any]]:
        model = model_identity(self.s3, self.run_request)  # one HeadObject per file, per run
        return [self._stage(request, model) for request in self.run_request.date_requests()]

    def _stage(self, request: ResolvedRequest, model: dict[str, str]) -> dict[str, Any]:
        work = stage_date(self.s3, request, model=model)
        info = work["manifest"]
        self.log.info(
            "%s: manifest %s, %d keys (%s bytes) in %d shards: %s",
            request.partition_date,
            info["manifest_uri"],
            info["total"],
            info["bytes"] if info["bytes"] is not None else "unknown",
            info["shards"],
            info["status"],
        )
        return work
