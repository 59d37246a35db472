"""The run plan (plan_run, make plan): modelled time and cost, dry runs, no cluster without work,
and the report that names the dates that failed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from airflow.sdk import DAG
from airflow.sdk.exceptions import DownstreamTasksSkipped
from emr_inference.config import load_pipeline, parse_pipeline
from emr_inference.emr import prices
from emr_inference.emr.instance_types import INSTANCE_TYPES
from emr_inference.operators.plan import PlanRunOperator
from emr_inference.operators.report import ReportDatesOperator
from emr_inference.plan import cluster_shape, date_estimate, format_plan, plan_run
from emr_inference.request import resolve_request
from emr_inference.resolved import ResolvedRequest

from tests.unit.emr_inference.pipeline_fixtures import pipeline

REPO = Path(__file__).resolve().parents[3]
CIFAR = REPO / "include" / "pipelines" / "cifar10_resnet18.yaml"


def cifar_request(**params) -> ResolvedRequest:
    """A 3-date request of the cifar pipeline (what plan_run reads)."""
    config = load_pipeline(CIFAR)
    return resolve_request(
        config,
        {"date_range": {"start": "2026-11-01", "end": "2026-11-03"}, **params},
        dag_id="cifar10_resnet18",
        run_id="manual__plan",
        data_interval_end=None,
    )


def works(
    request: ResolvedRequest | dict, totals: list[int], statuses: list[str] | None = None
) -> list[dict]:
    """One work item per date of ``request`` (typed, or its JSON form), with ``totals`` keys."""
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


def test_every_supported_instance_type_has_a_price_but_the_unsourced_7th_generation():
    unpriced = {n for n in INSTANCE_TYPES if n.startswith(("c7i.", "m7i.", "c7g.", "m7g."))}
    assert unpriced and set(prices.PRICES) == set(INSTANCE_TYPES) - unpriced
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


def dated_works(
    request: ResolvedRequest, manifests: list[tuple[int, int | None, str]]
) -> list[dict]:
    """One work item per date of ``request``, from its ``(total, bytes, status)``."""
    return [
        {
            "request": date.as_json(),
            "manifest": {"total": total, "bytes": size, "status": status},
        }
        for date, (total, size, status) in zip(request.date_requests(), manifests, strict=True)
    ]


def test_the_plan_table_gives_every_dates_figures_and_both_ways_to_run_them():
    """What an operator reads before a backfill (plan_run's log, ``make plan``): every date's
    keys and listed bytes, the modelled step of each pending date (hours once past one), the
    cluster and its price, then the range run against one run per date."""
    request = cifar_request(date_range={"start": "2026-11-01", "end": "2026-11-04"})
    items = [
        (57_601_280, 12_345_678_901, "pending"),  # 60 s + 57,601,280 / 1,600 per s = 36,060.8 s
        (0, 0, "empty"),
        (1_000, 2_048_000, "published"),
        (160_010, None, "pending"),  # a supplied manifest: its objects were not listed
    ]
    plan = plan_run(request, dated_works(request, items), max_active_runs=2)
    assert format_plan(plan).splitlines() == [
        "Plan of a cifar10_resnet18 run (emr backend), 4 date(s):",
        "  date        status          keys           bytes  step (modelled)",
        "  2026-11-01  pending    57,601,280  12,345,678,901  10h01m01s",
        "  2026-11-02  empty              0               0  -",
        "  2026-11-03  published      1,000       2,048,000  -",
        "  2026-11-04  pending      160,010         unknown  2m40s",
        "Cluster: master 1 x m5.xlarge, core 4 x c5.9xlarge; 64 tasks at once, "
        "~1600 images/s modelled (25 per task, estimate.images_per_task_second); "
        f"$7.44/h ({prices.SOURCE})",
        "                  clusters        wall  cluster-h        cost",
        # one cluster: 600 s start + 36,060.8 + 160.0 = 36,820.8 s = 10.228 h at $7.44
        "  range run              1   10h13m41s     10.228      $76.10",
        # two clusters, both at once (max_active_runs 2): billed 2 x 600 + 36,220.8 = 37,420.8 s,
        # done when the longer one is (600 + 36,060.8 s)
        "  run per date           2   10h11m01s     10.395      $77.34",
    ]
    # the XCom keeps the unrounded-to-the-second figures; dates without a step model none
    assert [d.step_seconds for d in plan.dates] == [36_060.8, 0, 0, 160.0]
    assert (plan.range_run.wall_seconds, plan.run_per_date.wall_seconds) == (36_820.8, 36_660.8)
    assert (plan.range_run.cluster_hours, plan.run_per_date.cluster_hours) == (10.228, 10.395)
    assert (plan.range_run.cost_usd, plan.run_per_date.cost_usd) == (76.1, 77.34)
    xcom = plan.as_xcom()
    assert xcom["hourly_usd"] == pytest.approx(7.44) and xcom["price_source"] == prices.SOURCE
    assert xcom["dates"][3] == {
        "date": "2026-11-04", "status": "pending", "keys": 160_010, "bytes": None,
        "step_seconds": 160.0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0m00s"), (59.4, "0m59s"), (59.5, "1m00s"), (61, "1m01s"), (3599, "59m59s"),
     (3600, "1h00m00s"), (3661, "1h01m01s"), (86_400 + 59, "24h00m59s")],
)  # fmt: skip
def test_durations_read_as_minutes_and_seconds_then_hours(seconds, text):
    request = cifar_request(
        date_range={"start": "2026-11-01", "end": "2026-11-01"},
        estimate={"images_per_task_second": 1, "cluster_start_seconds": 0, "step_start_seconds": 0},
    )
    # 64 tasks at 1 image/s: 64 keys per second of step
    plan = plan_run(request, dated_works(request, [(round(seconds * 64), None, "pending")]))
    assert format_plan(plan).splitlines()[2].endswith(f"  {text}")
    assert format_plan(plan).splitlines()[-2].split()[3] == text  # the range run's wall


def test_a_local_plan_has_times_but_no_cluster_price():
    """The local backend: the workers' cores run the tasks; nothing is billed."""
    config = pipeline(
        backend="local",
        local={"workers": 2, "worker_cores": 3},
        estimate={"images_per_task_second": 12.345, "cluster_start_seconds": 30,
                  "step_start_seconds": 20},
    )  # fmt: skip
    request = resolve_request(
        config,
        {"date_range": {"start": "2026-11-01", "end": "2026-11-02"}},
        dag_id="unit",
        run_id="manual__plan",
        data_interval_end=None,
    )
    plan = plan_run(
        request, dated_works(request, [(4_500, None, "pending"), (75, 7_500, "pending")])
    )
    assert plan.shape.nodes == [] and plan.shape.task_slots == 6 and plan.shape.hourly_usd is None
    assert format_plan(plan).splitlines() == [
        "Plan of a unit run (local backend), 2 date(s):",
        "  date        status          keys           bytes  step (modelled)",
        "  2026-11-01  pending        4,500         unknown  1m21s",  # 20 + 4,500 / 74.07 s
        "  2026-11-02  pending           75           7,500  0m21s",
        "Cluster: local Spark standalone; 6 tasks at once, ~74.1 images/s modelled (12.345 per "
        "task, estimate.images_per_task_second); no price",
        "                  clusters        wall  cluster-h        cost",
        "  range run              1       2m12s      0.037         n/a",
        "  run per date           2       3m42s      0.045         n/a",  # one after the other
    ]
    assert plan.as_xcom()["shape"] == {"nodes": [], "task_slots": 6}
    assert plan.images_per_second == 74.1  # 6 x 12.345 = 74.07, to 0.1
    assert plan.range_run.cost_usd is None and plan.run_per_date.cost_usd is None
    estimate = date_estimate(plan.as_xcom(), "2026-11-02")
    assert estimate["range_share_cost_usd"] is None and estimate["own_run_cost_usd"] is None


def test_a_node_type_missing_from_the_price_table_gives_no_cost_rather_than_a_wrong_one(
    monkeypatch,
):
    """A type added to the instance types before its price: the master below has no price, so
    the cluster has none (leaving it out would under-state every cost)."""
    monkeypatch.delitem(prices.PRICES, "m5.xlarge")
    request = cifar_request()
    plan = plan_run(request, works(request, [64_000, 0, 128_000]))
    assert [g.hourly_usd for g in plan.shape.nodes] == [None, pytest.approx(1.8)]
    assert plan.shape.hourly_usd is None
    lines = format_plan(plan).splitlines()
    assert lines[5] == (
        "Cluster: master 1 x m5.xlarge, core 4 x c5.9xlarge; 64 tasks at once, "
        "~1600 images/s modelled (25 per task, estimate.images_per_task_second); no price"
    )
    assert lines[-2:] == [
        "  range run              1      14m00s      0.233         n/a",
        "  run per date           2      24m40s      0.400         n/a",
    ]
    assert date_estimate(plan.as_xcom(), "2026-11-03")["own_run_cost_usd"] is None


def test_task_nodes_are_billed_and_run_tasks_too():
    data = yaml.safe_load(CIFAR.read_text())
    data["cluster"]["task"] = {"instance_types": ["c5.4xlarge"], "count": 2, "market": "SPOT"}
    data["cluster"]["tasks_per_executor"] = 2
    request = resolve_request(
        parse_pipeline(data, "cifar10_resnet18.yaml"),
        {"partition_date": "2026-11-01"},
        dag_id="cifar10_resnet18",
        run_id="manual__plan",
        data_interval_end=None,
    )
    shape = cluster_shape(request)
    # executors of 4 vCPUs running 2 tasks of 2: 8 per c5.9xlarge (32 usable vCPUs), 3 per
    # c5.4xlarge (16 - 4 reserved = 12): 4 x 8 + 2 x 3 = 38 executors, 76 tasks at once
    assert shape.task_slots == 76
    hourly = sum(
        count * prices.PRICES[name].total_usd
        for name, count in (("m5.xlarge", 1), ("c5.9xlarge", 4), ("c5.4xlarge", 2))
    )  # Spot priced at on-demand: an upper bound
    assert shape.hourly_usd == pytest.approx(hourly)
    plan = plan_run(request, dated_works(request, [(1_900, None, "pending")]))
    assert "Cluster: master 1 x m5.xlarge, core 4 x c5.9xlarge, task 2 x c5.4xlarge; 76 tasks" in (
        format_plan(plan)
    )


def test_a_dates_share_of_the_range_run_and_its_cost_as_a_run_of_its_own():
    """date_estimate (each date's _run_summary.json): its step plus an equal share of the one
    cluster start, or plus a whole start as a run of its own; seconds to 0.1, dollars to cents."""
    request = cifar_request(estimate={"cluster_start_seconds": 1000})
    plan = plan_run(request, works(request, [57_601_280, 1_600, 160_010]))
    # steps 36,060.8, 61.0 and 160.0 s; a third of the 1,000 s start is 333.33 s
    hourly = 7.44
    assert date_estimate(plan.as_xcom(), "2026-11-01") == {
        "range_share_cluster_seconds": 36_394.1,
        "range_share_cost_usd": 75.21,  # 7.44 x 36,394.13 / 3,600 = 75.2148
        "own_run_cluster_seconds": 37_060.8,
        "own_run_cost_usd": 76.59,  # 7.44 x 37,060.8 / 3,600 = 76.5923
        "price_source": prices.SOURCE,
        "images_per_task_second": 25.0,
    }
    estimate = date_estimate(plan.as_xcom(), "2026-11-02")
    assert estimate["range_share_cluster_seconds"] == 394.3
    assert estimate["range_share_cost_usd"] == round(hourly * (1000 / 3 + 61) / 3600, 2) == 0.81


def test_the_estimate_is_the_pipelines_to_set():
    fast = cifar_request(estimate={"images_per_task_second": 100.0, "cluster_start_seconds": 0})
    plan = plan_run(fast, works(fast, [6400, 6400, 6400]))
    assert plan.range_run.wall_seconds == pytest.approx(3 * (60 + 1.0))


@pytest.mark.parametrize(("max_active_runs", "rounds"), [(1, 3), (2, 2), (3, 1), (10, 1)])
def test_one_run_per_date_runs_max_active_runs_clusters_at_once(max_active_runs, rounds):
    """The alternative's wall time: the pending dates' runs in rounds of ``max_active_runs``,
    each round as long as the longest run; every cluster is billed its own start."""
    request = cifar_request(
        date_range={"start": "2026-11-01", "end": "2026-11-04"},
        estimate={"images_per_task_second": 1.0, "cluster_start_seconds": 100},
    )
    items = [
        (6_400, None, "pending"),
        (640, None, "pending"),
        (0, 0, "empty"),
        (64, None, "pending"),
    ]
    plan = plan_run(request, dated_works(request, items), max_active_runs=max_active_runs)
    steps = [60 + 100, 60 + 10, 60 + 1]  # 64 tasks at 1 image/s
    assert plan.run_per_date.clusters == 3
    assert plan.run_per_date.wall_seconds == rounds * (100 + max(steps))
    assert plan.run_per_date.cluster_hours == round((3 * 100 + sum(steps)) / 3600, 3) == 0.164
    assert plan.range_run.wall_seconds == 100 + sum(steps)  # one cluster, one start, in turn
    assert plan.range_run.clusters == 1
    assert math.ceil(3 / max_active_runs) == rounds


def test_nothing_pending_plans_no_cluster():
    request = cifar_request()
    plan = plan_run(request, works(request, [0, 10, 10], ["empty", "published", "published"]))
    assert plan.range_run.clusters == plan.run_per_date.clusters == 0
    for scenario in (plan.range_run, plan.run_per_date):
        assert (scenario.wall_seconds, scenario.cluster_hours, scenario.cost_usd) == (0, 0, 0)
    assert [d.step_seconds for d in plan.dates] == [0, 0, 0]
    assert format_plan(plan).splitlines()[-2:] == [
        "  range run              0       0m00s      0.000       $0.00",
        "  run per date           0       0m00s      0.000       $0.00",
    ]


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


def _plan_dag(request: ResolvedRequest, items: list[dict]) -> PlanRunOperator:
    """plan_run in a DAG, reading the request's JSON form (its XCom) as in a run."""
    request = request.as_json()
    with DAG("t", schedule=None):
        plan = PlanRunOperator(task_id="plan_run", request=request, works=items)
        create = PlanRunOperator(task_id="create_cluster", request=request, works=[]).as_setup()
        submit = PlanRunOperator(task_id="submit_inference_step", request=request, works=[])
        terminate = PlanRunOperator(
            task_id="terminate_cluster", request=request, works=[]
        ).as_teardown(setups=create)
        report = ReportDatesOperator(task_id="report_dates", works=items, trigger_rule="all_done")
        plan >> create >> submit >> terminate
        submit >> report
    return plan


@pytest.mark.parametrize(
    ("params", "totals"),
    [({"dry_run": True}, [5, 5, 5]), ({}, [0, 0, 0])],
    ids=["dry_run", "every_date_empty"],
)
def test_a_dry_run_or_a_run_without_work_skips_all_but_the_teardown_and_report(params, totals):
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
