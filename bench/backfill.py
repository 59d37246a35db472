"""Benchmark 8: a backfill as one run per date against one range run, measured and modelled.

* **Measured** (local backend): the ``demo`` pipeline over ``DAYS`` dates of digit images in a
  moto S3 server of its own, driven by ``dag.test()`` in this process (an ``AIRFLOW_HOME`` that
  ``airflow db migrate`` sets up, ``aws_default`` on that server) twice: one range run of every
  date, then one run per date. Each way writes its own output prefix (so the second finds
  nothing published) and keeps its local clusters under a state dir of its own, whose
  ``cluster.json`` files count the clusters it started. The range run goes first, so it pays
  this process's one-off imports.
* **Modelled** (EMR): ``emr_inference.plan.plan_run`` of the ``cifar10_resnet18`` pipeline for a
  backfill of 30 and 90 days at a stated daily volume, both ways, from per-date work items made
  here (no S3): clusters, cluster-hours, cost.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from emr_inference_tools.airflow_env import REPO_ROOT, aws_connection
from emr_inference_tools.local_s3 import start_local_s3

if TYPE_CHECKING:
    from emr_inference.plan import RunPlan

DAYS = 7
FIRST_DATE = dt.date(2026, 11, 1)
BUCKET = "backfill"
#: The modelled backfills: lengths in days, and the daily volume of the cifar10_resnet18 pipeline.
MODELLED_DAYS = (30, 90)
IMAGES_PER_DAY = 200_000
DAGS_BUNDLE = {
    "name": "dags-folder",
    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
    "kwargs": {"path": str(REPO_ROOT / "dags")},
}


@dataclass(frozen=True)
class Way:
    """How one way of running the backfill went: wall time, clusters started, images done."""

    name: str
    runs: int
    wall_seconds: float
    clusters: int
    images: int


def backfill_dates(first: dt.date, days: int) -> list[str]:
    """The ``days`` consecutive dates from ``first`` on, as ``YYYY-MM-DD``."""
    return [(first + dt.timedelta(days=n)).isoformat() for n in range(days)]


def way_confs(way: str, dates: list[str], base: Mapping[str, object]) -> list[dict]:
    """The run confs of one way: ``range`` = one run naming every date, ``per-date`` = one run
    per date; ``base`` merged in, output and staging under a prefix named after the way. Every
    date field is named (None where unused): ``dag.test()`` keeps an earlier run's conf in the
    DAG's Params."""
    fields = {
        "output_uri": f"s3://{BUCKET}/{way}/predictions/dt={{{{ partition_date }}}}/",
        "staging_uri": f"s3://{BUCKET}/{way}/_staging/",
        "partition_date": None,
        "partition_dates": None,
        "date_range": None,
    }
    if way == "range":
        return [{**base, **fields, "date_range": {"start": dates[0], "end": dates[-1]}}]
    if way == "per-date":
        return [{**base, **fields, "partition_date": date} for date in dates]
    raise ValueError(f"way must be 'range' or 'per-date', got {way!r}")


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def published_images(client, way: str, dates: list[str]) -> int:
    """Rows published by ``way`` over ``dates`` (their ``_run_summary.json``)."""
    total = 0
    for date in dates:
        key = f"{way}/predictions/dt={date}/_run_summary.json"
        total += json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())["rows"]
    return total


