"""``report_dates``: the run's last word on its dates, read from S3, and its digest and alerts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from emr_inference import alerts
from emr_inference.dates import PENDING, dates_by_status, published_summary
from emr_inference.operators.base import DEFAULT_AWS_CONN_ID
from emr_inference.resolved import ResolvedRequest
from emr_inference.s3 import s3_hook

#: The task group mapped per date, and the tasks whose states say what became of the cluster.
DATE_GROUP = "date"
CREATE_TASK = "create_cluster"
TERMINATE_TASK = "terminate_cluster"
#: The XCom key of the run's digest (the return value is the report of the dates).
DIGEST_KEY = "digest"


class ReportDatesOperator(BaseOperator):
    """The run's last word on its dates, read from S3: which were published by this run, which
    were empty or already published by another run, which were planned only (a dry run), and
    which were to be processed but hold no publication of this run. Fails the run naming those.

    A date counts as published when its ``output_uri`` holds ``_SUCCESS`` and a
    ``_run_summary.json`` of this run's id: what readers see, not task states, so a crash that
    lost a task's state (a retried publication, a marked task) makes a run slower, never wrong.

    A teardown of ``create_cluster`` after ``terminate_cluster``, whose failure fails the run: it
    runs whatever happened upstream (``ALL_DONE``; ``plan_run`` does not skip it on a dry run or
    when no date has keys; Airflow does not skip it when the run is marked failed by hand); a
    date fails alone (its step or its publication), the others publish, and this task makes the
    run end failed. It also fails when an earlier task did before the dates were listed, and when
    ``terminate_cluster`` failed on every try (the cluster may be left running): as the run's
    only leaf, it is what makes such a run end failed, never ``success``.

    Returns the report of the dates; pushes the run's digest
    (:func:`emr_inference.alerts.run_digest`) as the XCom ``digest``, failed runs included, and
    publishes it to ``alerts.sns_topic_arn`` when the run failed or, with ``on_success``,
    succeeded.

    :param works: ``stage_manifest``'s per-date work items
    :param plan: ``plan_run``'s XCom (the modelled cost), or None
    :param alerts: the pipeline's ``alerts`` settings (JSON), or None
    :param aws_conn_id: the connection that reads the output prefixes and publishes alerts
    """

    template_fields: Sequence[str] = ("works", "plan")

    def __init__(
        self,
        *,
        works: Any,
        plan: Any = None,
        alerts: Mapping[str, Any] | None = None,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.works = works
        self.plan = plan
        self.alerts = dict(alerts) if alerts else None
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        works = list(self.works or [])
        grouped = dates_by_status(works)
        pending = [
            ResolvedRequest.of(w["request"]) for w in works if w["manifest"]["status"] == PENDING
        ]
        dry_run = any(request.dry_run for request in pending)
        summaries = {} if dry_run else self.published_by_this_run(pending)
        report = {
            "published": sorted(summaries),
            "empty": grouped["empty"],
            "already_published": grouped["published"],
            "planned_only": grouped[PENDING] if dry_run else [],
            "failed": [] if dry_run else sorted(set(grouped[PENDING]) - set(summaries)),
        }
        for name, dates in report.items():
            self.log.info("%s: %s", name, ", ".join(dates) or "none")
        ti = context["ti"]
        states = ti.get_task_states(dag_id=self.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        states = {key: state for key, state in states.items() if key != self.task_id}
        digest = self.digest(context, states, works, report, summaries)
        ti.xcom_push(key=DIGEST_KEY, value=digest)  # a failed run's too
        if self.alerts and alerts.should_publish(self.alerts, digest["outcome"]):
            alerts.publish_digest(digest, self.alerts["sns_topic_arn"], self.aws_conn_id)
        problems = []
        if self.works is None:  # stage_manifest never ran: an earlier task failed
            problems.append(
                "The run failed before its dates were listed (see the first failed task): no "
                "date was processed"
            )
        if report["failed"]:
            problems.append(
                f"{len(report['failed'])} of {len(grouped[PENDING])} dates were not published: "
                + ", ".join(report["failed"])
                + " (see their date.* task instances); re-run the same request to redo only them"
            )
        if states.get(TERMINATE_TASK) == "failed":
            problems.append(f"The run's cluster: {digest['cluster']}")
        if problems:
            raise AirflowFailException("\n".join(problems))
        return report

    def published_by_this_run(self, requests: list[ResolvedRequest]) -> dict[str, dict]:
        """``{date: summary}`` of the dates of ``requests`` whose output holds a complete
        publication of their run."""
        hook = s3_hook(self.aws_conn_id)
        found = {}
        for request in requests:
            summary = published_summary(hook, request.output_uri)
            if summary is not None and summary.get("run_id") == request.run_id:
                found[request.partition_date] = summary
        return found

    def digest(
        self,
        context: Context,
        states: Mapping[str, str | None],
        works: list[dict[str, Any]],
        report: Mapping[str, list[str]],
        summaries: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, Any]:
        """The run's digest, from the report, the run's task states and their recorded reasons."""
        ti = context["ti"]
        mapped = {task_id for task_id in self.dag.task_ids if task_id.startswith(DATE_GROUP + ".")}
        requests = [ResolvedRequest.of(work["request"]) for work in works]
        dates = [request.partition_date for request in requests]

        def reason_of(task_id: str, map_index: int | None) -> str | None:
            return ti.xcom_pull(
                task_ids=task_id,
                key=alerts.FAILURE_KEY,
                map_indexes=-1 if map_index is None else map_index,
            )

        tasks = alerts.failed_tasks(states, self.dag.task_ids, mapped, dates, reason_of)
        cluster = alerts.cluster_outcome(states.get(CREATE_TASK), states.get(TERMINATE_TASK))
        return alerts.run_digest(
            context=context,
            report=report,
            summaries=summaries,
            requests=requests,
            tasks=tasks,
            plan=self.plan,
            cluster=cluster,
        )
