"""Lateness alerts in a whole Airflow: the scheduler finds the missed deadline, the triggerer runs
the provider's SnsNotifier, and the pipeline's topic (moto's SNS, an SQS queue subscribed) gets
one message, for the run held past its deadline only.

The pipeline is the demo one with ``alerts: {late_after_minutes: 1}``; a run is held past that
minute by freezing its publication's first copy in an S3 proxy (tests/support/hold_proxy.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emr_inference_tools.airflow_env import REPO_ROOT
from emr_inference_tools.demo.run_demo import DAG_ID, seed_demo
from emr_inference_tools.local_s3 import LocalS3
from tests.e2e.airflow_stack import AirflowStack, airflow_stack
from tests.support.hold_proxy import HoldProxy
from tests.support.sns_inbox import SnsInbox, sns_inbox

pytestmark = pytest.mark.slow

TOPIC = "e2e-late-alerts"
TOPIC_ARN = f"arn:aws:sns:us-east-1:123456789012:{TOPIC}"
LATE_DATE, EMPTY_DATE = "2026-06-01", "2026-06-02"  # the second has no images: no cluster
DEADLINE_SECONDS = 60
RUN_TIMEOUT = 600


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo.yaml with lateness alerts after one minute (no failure alerts: a held run may fail)."""
    folder = tmp_path_factory.mktemp("pipelines")
    demo = (REPO_ROOT / "include" / "pipelines" / "demo.yaml").read_text()
    alerts = (
        f'alerts:\n  sns_topic_arn: "{TOPIC_ARN}"\n  on_failure: false\n'
        f"  late_after_minutes: {DEADLINE_SECONDS // 60}\n"
    )
    (folder / "demo.yaml").write_text(demo + "\n" + alerts)
    return folder


@pytest.fixture(scope="module")
def inbox(s3_server: LocalS3) -> Iterator[SnsInbox]:
    with sns_inbox(s3_server.endpoint_url, name=TOPIC) as subscribed:
        yield subscribed


@pytest.fixture(scope="module")
def s3_proxy(s3_server: LocalS3) -> Iterator[HoldProxy]:
    """Airflow's AWS endpoint: forwards to moto, and can freeze the late date's publication."""
    with HoldProxy(s3_server.endpoint_url, "PUT", f"/predictions/dt={LATE_DATE}/part-") as proxy:
        yield proxy


@pytest.fixture(scope="module")
def stack(pipelines: Path, s3_proxy: HoldProxy, inbox: SnsInbox) -> Iterator[AirflowStack]:
    extra = {"EMR_INFERENCE_PIPELINES_DIR": str(pipelines)}
    with airflow_stack(REPO_ROOT / "dags", s3_proxy.endpoint_url, extra_env=extra) as running:
        yield running


@pytest.fixture(scope="module")
def seeded(s3_server: LocalS3, tmp_path_factory: pytest.TempPathFactory) -> None:
    seed_demo(s3_server, [LATE_DATE], 20, bad_fraction=0, model_dir=tmp_path_factory.mktemp("m"))


def read_until(
    inbox: SnsInbox, seconds: float, enough: int | None = None
) -> list[tuple[str | None, str]]:
    """The messages delivered within ``seconds`` (sooner once there are ``enough``)."""
    deadline, got = time.monotonic() + seconds, []
    while time.monotonic() < deadline and (enough is None or len(got) < enough):
        got += inbox.read(wait_seconds=1)
    return got


def test_only_the_run_held_past_its_deadline_gets_a_lateness_alert(
    stack: AirflowStack, s3_proxy: HoldProxy, inbox: SnsInbox, seeded: None
):
    """Two runs, one after the other (one minute of waiting for both): one finishes in time, the
    other is held past its deadline; one message comes, for the second."""
    on_time = stack.trigger(DAG_ID, conf={"partition_date": EMPTY_DATE})["dag_run_id"]
    assert stack.wait_for_run(DAG_ID, on_time, DEADLINE_SECONDS)["state"] == "success"
    s3_proxy.arm()
    try:
        run_id = stack.trigger(DAG_ID, conf={"partition_date": LATE_DATE})["dag_run_id"]
        assert s3_proxy.wait_until_held(300), stack.task_states(DAG_ID, run_id)
        # held in publish_results: the deadline passes while the run is running (and the run
        # that finished in time is then past the moment its own would have been missed)
        messages = read_until(inbox, DEADLINE_SECONDS + 90, enough=1)
        messages += read_until(inbox, 15)  # one message, not one per scheduler loop
        assert stack.get_run(DAG_ID, run_id)["state"] == "running"
    finally:
        s3_proxy.release()
    ((subject, message),) = messages
    assert subject == f"{DAG_ID}: a run is late"
    assert f"run {run_id} " in message and on_time not in message
    assert "1 minutes after it was queued" in message and LATE_DATE in message
    # the alert neither failed nor stopped the run: it ends on its own (the held request was
    # dropped, so its publication may have failed), and no second message comes
    stack.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT)
    assert read_until(inbox, 10) == []
