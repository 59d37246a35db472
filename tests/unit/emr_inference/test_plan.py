"""The run plan (plan_run, make plan): modelled time and cost, dry runs, no cluster without work,
and the report that names the dates that failed."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException, DownstreamTasksSkipped
from emr_inference.config import load_pipeline
from emr_inference.emr import prices
from emr_inference.emr.instance_types import INSTANCE_TYPES
from emr_inference.operators.plan import PlanRunOperator
from emr_inference.operators.publish import ReportDatesOperator
from emr_inference.plan import cluster_shape, date_estimate, format_plan, plan_run
from emr_inference.request import resolve_request
from emr_inference.resolved import ResolvedRequest

REPO = Path(__file__).resolve().parents[3]


def cifar_request(**params) -> dict:
    """The JSON form of a 3-date request of the cifar pipeline (what plan_run reads)."""
    config = load_pipeline(REPO / "include" / "pipelines" / "cifar10_resnet18.yaml")
    return resolve_request(
        config,
        {"date_range": {"start": "2026-11-01", "end": "2026-11-03"}, **params},
        dag_id="cifar10_resnet18",
        run_id="manual__plan",
        data_interval_end=None,
    ).as_json()


def works(request: dict, totals: list[int], statuses: list[str] | None = None) -> list[dict]:
    statuses = statuses or ["pending" if total else "empty" for total in totals]
    return [
        {
            "request": date.as_json(),
            "manifest": {"total": total, "bytes": total * 1000, "status": status},
        }
        for date, total, status in zip(
            ResolvedRequest.of(request).date_requests(), totals, statuses, strict=True
        )
    ]


def test_every_supported_instance_type_has_a_price():
    assert set(prices.PRICES) == set(INSTANCE_TYPES)
    assert all(p.ec2_usd > 0 and 0 < p.emr_usd <= p.ec2_usd for p in prices.PRICES.values())
    assert prices.REGION in prices.SOURCE and prices.PRICED_ON in prices.SOURCE


def test_the_emr_plan_models_one_cluster_against_one_per_date():
    request = cifar_request()
    shape = cluster_shape(request)
    # the pipeline's cluster: 1 x m5.xlarge master, 4 x c5.9xlarge core, priced from the table
    hourly = prices.PRICES["m5.xlarge"].total_usd + 4 * prices.PRICES["c5.9xlarge"].total_usd
    assert shape.hourly_usd == pytest.approx(hourly)
    assert shape.task_slots == 64  # 4 nodes x 16 one-task executors (docs/SIZING.md)

    plan = plan_run(request, works(request, [64_000, 0, 128_000]))
    rate = 25.0 * 64
    steps = [60 + 64_000 / rate, 60 + 128_000 / rate]
    assert [d.status for d in plan.dates] == ["pending", "empty", "pending"]
    assert plan.range_run.clusters == 1 and plan.run_per_date.clusters == 2
    assert plan.range_run.cluster_hours == pytest.approx((600 + sum(steps)) / 3600, abs=1e-3)
    assert plan.run_per_date.cluster_hours == pytest.approx((2 * 600 + sum(steps)) / 3600, abs=1e-3)
    assert plan.range_run.cost_usd == pytest.approx(hourly * (600 + sum(steps)) / 3600, abs=0.01)
    assert plan.run_per_date.cost_usd > plan.range_run.cost_usd

    text = format_plan(plan)
    assert "2026-11-02  empty" in text
    assert "core 4 x c5.9xlarge" in text and prices.SOURCE in text
    assert "range run" in text and "run per date" in text

    estimate = date_estimate(plan.as_xcom(), "2026-11-03")
    assert estimate["range_share_cluster_seconds"] == pytest.approx(300 + steps[1], abs=0.1)
    assert estimate["own_run_cluster_seconds"] == pytest.approx(600 + steps[1], abs=0.1)
    assert estimate["own_run_cost_usd"] == pytest.approx(hourly * (600 + steps[1]) / 3600, abs=0.01)
    assert estimate["images_per_task_second"] == 25.0  # what the run summary's measured one meets
    assert "(25 per task, estimate.images_per_task_second)" in text


def test_the_estimate_is_the_pipelines_to_set():
    fast = cifar_request(estimate={"images_per_task_second": 100.0, "cluster_start_seconds": 0})
    plan = plan_run(fast, works(fast, [6400, 6400, 6400]))
    assert plan.range_run.wall_seconds == pytest.approx(3 * (60 + 1.0))


def test_nothing_pending_plans_no_cluster():
    request = cifar_request()
    plan = plan_run(request, works(request, [0, 10, 10], ["empty", "published", "published"]))
    assert plan.range_run.clusters == plan.run_per_date.clusters == 0
    assert plan.range_run.cost_usd == 0


class FakeTI:
    """The TaskInstance methods plan_run and report_dates use."""

    map_index = -1

    def __init__(self, published: list[dict] | None = None) -> None:
        self.pushed: dict[str, object] = {}
        self.published = published

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids: str) -> object:
        assert task_ids == "date.publish_results"
        return self.published


def _plan_dag(request: dict, items: list[dict]) -> PlanRunOperator:
    with DAG("t", schedule=None):
        plan = PlanRunOperator(task_id="plan_run", request=request, works=items)
        create = PlanRunOperator(task_id="create_cluster", request=request, works=[]).as_setup()
        submit = PlanRunOperator(task_id="submit_inference_step", request=request, works=[])
        terminate = PlanRunOperator(
            task_id="terminate_cluster", request=request, works=[]
        ).as_teardown(setups=create)
        plan >> create >> submit >> terminate
    return plan


@pytest.mark.parametrize(
    ("params", "totals"),
    [({"dry_run": True}, [5, 5, 5]), ({}, [0, 0, 0])],
    ids=["dry_run", "every_date_empty"],
)
def test_a_dry_run_or_a_run_without_work_skips_everything_but_the_teardown(params, totals):
    request = cifar_request(**params)
    plan = _plan_dag(request, works(request, totals))
    ti = FakeTI()
    with pytest.raises(DownstreamTasksSkipped) as skipped:
        plan.execute({"ti": ti})
    assert sorted(skipped.value.tasks) == ["create_cluster", "submit_inference_step"]
    assert ti.pushed["return_value"]["range_run"]["clusters"] == (1 if params else 0)


def test_a_run_with_work_goes_on():
    request = cifar_request()
    result = _plan_dag(request, works(request, [5, 0, 5])).execute({"ti": FakeTI()})
    assert result["range_run"]["clusters"] == 1


def test_the_report_fails_the_run_naming_the_dates_not_published():
    request = cifar_request()
    items = works(request, [5, 0, 5])
    report = ReportDatesOperator(task_id="report_dates", works=items)
    published = [{"partition_date": "2026-11-01", "rows": 5}]
    with pytest.raises(AirflowFailException, match=r"1 of 2 dates were not published: 2026-11-03"):
        report.execute({"ti": FakeTI(published)})
    both = [*published, {"partition_date": "2026-11-03", "rows": 5}]
    assert report.execute({"ti": FakeTI(both)}) == {
        "published": ["2026-11-01", "2026-11-03"],
        "empty": ["2026-11-02"],
        "already_published": [],
        "failed": [],
    }


def test_the_report_fails_a_run_that_failed_before_listing_its_dates():
    """validate_request failed: stage_manifest pushed nothing; the run must not end success."""
    report = ReportDatesOperator(task_id="report_dates", works=None)
    with pytest.raises(AirflowFailException, match="failed before its dates were listed"):
        report.execute({"ti": FakeTI([])})
