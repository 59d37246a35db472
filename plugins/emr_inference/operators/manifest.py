"""``stage_manifest``: every date's key manifest (written from a listing, or a supplied one
checked) and the date's status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from airflow.sdk import BaseOperator, Context

from emr_inference.dates import date_status, published_summary, request_fingerprint
from emr_inference.manifest import Listing, matching_keys, validate_manifest, write_manifest
from emr_inference.request import manifest_prefix, request_for_date
from emr_inference.s3 import S3Uri, s3_hook


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
        if request.get("manifest_uri"):
            info = validate_manifest(hook, request["manifest_uri"])
            self.log.info("Using the supplied manifest %s", info.manifest_uri)
        else:
            source = S3Uri.parse(request["input_uri"], "input_uri", prefix=True)
            listing = Listing()
            keys = matching_keys(
                hook, source, request.get("extensions") or [], request.get("sample_limit"), listing
            )
            dest = S3Uri.parse(manifest_prefix(request), "staging_uri", prefix=True)
            info = write_manifest(hook, source, keys, dest, request["shard_size"])
            info = replace(info, bytes=listing.bytes)
        request = {**request, "request_fingerprint": request_fingerprint(request, info.keys_sha256)}
        status = date_status(info.total, request, published_summary(hook, request["output_uri"]))
        self.log.info(
            "%s: manifest %s, %d keys (%s bytes) in %d shards: %s",
            request["partition_date"],
            info.manifest_uri,
            info.total,
            info.bytes if info.bytes is not None else "unknown",
            info.shards,
            status,
        )
        return {
            "request": request,
            "manifest": {**info.as_xcom(), "status": status},
        }
