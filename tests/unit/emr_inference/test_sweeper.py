"""The sweeper: the pure decision, then the EMR side against moto's EMR and botocore's Stubber.

The local side runs against real local Spark clusters in tests/integration/test_local_guards.py.
"""

from __future__ import annotations

import boto3
import pytest
from airflow.sdk.exceptions import AirflowException
from botocore.stub import Stubber
from emr_inference.emr.backend import emr_clusters
from emr_inference.operators.sweeper import SweepClustersOperator, dagrun_state
from emr_inference.sweeper import ClusterRecord, decide, run_states
from moto import mock_aws

from tests.support.moto_aws import REGION, use_moto_credentials


def record(cluster_id: str, dag_id: str | None = "demo", run_id: str | None = "r1", alive=True):
    return ClusterRecord("emr", cluster_id, dag_id, run_id, alive)


@pytest.mark.parametrize(
    ("cluster", "state", "stop", "reason"),
    [
        (record("j-1"), "running", False, "its run 'r1' is running"),
        (record("j-1"), "queued", False, "its run 'r1' is queued"),
        (record("j-1"), "success", True, "its run 'r1' is success"),
        (record("j-1"), "failed", True, "its run 'r1' is failed"),
        (record("j-1"), None, True, "its run 'r1' is unknown to Airflow"),
        (record("j-1", dag_id=None, run_id=None), "failed", False, "names no DAG run"),
        (record("j-1", dag_id="someone_else"), "failed", False, "is not one of ours"),
        (record("j-1", alive=False), "failed", False, "already stopped"),
    ],
)
def test_decide(cluster, state, stop, reason):
    (verdict,) = decide([cluster], {("demo", "r1"): state} if state else {}, ["demo"])
    assert verdict.stop is stop
    assert reason in verdict.reason


def test_decide_without_a_pipeline_list_accepts_any_dag_id():
    (verdict,) = decide([record("local-1", dag_id="any")], {("any", "r1"): "success"})
    assert verdict.stop


def test_run_states_looks_each_run_up_once_and_only_for_alive_clusters():
    asked = []

    def lookup(dag_id, run_id):
        asked.append((dag_id, run_id))
        return "running"

    clusters = [record("j-1"), record("j-2"), record("j-3", run_id="r2", alive=False)]
    assert run_states(clusters, lookup) == {("demo", "r1"): "running"}
    assert asked == [("demo", "r1")]


class FakeTI:
    """The two Task SDK calls the sweeper makes, answered from ``{(dag_id, run_id): state}``."""

    def __init__(self, runs: dict[tuple[str, str], str]) -> None:
        self.runs = runs

    def get_dr_count(self, dag_id, run_ids):
        return sum((dag_id, run_id) in self.runs for run_id in run_ids)

    def get_dagrun_state(self, dag_id, run_id):
        return self.runs[(dag_id, run_id)]


def test_dagrun_state_is_none_for_an_unknown_run():
    ti = FakeTI({("demo", "r1"): "success"})
    assert dagrun_state(ti, "demo", "r1") == "success"
    assert dagrun_state(ti, "demo", "r2") is None


@pytest.fixture
def emr(monkeypatch):
    use_moto_credentials(monkeypatch)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", '{"conn_type": "aws"}')
    with mock_aws():
        yield boto3.client("emr", region_name=REGION)


def run_cluster(client, name: str, tags: dict[str, str]) -> str:
    return client.run_job_flow(
        Name=name,
        ReleaseLabel="emr-7.2.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                   "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
        Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
    )["JobFlowId"]  # fmt: skip


def tags(dag_id: str, run_id: str) -> dict[str, str]:
    return {"dag_id": dag_id, "run_id": run_id, "pipeline": dag_id, "cost-center": "ml"}


def sweep(dry_run: bool, runs: dict[tuple[str, str], str]) -> list[dict]:
    target = {"backend": "emr", "conn_id": "aws_default", "pipelines": ["cifar", "demo"]}
    operator = SweepClustersOperator(task_id="sweep_clusters", targets=[target])
    return operator.execute({"params": {"dry_run": dry_run}, "ti": FakeTI(runs)})


