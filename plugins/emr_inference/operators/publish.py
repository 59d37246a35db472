"""``publish_results``: check the staged output, replace the publication, emit an Asset event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Asset, AssetAlias, Context

from emr_inference.operators.base import (
    RequestOperator,
    request_template_fields,
)
from emr_inference.plan import date_estimate
from emr_inference.publish import (
    check_complete,
    check_disjoint,
    replace_publication,
    run_summary,
)
from emr_inference.staged_output import list_staged_output

#: The asset alias ``publish_results`` emits to unless told otherwise.
DEFAULT_ASSET_ALIAS = "emr_inference.predictions"


class PublishResultsOperator(RequestOperator):
    """Publish the job's output (``<staging_uri>output/``) to the request's ``output_uri``.

    Two Asset events carry the counts, the model and the run id as ``extra``: one for
    ``Asset(output_uri)`` through an :class:`AssetAlias` (the output URI is only known at run
    time), and one for the pipeline's predictions ``asset`` keyed by the date (an alias event
    cannot carry a partition key). Returns ``{"partition_date", "output_uri", "rows", "errors",
    "summary_uri"}``.

    :param request: the date's request (``stage_manifest``'s XCom)
    :param manifest: the date's manifest (``stage_manifest``'s XCom: ``manifest_uri``, ``total``)
    :param plan: ``plan_run``'s XCom; the date's modelled cluster seconds and cost go into
        ``_run_summary.json``
    :param asset: the pipeline's predictions asset: one event per published date, with the date
        as its partition key (``PartitionedAssetTimetable`` consumers get a run per date)
    :param asset_alias: name of the asset alias the output's events are attached to
    :param aws_conn_id: the Airflow AWS connection for S3
    """

    template_fields: Sequence[str] = request_template_fields("manifest", "plan")

    def __init__(
        self,
        *,
        request: Any,
        manifest: Any,
        plan: Any = None,
        asset: Asset | None = None,
        asset_alias: str = DEFAULT_ASSET_ALIAS,
        aws_conn_id: str | None = "aws_default",
        **kwargs,
    ) -> None:
        outlets: list[Any] = [AssetAlias(asset_alias), *([asset] if asset else [])]
        super().__init__(request=request, aws_conn_id=aws_conn_id, outlets=outlets, **kwargs)
        self.asset = asset
        self.manifest = manifest
        self.plan = plan
        self.asset_alias = asset_alias

    def execute(self, context: Context) -> dict[str, Any]:
        request, total, hook = self.run_request, int(self.manifest["total"]), self.s3
        output = request.output_uri
        others = {"staging area": request.staging_uri}
        if request.input_uri:
            others["input"] = request.input_uri
        check_disjoint(output, others)

        staged = list_staged_output(hook, request.job_output_uri.uri)
        checked = check_complete(hook, staged, total)
        started = context["dag_run"].start_date if context.get("dag_run") else None
        summary = run_summary(
            checked,
            run_id=request.run_id,
            dag_id=request.dag_id,
            pipeline=request.pipeline,
            backend=request.backend,
            model=request.model.name,
            input=str(request.input_uri or request.manifest_uri),
            manifest_uri=self.manifest["manifest_uri"],
            output_uri=output.uri,
            published_at=datetime.now(UTC).isoformat(),
            run_seconds=(
                round((datetime.now(UTC) - started).total_seconds(), 3) if started else None
            ),
            partition_date=request.partition_date,
            request_fingerprint=request.request_fingerprint,
            estimate=self._estimate(request.partition_date),
        )
        summary_uri = replace_publication(hook, checked, output, summary)
        self.log.info(
            "Published %d rows (%d errors, %s images/s) to %s",
            checked.rows,
            checked.errors,
            summary["images_per_second"],
            output,
        )
        result = {
            "partition_date": request.partition_date,
            "output_uri": output.uri,
            "rows": checked.rows,
            "errors": checked.errors,
            "summary_uri": summary_uri.uri,
        }
        extra = {**result, "model": summary["model"], "run_id": summary["run_id"]}
        context["outlet_events"][AssetAlias(self.asset_alias)].add(Asset(output.uri), extra=extra)
        if self.asset:
            event = context["outlet_events"][self.asset]
            event.extra = extra
            event.add_partitions(request.partition_date)
        return result

    def _estimate(self, date: str) -> dict[str, Any] | None:
        """The date's modelled cluster seconds and cost from ``plan_run``'s plan (if given)."""
        if not self.plan:
            return None
        return date_estimate(self.plan, date)
