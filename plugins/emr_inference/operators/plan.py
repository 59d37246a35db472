"""``plan_run``: log what the run will cost, stop a dry run, and create no cluster without work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context, TriggerRule
from airflow.sdk.bases.skipmixin import SkipMixin

from emr_inference.dates import dates_by_status
from emr_inference.operators.base import UsesRequest
from emr_inference.plan import format_plan, plan_run


class PlanRunOperator(UsesRequest, BaseOperator, SkipMixin):
    """Plan the run from its dates' listings (:mod:`emr_inference.plan`) and log the plan.

    Returns the plan (XCom). Skips every downstream task but the teardown (which then finds no
    cluster) and ``report_dates`` (which reports the plan's dates) when the request is a
    ``dry_run``, or when no date is pending (every date empty or already published): no cluster
    is created and the run succeeds.

    :param request: the run's resolved request
    :param works: ``stage_manifest``'s per-date work items (a list)
    :param max_active_runs: the DAG's, for the one-run-per-date alternative's wall time
    """

    template_fields: Sequence[str] = ("request", "works")
    inherits_from_skipmixin = True

    def __init__(self, *, request: Any, works: Any, max_active_runs: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.request = request
        self.works = works
        self.max_active_runs = max_active_runs

    def execute(self, context: Context) -> dict[str, Any]:
        works = list(self.works)
        plan = plan_run(self.run_request, works, max_active_runs=self.max_active_runs)
        self.log.info("%s", format_plan(plan))
        grouped = dates_by_status(works)
        for status in ("empty", "published"):
            if grouped[status]:
                self.log.warning("Skipping %s dates: %s", status, ", ".join(grouped[status]))
        result = plan.as_xcom()
        if self.run_request.dry_run:
            self._skip_downstream(context, result, "dry_run: the plan only, no cluster")
        elif not grouped["pending"]:
            self._skip_downstream(context, result, "no date has keys to process: no cluster")
        return result

    def _skip_downstream(self, context: Context, result: dict[str, Any], why: str) -> None:
        """Push the XCom (skipping ends execute early), then skip every downstream task but the
        teardown and those that run whatever happened upstream (``report_dates``: it reports a
        dry run's plan and the empty dates)."""
        to_skip = [
            t
            for t in self.get_flat_relatives(upstream=False)
            if not t.is_teardown and t.trigger_rule != TriggerRule.ALL_DONE
        ]
        self.log.warning("%s: skipping %s", why, sorted(t.task_id for t in to_skip))
        context["ti"].xcom_push(key="return_value", value=result)
        self.skip(ti=context["ti"], tasks=to_skip)