def run_way(
    dag,
    client,
    way: str,
    dates: list[str],
    base: Mapping[str, object],
    workdir: Path,
    logical: dt.datetime,
) -> Way:
    """Run the backfill one way (``dag.test()`` per conf, logical dates an hour apart from
    ``logical``); every run must succeed and every cluster must be stopped. Clusters are counted
    under ``workdir/<way>-clusters``, images from what the way published (``client``: S3)."""
    from emr_inference.local.cluster import STATE_ENV, recorded_clusters, stop_cluster

    state_dir = workdir / f"{way}-clusters"
    confs = way_confs(way, dates, base)
    started = time.perf_counter()
    with environment({STATE_ENV: str(state_dir)}):
        try:
            for index, conf in enumerate(confs):
                run = dag.test(logical_date=logical + dt.timedelta(hours=index), run_conf=conf)
                if run.state != "success":
                    states = {(t.task_id, t.map_index): t.state for t in run.get_task_instances()}
                    raise RuntimeError(f"{way} run {index} ended {run.state}: {states}")
            wall = time.perf_counter() - started
        finally:  # nothing left running, whatever happened
            clusters = recorded_clusters(state_dir)
            running = [c.cluster_id for c in clusters if c.live_processes()]
            for cluster in clusters:
                stop_cluster(cluster)
    if running:
        raise RuntimeError(f"{way}: clusters {running} were still running after their runs")
    return Way(way, len(confs), wall, len(clusters), published_images(client, way, dates))


def measure_backfill(images_per_date: int, workdir: Path) -> list[Way]:
    """The demo backfill of ``DAYS`` dates both ways, range run first; S3 server and Airflow
    home of its own (``AIRFLOW_HOME`` must already be set, before Airflow is first imported)."""
    from emr_inference_tools.demo.images import demo_objects, upload_objects
    from emr_inference_tools.demo.models import train_digits_classifier, upload_model

    dates = backfill_dates(FIRST_DATE, DAYS)
    s3 = start_local_s3()
    try:
        settings = {
            **s3.env,
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(s3.endpoint_url),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # dag.test() serializes the DAG from its bundle: dags/ (the dags folder is read once,
            # when Airflow is imported; the bundle list each time)
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([DAGS_BUNDLE]),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
        with environment(settings):
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                check=True,
                capture_output=True,
                timeout=600,
            )
            client = s3.client()
            client.create_bucket(Bucket=BUCKET)
            model = train_digits_classifier(workdir / "backfill-digits", epochs=1)
            objects = demo_objects(images_per_date, bad_fraction=0)
            for date in dates:
                upload_objects(client, BUCKET, f"images/dt={date}", objects)
            base = {
                "input_uri": f"s3://{BUCKET}/images/dt={{{{ partition_date }}}}/",
                "artifacts_uri": f"s3://{BUCKET}/artifacts/",
                "model": upload_model(client, model, BUCKET, "models"),
            }
            from emr_inference.factory import build_dags

            dag = build_dags(REPO_ROOT / "include" / "pipelines")["demo"]
            first = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
            ways = [
                run_way(dag, client, way, dates, base, workdir, first + dt.timedelta(days=n))
                for n, way in enumerate(("range", "per-date"))
            ]
    finally:
        s3.stop()
    if wrong := [w.name for w in ways if w.images != len(dates) * images_per_date]:
        raise RuntimeError(f"{wrong}: not every image of the {len(dates)} dates was published")
    return ways


def modelled_backfill(days: int, images_per_day: int) -> RunPlan:
    """``plan_run`` of a ``days``-day backfill of ``cifar10_resnet18``, ``images_per_day`` each
    date, with the pipeline's own estimate settings."""
    from emr_inference.config import load_pipeline
    from emr_inference.dates import PENDING
    from emr_inference.plan import plan_run
    from emr_inference.request import resolve_request

    config = load_pipeline(REPO_ROOT / "include" / "pipelines" / "cifar10_resnet18.yaml")
    dates = backfill_dates(FIRST_DATE, days)
    request = resolve_request(
        config,
        {"date_range": {"start": dates[0], "end": dates[-1]}},
        dag_id=config.pipeline,
        run_id="manual__bench",
        data_interval_end=None,
    )
    works = [
        {
            "request": date.as_json(),
            "manifest": {"total": images_per_day, "bytes": None, "status": PENDING},
        }
        for date in request.date_requests()
    ]
    return plan_run(request, works)
