"""The run plan: what a run will cost before it spends anything (``plan_run`` and ``make plan``).

From the dates' listings (keys, bytes, status) and the request it models:

* throughput = ``estimate.images_per_task_second`` x the tasks that run at once (the backend's
  :meth:`~emr_inference.backend.Backend.cluster_shape`; EMR: executors x tasks per executor, from
  :mod:`emr_inference.emr.sizing`; local: the workers' cores);
* a date's step = ``estimate.step_start_seconds`` + keys / throughput;
* the range run = one cluster: ``estimate.cluster_start_seconds`` + every pending date's step;
* the alternative, one run per date = one cluster per pending date, each with its start.

Cluster-hours are billed for every node of the cluster (master, core, task) for the cluster's
whole life; cost = cluster-hours x the nodes' hourly prices (the backend's; EMR:
:mod:`emr_inference.emr.prices`, fleets priced at their first instance type, Spot at on-demand).
The local backend costs nothing; its plan still gives times.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from emr_inference.backend import ClusterShape
from emr_inference.backends import backend_named
from emr_inference.dates import PENDING

if TYPE_CHECKING:
    from emr_inference.resolved import ResolvedRequest


@dataclass(frozen=True)
class DatePlan:
    """One date of the run: its input and the modelled seconds of its step."""

    date: str
    status: str
    keys: int
    bytes: int | None
    step_seconds: float


@dataclass(frozen=True)
class Scenario:
    """One way to run the pending dates: clusters started, wall time, cluster-hours, cost."""

    clusters: int
    wall_seconds: float
    cluster_hours: float
    cost_usd: float | None


@dataclass(frozen=True)
class RunPlan:
    """The plan of a run: its dates, the cluster, the range run and one run per date."""

    pipeline: str
    backend: str
    dates: list[DatePlan]
    shape: ClusterShape
    images_per_second: float
    range_run: Scenario
    run_per_date: Scenario
    #: ``estimate.images_per_task_second``: the rate per task the plan assumed
    images_per_task_second: float

    def as_xcom(self) -> dict[str, Any]:
        """JSON-compatible form (``plan_run``'s XCom)."""
        fields = asdict(self)
        price_source = fields["shape"].pop("price_source")
        return {**fields, "hourly_usd": self.shape.hourly_usd, "price_source": price_source}


def cluster_shape(request: ResolvedRequest) -> ClusterShape:
    """The cluster a request gets and the tasks it runs at once (its backend's answer)."""
    return backend_named(request.backend).cluster_shape(request)


def _cost(shape: ClusterShape, seconds: float) -> float | None:
    hourly = shape.hourly_usd
    return None if hourly is None else round(hourly * seconds / 3600, 2)


def _scenario(shape: ClusterShape, clusters: int, billed: float, wall: float) -> Scenario:
    return Scenario(clusters, round(wall, 1), round(billed / 3600, 3), _cost(shape, billed))


def plan_run(
    request: ResolvedRequest, works: Sequence[Mapping[str, Any]], *, max_active_runs: int = 1
) -> RunPlan:
    """The plan of a run from its request and ``stage_manifest``'s per-date work items;
    ``max_active_runs`` runs at once for the one-run-per-date alternative's wall time."""
    shape = cluster_shape(request)
    estimate = request.estimate
    rate = estimate.images_per_task_second * shape.task_slots
    dates = []
    for work in works:
        manifest = work["manifest"]
        keys = int(manifest["total"])
        step = estimate.step_start_seconds + keys / rate if manifest["status"] == PENDING else 0
        dates.append(
            DatePlan(
                work["request"]["partition_date"],
                manifest["status"],
                keys,
                manifest.get("bytes"),
                round(step, 1),
            )
        )
    steps = [d.step_seconds for d in dates if d.status == PENDING]
    start = estimate.cluster_start_seconds
    range_seconds = start + sum(steps) if steps else 0.0
    per_date_seconds = sum(start + step for step in steps)
    parallel = max(1, min(len(steps), max_active_runs))
    return RunPlan(
        pipeline=request.pipeline,
        backend=request.backend,
        dates=dates,
        shape=shape,
        images_per_second=round(rate, 1),
        range_run=_scenario(shape, 1 if steps else 0, range_seconds, range_seconds),
        run_per_date=_scenario(
            shape,
            len(steps),
            per_date_seconds,
            math.ceil(len(steps) / parallel) * (start + max(steps)) if steps else 0.0,
        ),
        images_per_task_second=estimate.images_per_task_second,
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def format_plan(plan: RunPlan) -> str:
    """The plan as the text ``plan_run`` logs and ``make plan`` prints."""
    lines = [f"Plan of a {plan.pipeline} run ({plan.backend} backend), {len(plan.dates)} date(s):"]
    lines.append(f"  {'date':<10}  {'status':<9}  {'keys':>9}  {'bytes':>14}  step (modelled)")
    for d in plan.dates:
        size = f"{d.bytes:,}" if d.bytes is not None else "unknown"
        step = _duration(d.step_seconds) if d.status == PENDING else "-"
        lines.append(f"  {d.date:<10}  {d.status:<9}  {d.keys:>9,}  {size:>14}  {step}")
    nodes = ", ".join(f"{g.role} {g.count} x {g.instance_type}" for g in plan.shape.nodes)
    hourly = plan.shape.hourly_usd
    lines.append(
        f"Cluster: {nodes or 'local Spark standalone'}; {plan.shape.task_slots} tasks at once, "
        f"~{plan.images_per_second:g} images/s modelled "
        f"({plan.images_per_task_second:g} per task, estimate.images_per_task_second); "
        + (f"{_usd(hourly)}/h ({plan.shape.price_source})" if hourly is not None else "no price")
    )
    lines.append(f"  {'':<14}  {'clusters':>8}  {'wall':>10}  {'cluster-h':>9}  {'cost':>10}")
    for label, s in (("range run", plan.range_run), ("run per date", plan.run_per_date)):
        lines.append(
            f"  {label:<14}  {s.clusters:>8}  {_duration(s.wall_seconds):>10}  "
            f"{s.cluster_hours:>9.3f}  {_usd(s.cost_usd):>10}"
        )
    return "\n".join(lines)


def date_estimate(plan: Mapping[str, Any], date: str) -> dict[str, Any]:
    """A pending date's modelled cluster seconds and cost (from ``plan_run``'s XCom), for its
    ``_run_summary.json``: its share of the range run (its step plus an equal part of the cluster
    start) and as a run of its own (its step plus a whole cluster start), with the rate per task
    assumed (``images_per_task_second``, beside the summary's measured one)."""
    pending = [d for d in plan["dates"] if d["status"] == PENDING]
    step = next(d["step_seconds"] for d in pending if d["date"] == date)
    start = plan["range_run"]["wall_seconds"] - sum(d["step_seconds"] for d in pending)
    hourly = plan.get("hourly_usd")

    def cost(seconds: float) -> float | None:
        return None if hourly is None else round(hourly * seconds / 3600, 2)

    share, own = start / len(pending) + step, start + step
    return {
        "range_share_cluster_seconds": round(share, 1),
        "range_share_cost_usd": cost(share),
        "own_run_cluster_seconds": round(own, 1),
        "own_run_cost_usd": cost(own),
        "price_source": plan.get("price_source"),
        "images_per_task_second": plan.get("images_per_task_second"),
    }
