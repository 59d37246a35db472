"""The backend registry: a backend is one package plus one line in ``backends.REGISTERED``.

A third backend that only the tests know (tests/support/fake_backend.py) is registered, and the
pipeline check, the DAG factory, the plan, the artifacts task and the sweeper all use it with no
other change; an unknown name is an error that lists the known ones.
"""

from __future__ import annotations

import pytest
from emr_inference import backends
from emr_inference.backends import UnknownBackendError, backend_named
from emr_inference.config import ConfigError
from emr_inference.factory import build_dag
from emr_inference.operators.artifacts import StageJobArtifactsOperator
from emr_inference.operators.sweeper import SweepClustersOperator
from emr_inference.plan import cluster_shape, format_plan, plan_run
from emr_inference.sweeper_dag import build_sweeper_dag

from tests.support import fake_backend
from tests.unit.emr_inference.pipeline_fixtures import date_request, pipeline, resolved_request
from tests.unit.emr_inference.test_sweeper import FakeTI


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> fake_backend.FakeBackend:
    """The fake backend, registered for the test (and its clusters emptied)."""
    registered = {**backends.REGISTERED, "fake": "tests.support.fake_backend"}
    monkeypatch.setattr(backends, "REGISTERED", registered)
    fake_backend.BACKEND.clusters.clear()
    return fake_backend.BACKEND


def test_the_registered_backends_are_the_shipped_ones():
    assert {name: backend_named(name).name for name in backends.REGISTERED} == {
        "emr": "emr",
        "local": "local",
    }


def test_an_unknown_backend_names_the_known_ones():
    with pytest.raises(UnknownBackendError, match=r"unknown backend 'k8s' \(known: emr, local\)"):
        backend_named("k8s")
    with pytest.raises(ConfigError, match="backend: .*unknown backend 'k8s'"):
        pipeline(backend="k8s")


def test_a_registered_backend_gets_its_own_cluster_tasks(fake):
    dag = build_dag(pipeline(backend="fake"))
    classes = {
        task_id: type(dag.get_task(task_id)).__name__
        for task_id in (
            "create_cluster",
            "date.submit_inference_step",
            "date.wait_for_inference_step",
            "terminate_cluster",
        )
    }
    assert classes == {
        "create_cluster": "FakeCreate",
        "date.submit_inference_step": "FakeSubmit",
        "date.wait_for_inference_step": "FakeWait",
        "terminate_cluster": "FakeTerminate",
    }
    assert "fake" in dag.tags


def test_a_registered_backend_checks_the_pipeline_and_the_run(fake):
    with pytest.raises(ConfigError, match="unit.yaml: batch_size: the fake backend takes at most"):
        pipeline(backend="fake", batch_size=128)
    assert resolved_request(backend="fake", batch_size=64).backend == "fake"


def test_a_registered_backend_prices_the_plan(fake):
    request = resolved_request(backend="fake")
    assert cluster_shape(request).hourly_usd == 3.0
    manifest = {"status": "pending", "total": 800, "bytes": None}
    plan = plan_run(request, [{"request": request.as_json(), "manifest": manifest}])
    assert plan.images_per_second == pytest.approx(8 * request.estimate.images_per_task_second)
    assert plan.as_xcom()["price_source"] == "fake price list"
    assert "$3.00/h (fake price list)" in format_plan(plan)


def test_the_sweeper_sweeps_a_registered_backend(fake):
    configs = [pipeline(backend="fake", pipeline="one"), pipeline(backend="local", pipeline="two")]
    targets = build_sweeper_dag(configs).get_task("sweep_clusters").targets
    assert targets == [
        {"backend": "fake", "pipelines": ["one"]},
        {"backend": "local", "state_dir": ""},
    ]
    fake.clusters.update({"f-1": ("one", "done"), "f-2": ("one", "live"), "f-3": ("other", "x")})
    sweeper = SweepClustersOperator(task_id="sweep_clusters", targets=targets[:1])
    runs = {("one", "done"): "success", ("one", "live"): "running", ("other", "x"): "failed"}

    stopped = sweeper.execute({"params": {"dry_run": False}, "ti": FakeTI(runs)})

    assert [item["cluster_id"] for item in stopped] == ["f-1"]
    assert sorted(fake.clusters) == ["f-2", "f-3"]  # running, and not one of ours


def test_a_registered_backend_stages_its_own_artifacts(fake, aws_conn: str, bucket: str):
    artifacts_uri = f"s3://{bucket}/artifacts/unit/"
    request = date_request(backend="fake", artifacts_uri=artifacts_uri)
    staged = StageJobArtifactsOperator(task_id="stage_job_artifacts", request=request).execute({})
    assert staged["fake_extra"] == artifacts_uri + "fake/"
    assert staged["job_zip"].startswith(artifacts_uri)  # the job's own files as for any backend
