"""``stage_manifest``: write (or validate) the run's key manifest; no keys, no cluster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.bases.skipmixin import SkipMixin

from emr_inference.manifest import matching_keys, validate_manifest, write_manifest
from emr_inference.request import manifest_prefix
from emr_inference.s3 import S3Uri, s3_hook


class StageManifestOperator(BaseOperator, SkipMixin):
    """List ``request["input_uri"]`` into a sharded manifest, or check ``request["manifest_uri"]``.

    Returns ``{"manifest_uri", "total", "shards"}``. When the manifest is empty, every downstream
    task is skipped (the ShortCircuitOperator semantics: teardown tasks are left to their trigger
    rule, and a teardown whose setup was skipped is skipped), so no cluster is created and the run
    still succeeds.

    :param request: the resolved request (``validate_request``'s XCom)
    :param aws_conn_id: the Airflow AWS connection for S3
    """

    template_fields: Sequence[str] = ("request",)
    inherits_from_skipmixin = True

    def __init__(self, *, request: Any, aws_conn_id: str | None = "aws_default", **kwargs) -> None:
        super().__init__(**kwargs)
        self.request = request
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        request = self.request
        hook = s3_hook(self.aws_conn_id, request.get("sse"))
        if request.get("manifest_uri"):
            info = validate_manifest(hook, request["manifest_uri"])
            self.log.info("Using the supplied manifest %s", info.manifest_uri)
        else:
            source = S3Uri.parse(request["input_uri"], "input_uri", prefix=True)
            keys = matching_keys(
                hook, source, request.get("extensions") or [], request.get("sample_limit")
            )
            dest = S3Uri.parse(manifest_prefix(request), "staging_uri", prefix=True)
            info = write_manifest(hook, source, keys, dest, request["shard_size"])
        self.log.info(
            "Manifest %s: %d keys in %d shards", info.manifest_uri, info.total, info.shards
        )
        result = info.as_xcom()
        if info.total == 0:
            self._skip_downstream(context, result)
        return result

    def _skip_downstream(self, context: Context, result: dict[str, Any]) -> None:
        """Push the XCom (skipping ends execute early), then skip every non-teardown downstream."""
        to_skip = [t for t in self.get_flat_relatives(upstream=False) if not t.is_teardown]
        self.log.warning(
            "No input keys: skipping %s, no cluster is created", sorted(t.task_id for t in to_skip)
        )
        context["ti"].xcom_push(key="return_value", value=result)
        self.skip(ti=context["ti"], tasks=to_skip)
