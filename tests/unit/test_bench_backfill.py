"""Benchmark 8's helpers: the backfill's dates, each way's run confs, the modelled EMR backfill."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from bench.backfill import backfill_dates, environment, modelled_backfill, way_confs


def test_backfill_dates_are_consecutive_across_a_month_end() -> None:
    assert backfill_dates(dt.date(2026, 11, 29), 3) == ["2026-11-29", "2026-11-30", "2026-12-01"]
    assert backfill_dates(dt.date(2026, 11, 29), 0) == []


def test_a_range_is_one_run_and_per_date_one_run_a_date_each_writing_its_own_prefix() -> None:
    dates = backfill_dates(dt.date(2026, 11, 1), 3)
    base = {"input_uri": "s3://b/images/", "model": {"name": "m"}}

    (ranged,) = way_confs("range", dates, base)
    assert ranged["date_range"] == {"start": "2026-11-01", "end": "2026-11-03"}
    assert ranged["partition_date"] is None and ranged["model"] == {"name": "m"}

    per_date = way_confs("per-date", dates, base)
    assert [conf["partition_date"] for conf in per_date] == dates
    assert all(conf["date_range"] is None for conf in per_date)

    # the second way must not find the first one's dates published
    assert ranged["output_uri"] != per_date[0]["output_uri"]
    assert ranged["staging_uri"] != per_date[0]["staging_uri"]
    assert ranged["output_uri"].endswith("/dt={{ partition_date }}/")
    with pytest.raises(ValueError, match="way must be"):
        way_confs("both", dates, base)


def test_environment_restores_set_and_unset_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_KEPT", "before")
    monkeypatch.delenv("BENCH_NEW", raising=False)
    with pytest.raises(RuntimeError), environment({"BENCH_KEPT": "in", "BENCH_NEW": "in"}):
        assert os.environ["BENCH_KEPT"] == os.environ["BENCH_NEW"] == "in"
        raise RuntimeError
    assert os.environ["BENCH_KEPT"] == "before"
    assert "BENCH_NEW" not in os.environ


def test_a_modelled_backfill_prices_one_cluster_against_one_per_date() -> None:
    plan = modelled_backfill(30, 200_000)
    assert len(plan.dates) == 30 and plan.dates[-1].date == "2026-11-30"
    assert all(d.keys == 200_000 and d.status == "pending" for d in plan.dates)
    ranged, per_date = plan.range_run, plan.run_per_date
    assert (ranged.clusters, per_date.clusters) == (1, 30)
    # the same steps both ways; one way pays one cluster start, the other 30
    start = ranged.wall_seconds - sum(d.step_seconds for d in plan.dates)
    extra_starts = per_date.cluster_hours - ranged.cluster_hours
    assert extra_starts == pytest.approx(29 * start / 3600, abs=0.01)
    assert per_date.cost_usd / ranged.cost_usd == pytest.approx(
        per_date.cluster_hours / ranged.cluster_hours, rel=0.01
    )