def test_sweeper_stops_only_our_clusters_whose_run_is_over(emr, capsys):
    ids = {
        "finished": run_cluster(emr, "cifar f", tags("cifar", "finished")),
        "failed": run_cluster(emr, "cifar x", tags("cifar", "failed")),
        "unknown": run_cluster(emr, "cifar u", tags("cifar", "deleted-run")),
        "running": run_cluster(emr, "cifar r", tags("cifar", "running")),
        "untagged": run_cluster(emr, "someone's", {}),
        "partly": run_cluster(emr, "partly", {"dag_id": "cifar", "run_id": "finished"}),
        "foreign": run_cluster(emr, "other team", tags("their_dag", "finished")),
    }
    runs = {("cifar", "finished"): "success", ("cifar", "failed"): "failed",
            ("cifar", "running"): "running", ("their_dag", "finished"): "success"}  # fmt: skip

    planned = sweep(True, runs)  # dry run: logs, stops nothing

    to_stop = {ids["finished"], ids["failed"], ids["unknown"]}
    assert {item["cluster_id"] for item in planned} == to_stop
    assert all(item["dry_run"] for item in planned)
    assert {c["Status"]["State"] for c in emr.list_clusters()["Clusters"]} == {"WAITING"}
    assert "Dry run: would stop emr cluster" in capsys.readouterr().out

    stopped = sweep(False, runs)

    assert {item["cluster_id"]: item["reason"] for item in stopped} == {
        ids["finished"]: "its run 'finished' is success",
        ids["failed"]: "its run 'failed' is failed",
        ids["unknown"]: "its run 'deleted-run' is unknown to Airflow",
    }
    states = {c["Id"]: c["Status"]["State"] for c in emr.list_clusters()["Clusters"]}
    assert {cid for cid, state in states.items() if state != "WAITING"} == to_stop
    assert sweep(False, runs) == []  # nothing left to stop: a second sweep is a no-op


def test_emr_clusters_reads_the_run_tags(emr):
    cluster_id = run_cluster(emr, "cifar f", tags("cifar", "r9"))
    other = run_cluster(emr, "mismatch", {"dag_id": "a", "run_id": "r", "pipeline": "b"})
    records = {r.cluster_id: r for r in emr_clusters(emr)}
    assert records[cluster_id].run == ("cifar", "r9")
    assert records[other].run is None  # pipeline tag differs from dag_id: not ours


def test_one_cluster_that_cannot_be_stopped_does_not_spare_the_others(emr, monkeypatch):
    """TerminateJobFlows fails for the first cluster (Stubber); the second is still stopped and
    the task then fails, so the failure is visible and the next sweep tries again."""
    summary = {"Id": "j-1", "Name": "a", "Status": {"State": "WAITING"},
               "NormalizedInstanceHours": 0}  # fmt: skip
    client = boto3.client("emr", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_response("list_clusters", {"Clusters": [summary, {**summary, "Id": "j-2"}]})
    run_tags = [{"Key": k, "Value": v} for k, v in tags("cifar", "done").items()]
    for cluster_id in ("j-1", "j-2"):
        cluster = {"Id": cluster_id, "Name": "a", "Status": {"State": "WAITING"}, "Tags": run_tags}
        stubber.add_response("describe_cluster", {"Cluster": cluster}, {"ClusterId": cluster_id})
    stubber.add_client_error("terminate_job_flows", "InternalServerError", http_status_code=500)
    stubber.add_response("terminate_job_flows", {}, {"JobFlowIds": ["j-2"]})
    stubber.activate()

    class Hook:
        def __init__(self, **_):
            self.conn = client

    monkeypatch.setattr("airflow.providers.amazon.aws.hooks.emr.EmrHook", Hook)
    with pytest.raises(AirflowException, match="Could not stop: j-1"):
        sweep(False, {("cifar", "done"): "failed"})
    stubber.assert_no_pending_responses()


def test_sweeper_dag_sweeps_the_backends_the_pipelines_use():
    from emr_inference.factory import load_pipelines
    from emr_inference.sweeper_dag import DAG_ID, build_sweeper_dag

    from tests.conftest import REPO_ROOT

    configs = load_pipelines(REPO_ROOT / "include" / "pipelines").configs.values()
    dag = build_sweeper_dag(config for config, _ in configs)
    task = dag.get_task("sweep_clusters")
    assert dag.dag_id == DAG_ID
    assert dag.schedule == "*/15 * * * *" and dag.max_active_runs == 1
    assert dag.params["dry_run"] is False
    emr_pipelines = ["cifar10_resnet18", "cifar10_resnet18_onnx"]
    assert task.targets == [
        {"backend": "emr", "conn_id": "aws_default", "pipelines": emr_pipelines},
        {"backend": "local", "state_dir": ""},  # demo is local: swept from the state dir
    ]


def test_clusters_past_the_first_page_of_list_clusters_are_swept(emr):
    """ListClusters answers 50 clusters a page: the 60th is ours and its run is over."""
    ids = [run_cluster(emr, f"other {n}", {}) for n in range(59)]
    ids.append(run_cluster(emr, "cifar last", tags("cifar", "finished")))
    assert len(emr.list_clusters()["Clusters"]) == 50  # one page is not all of them
    assert {r.cluster_id for r in emr_clusters(emr)} == set(ids)
    stopped = sweep(False, {("cifar", "finished"): "success"})
    assert [item["cluster_id"] for item in stopped] == [ids[-1]]
