"""``publish_results``: check the staged output, replace the publication, emit an Asset event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Asset, AssetAlias, BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from emr_inference.dates import PENDING, dates_by_status, published_summary
from emr_inference.operators.base import (
    DEFAULT_AWS_CONN_ID,
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
from emr_inference.s3 import S3Uri, s3_hook
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


class ReportDatesOperator(BaseOperator):
    """The run's last word on its dates, read from S3: which were published by this run, which
    were empty or already published by another run, which were planned only (a dry run), and
    which were to be processed but hold no publication of this run. Fails the run naming those.

    A date counts as published when its ``output_uri`` holds ``_SUCCESS`` and a
    ``_run_summary.json`` of this run's id: what readers see, not task states, so a crash that
    lost a task's state (a retried publication, a marked task) makes a run slower, never wrong.

    Runs whatever happened upstream (``ALL_DONE``; ``plan_run`` does not skip it on a dry run or
    when no date has keys); a date fails alone (its step or its publication), the others publish,
    and this task makes the run end failed. As the run's only leaf besides the teardown, it also
    fails when an earlier task did (no work items), so that such a run never ends ``success``.

    :param works: ``stage_manifest``'s per-date work items
    :param aws_conn_id: the connection that reads the output prefixes
    """

    template_fields: Sequence[str] = ("works",)

    def __init__(
        self, *, works: Any, aws_conn_id: str | None = DEFAULT_AWS_CONN_ID, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.works = works
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> dict[str, list[str]]:
        if self.works is None:  # stage_manifest never ran: an earlier task failed
            raise AirflowFailException(
                "The run failed before its dates were listed (see the first failed task): no "
                "date was processed"
            )
        works = list(self.works)
        grouped = dates_by_status(works)
        pending = [w["request"] for w in works if w["manifest"]["status"] == PENDING]
        dry_run = any(request.get("dry_run") for request in pending)
        published = [] if dry_run else self.published_by_this_run(pending)
        report = {
            "published": published,
            "empty": grouped["empty"],
            "already_published": grouped["published"],
            "planned_only": grouped[PENDING] if dry_run else [],
            "failed": [] if dry_run else sorted(set(grouped[PENDING]) - set(published)),
        }
        for name, dates in report.items():
            self.log.info("%s: %s", name, ", ".join(dates) or "none")
        if report["failed"]:
            raise AirflowFailException(
                f"{len(report['failed'])} of {len(grouped[PENDING])} dates were not published: "
                + ", ".join(report["failed"])
                + " (see their date.* task instances); re-run the same request to redo only them"
            )
        return report

    def published_by_this_run(self, requests: list[dict[str, Any]]) -> list[str]:
        """The dates of ``requests`` whose output holds a complete publication of their run."""
        hook = s3_hook(self.aws_conn_id)
        dates = []
        for request in requests:
            output = S3Uri.parse(request["output_uri"], "output_uri", prefix=True)
            summary = published_summary(hook, output)
            if summary is not None and summary.get("run_id") == request["run_id"]:
                dates.append(request["partition_date"])
        return sorted(dates)
