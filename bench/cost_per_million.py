"""The modelled cost of 1,000,000 images in one night on every priced cluster shape: the run plan's
own estimator (:func:`emr_inference.plan.plan_run`: cluster start included, the EMR backend's
executor plan deciding the task slots, on-demand prices from ``emr_inference/emr/prices.py``) for a
pipeline with its core instance type, core count and master type replaced, at the job's measured
rate per task in fp32 and in int8. Prints the cheapest shapes; nothing is run.

``.venv/bin/python -m bench.cost_per_million [--pipeline PATH] [--int8-ratio R]``: the int8 rate is
the pipeline's fp32 ``estimate.images_per_task_second`` times the int8/fp32 job ratio benchmark 11
measured (default 2.19, ONNX Runtime).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGES = 1_000_000
NIGHT_HOURS = 8.0
MASTERS = ("m5.xlarge", "c5.xlarge")
CORE_COUNTS = (1, 2, 4, 8)


def shapes_costs(pipeline: Path, rate: float) -> list[dict[str, Any]]:
    """Every priced shape whose run of :data:`IMAGES` finishes within :data:`NIGHT_HOURS`, with
    its modelled cost, cheapest first (shapes the pipeline's checks refuse are left out)."""
    import yaml
    from emr_inference.config import ConfigError, parse_pipeline
    from emr_inference.emr.prices import PRICES
    from emr_inference.plan import plan_run
    from emr_inference.request import resolve_request

    data = yaml.safe_load(pipeline.read_text())
    found = []
    for core in sorted(PRICES):
        for count in CORE_COUNTS:
            for master in MASTERS:
                cluster = {
                    **data["cluster"],
                    "core": {**data["cluster"]["core"], "instance_types": [core], "count": count},
                    "master": {"instance_types": [master], "count": 1},
                }
                estimate = {**data.get("estimate", {}), "images_per_task_second": rate}
                changed = {**data, "cluster": cluster, "estimate": estimate}
                try:
                    config = parse_pipeline(changed, str(pipeline), default_name=pipeline.stem)
                except ConfigError:  # e.g. a node too small for the model's executors
                    continue
                request = resolve_request(
                    config,
                    {"partition_date": "2026-11-22"},
                    dag_id=config.pipeline,
                    run_id="cost",
                    data_interval_end=dt.datetime(2026, 11, 23, tzinfo=dt.UTC),
                )
                work: dict[str, Any] = {"request": {"partition_date": "2026-11-22"}}
                work["manifest"] = {"total": IMAGES, "status": "pending"}
                plan = plan_run(request, [work])
                run = plan.range_run
                if run.cost_usd is None or run.wall_seconds > NIGHT_HOURS * 3600:
                    continue
                found.append(
                    {
                        "shape": f"{count} x {core} + {master}",
                        "tasks": plan.shape.task_slots,
                        "hours": run.wall_seconds / 3600,
                        "usd": run.cost_usd,
                    }
                )
    return sorted(found, key=lambda row: (row["usd"], row["hours"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = REPO_ROOT / "include" / "pipelines" / "cifar10_resnet18_onnx.yaml"
    parser.add_argument("--pipeline", type=Path, default=default)
    parser.add_argument("--int8-ratio", type=float, default=2.19)
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path[:0] = [str(REPO_ROOT / "spark_jobs"), str(REPO_ROOT / "plugins")]
    import yaml

    data = yaml.safe_load(args.pipeline.read_text())
    fp32 = float(data.get("estimate", {}).get("images_per_task_second", 25.0))
    print(f"| {IMAGES:,} images in one night ({args.pipeline.name}) | images/task-s | shape | "
          "task slots | hours | modelled USD |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for precision, rate in (("fp32", fp32), ("int8", fp32 * args.int8_ratio)):
        for rank, row in enumerate(shapes_costs(args.pipeline, rate)[: args.top], 1):
            print(
                f"| {precision}, cheapest ({rank}) | {rate:.1f} | {row['shape']} | {row['tasks']} "
                f"| {row['hours']:.2f} | ${row['usd']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
