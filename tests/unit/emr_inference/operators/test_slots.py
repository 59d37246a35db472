"""wait_for_cluster_slot: a run takes a cluster slot only while fewer than max_active_runs other
runs of the pipeline hold one (a slot is held from the sensor's success to the teardown's end).

The task-instance API (``get_task_states``/``get_dagrun_state``) is a recording stand-in here;
tests/e2e/test_runbook.py runs the sensor in a real Airflow against a backfill."""

from __future__ import annotations

import pytest
from airflow.sdk import DAG
from emr_inference.operators.slots import WaitForClusterSlotSensor, runs_holding_slots

SLOT, RELEASE = "wait_for_cluster_slot", "terminate_cluster"


class TaskInstanceApi:
    """What the sensor asks Airflow: task states by run, and each run's state."""

    def __init__(self, run_id: str, states: dict, run_states: dict) -> None:
        self.run_id = run_id
        self.states = states
        self.run_states = run_states

    def get_task_states(self, dag_id: str, task_ids: list[str]) -> dict:
        assert (dag_id, task_ids) == ("pipe", [SLOT, RELEASE])
        return self.states

    def get_dagrun_state(self, dag_id: str, run_id: str) -> str:
        return self.run_states[run_id]


def poke(max_clusters: int, states: dict, run_states: dict, run_id: str = "me") -> bool:
    with DAG("pipe", schedule=None):
        sensor = WaitForClusterSlotSensor(task_id=SLOT, max_clusters=max_clusters)
    return sensor.poke({"ti": TaskInstanceApi(run_id, states, run_states)})


def test_a_run_holds_its_slot_from_the_sensor_to_the_end_of_the_teardown():
    states = {
        "waiting": {SLOT: "up_for_reschedule", RELEASE: None},
        "creating": {SLOT: "success", RELEASE: None},
        "tearing_down": {SLOT: "success", RELEASE: "running"},
        "retrying_teardown": {SLOT: "success", RELEASE: "up_for_retry"},
        "done": {SLOT: "success", RELEASE: "success"},
        "teardown_failed": {SLOT: "success", RELEASE: "failed"},
        "no_input": {SLOT: "skipped", RELEASE: "skipped"},
        "teardown_skipped": {SLOT: "success", RELEASE: "skipped"},  # no cluster to stop
        "teardown_upstream_failed": {SLOT: "success", RELEASE: "upstream_failed"},
        "teardown_removed": {SLOT: "success", RELEASE: "removed"},
    }
    assert runs_holding_slots(states, SLOT, RELEASE) == [
        "creating",
        "retrying_teardown",
        "tearing_down",
    ]


@pytest.mark.parametrize(
    ("max_clusters", "others", "expected"),
    [(1, 0, True), (1, 1, False), (2, 1, True), (2, 2, False), (3, 2, True)],
)
def test_the_sensor_passes_only_below_the_limit(max_clusters, others, expected):
    states = {f"run{i}": {SLOT: "success", RELEASE: None} for i in range(others)}
    states["me"] = {SLOT: "running", RELEASE: None}
    run_states = {run_id: "running" for run_id in states}
    assert poke(max_clusters, states, run_states) is expected


def test_a_finished_run_holds_no_slot_even_if_its_teardown_never_ran():
    states = {"marked_failed": {SLOT: "success", RELEASE: None}}
    assert poke(1, states, {"marked_failed": "failed"}) is True
    assert poke(1, states, {"marked_failed": "running"}) is False


def test_a_cleared_run_does_not_count_its_own_earlier_slot():
    states = {"me": {SLOT: "success", RELEASE: None}}
    assert poke(1, states, {"me": "running"}) is True


def test_the_sensor_waits_without_holding_a_worker_and_one_at_a_time():
    sensor = WaitForClusterSlotSensor(task_id=SLOT, max_clusters=2)
    assert sensor.mode == "reschedule"
    assert sensor.max_active_tis_per_dag == 1
    assert sensor.timeout == 7 * 24 * 3600
    assert sensor.poke_interval == 60
    # a rescheduled try queued before the last poke's process exits fails: never poke that fast
    assert (
        WaitForClusterSlotSensor(task_id=SLOT, max_clusters=1, poke_interval=2).poke_interval == 30
    )
