"""The IAM policies of include/iam/ allow each call on its resource, on a deployment's layout.

tests/unit/test_iam_policies.py checks the actions of every call our code makes; its tests keep
everything in one bucket, so it cannot tell whether a call stays inside the prefixes a policy
grants. Here the demo pipeline runs whole (``dag.test()``, the local backend's Spark cluster, an
int8 run so the job writes its int8 model cache), then the online predictor answers for one of
its images, with the layout of docs/DEPLOYMENT.md ("Buckets, IAM and the connection"): images,
predictions (staging and artifacts in it, the defaults) and models in three buckets. Every
process records its AWS calls (the Spark driver and workers through
tests/support/record_aws/sitecustomize.py), and each call's action and resource (the bucket, the
object, both sides of a copy, each key of a batch delete) must be allowed by its side's policy
with the placeholders set to those buckets.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from emr_inference_tools.demo.images import demo_objects, upload_objects
from emr_inference_tools.demo.models import upload_model
from tests.conftest import REPO_ROOT
from tests.integration.conftest import PARTITION_DATE, task_states
from tests.support import aws_calls
from tests.support.iam import allows, needs, statements

pytestmark = pytest.mark.slow

IAM = REPO_ROOT / "include" / "iam"
POLICIES = {
    "airflow": IAM / "airflow-connection-policy.json",
    "job": IAM / "emr-instance-profile-policy.json",
    "online": IAM / "online-predictor-policy.json",
}
RECORDER = REPO_ROOT / "tests" / "support" / "record_aws"


@pytest.fixture
def buckets(s3_env) -> dict[str, str]:
    """The policies' placeholders -> this test's buckets, created empty."""
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"{role.lower()}-{suffix}" for role in ("IMAGES", "PREDICTIONS", "MODELS")}
    for name in names.values():
        s3_env.client().create_bucket(Bucket=name)
    return names


@pytest.fixture
def calls_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Record this process's calls, and those of every process it starts, into one file."""
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("AWS_CALLS_FILE", str(path))
    path_entries = [str(RECORDER), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, path_entries)))
    undo = aws_calls.install(str(path))
    yield path
    undo()


def run_the_pipeline_and_the_predictor(demo_dag, s3_env, digits_model, buckets) -> None:
    import datetime as dt

    from batch_inference.online import Predictor, build_parser, settings_of

    client = s3_env.client()
    images = f"images/dt={PARTITION_DATE}"
    objects = demo_objects(16, bad_fraction=0)
    upload_objects(client, buckets["IMAGES"], images, objects)
    model = upload_model(client, digits_model, buckets["MODELS"], "digits")
    conf = {
        "partition_date": PARTITION_DATE,
        "input_uri": f"s3://{buckets['IMAGES']}/images/dt={{{{ partition_date }}}}/",
        "output_uri": f"s3://{buckets['PREDICTIONS']}/predictions/dt={{{{ partition_date }}}}/",
        "staging_uri": None,  # the defaults: s3://PREDICTIONS/_staging/ and .../artifacts/
        "artifacts_uri": None,
        "model": model,
        "precision": "int8",
        "int8": {"calibration_images": 16, "agreement_images": 16, "min_agreement": 0.5},
    }
    run = demo_dag.test(logical_date=dt.datetime(2026, 11, 23, tzinfo=dt.UTC), run_conf=conf)
    assert run.state == "success", task_states(run)

    args = build_parser(with_image=False).parse_args(
        ["--model-name", model["name"], "--model-symbol", model["symbol"],
         "--model-params", model["params"], "--model-labels", model["labels"],
         "--input-name", model["input_name"], "--image-size", str(model["image_size"])]
    )  # fmt: skip
    row = Predictor(settings_of(args)).predict_uri(
        f"s3://{buckets['IMAGES']}/{images}/{objects[0].name}"
    )
    assert row["error"] is None, row


def test_every_call_stays_inside_the_resources_its_policy_grants(
    demo_dag, s3_env, digits_model, buckets, calls_file
):
    run_the_pipeline_and_the_predictor(demo_dag, s3_env, digits_model, buckets)
    recorded = [json.loads(line) for line in calls_file.read_text().splitlines()]

    denied = []
    for call in recorded:
        policy = statements(POLICIES[call["side"]], buckets)
        denied += [
            (call["side"], action, resource)
            for action, resource in needs(call)
            if not allows(policy, action, resource)
        ]
    assert not denied, sorted(set(denied))

    # the run exercised what each policy is for, on each side (the job's calls came from the
    # Spark processes: nothing in this process imports the job to make them)
    seen = {(c["side"], a, r.split("/")[0] + "/" + (r.split("/") + [""])[1])
            for c in recorded for a, r in needs(c)}  # fmt: skip
    predictions, images, models = (f"arn:aws:s3:::{buckets[r]}" for r in
                                   ("PREDICTIONS", "IMAGES", "MODELS"))  # fmt: skip
    assert {
        ("airflow", "s3:ListBucket", f"{images}/"),
        ("airflow", "s3:PutObject", f"{predictions}/artifacts"),
        ("airflow", "s3:PutObject", f"{predictions}/predictions"),
        ("airflow", "s3:DeleteObject", f"{predictions}/predictions"),
        ("job", "s3:GetObject", f"{images}/images"),
        ("job", "s3:GetObject", f"{models}/digits"),
        ("job", "s3:PutObject", f"{predictions}/_staging"),
        ("job", "s3:PutObject", f"{predictions}/artifacts"),
        ("online", "s3:GetObject", f"{images}/images"),
        ("online", "s3:GetObject", f"{models}/digits"),
    } <= seen, sorted(seen)


def test_the_check_refuses_a_call_outside_the_granted_prefixes() -> None:
    """The checker can fail: the job may write its staging area and model caches only."""
    names = {"IMAGES": "img", "PREDICTIONS": "pred", "MODELS": "mod"}
    job = statements(POLICIES["job"], names)
    assert allows(job, "s3:PutObject", "arn:aws:s3:::pred/_staging/demo/run/2026-11-22/x")
    assert allows(job, "s3:PutObject", "arn:aws:s3:::pred/artifacts/demo/int8/abc/m.params")
    assert allows(job, "s3:PutObject", "arn:aws:s3:::pred/artifacts/demo/converted/abc/model.onnx")
    assert not allows(job, "s3:PutObject", "arn:aws:s3:::pred/artifacts/demo/wheelhouse/x.whl")
    assert not allows(job, "s3:PutObject", "arn:aws:s3:::pred/predictions/dt=2026-11-22/x")
    assert not allows(job, "s3:PutObject", "arn:aws:s3:::img/images/x.png")
    assert not allows(job, "s3:DeleteObject", "arn:aws:s3:::pred/predictions/_SUCCESS")
    airflow = statements(POLICIES["airflow"], names)
    assert not allows(airflow, "s3:PutObject", "arn:aws:s3:::img/images/x.png")
    assert not allows(airflow, "s3:DeleteObject", "arn:aws:s3:::mod/digits/m.params")
    online = statements(POLICIES["online"], names)
    assert not allows(online, "s3:GetObject", "arn:aws:s3:::pred/predictions/x.jsonl")
