"""``make plan``'s module (emr_inference_tools/plan.py) against the moto S3 server: lists every
date of the
range without writing, prints the plan; an invalid request exits 2 naming the field."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from emr_inference_tools.airflow_env import aws_connection
from emr_inference_tools.local_s3 import LocalS3
from emr_inference_tools.plan import main
from tests.conftest import REPO_ROOT


@pytest.fixture
def pipeline_file(s3_env: LocalS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo pipeline over buckets of its own: 3 images on 2026-11-20, none on 11-21."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(s3_env.endpoint_url))
    images, output = f"img-{uuid.uuid4().hex[:10]}", f"out-{uuid.uuid4().hex[:10]}"
    client = s3_env.client()
    for bucket in (images, output):
        client.create_bucket(Bucket=bucket)
    for i in range(3):
        client.put_object(Bucket=images, Key=f"images/dt=2026-11-20/{i}.png", Body=b"x" * 10)
    data = yaml.safe_load((REPO_ROOT / "include" / "pipelines" / "demo.yaml").read_text())
    data.update(
        input_uri=f"s3://{images}/images/dt={{{{ partition_date }}}}/",
        output_uri=f"s3://{output}/predictions/dt={{{{ partition_date }}}}/",
        staging_uri=f"s3://{output}/_staging/",
        artifacts_uri=f"s3://{output}/artifacts/",
    )
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_lists_every_date_and_writes_nothing(pipeline_file, s3_env, capsys):
    assert main([str(pipeline_file), "--from", "2026-11-20", "--to", "2026-11-21"]) == 0
    out = capsys.readouterr().out
    assert "Plan of a demo run (local backend), 2 date(s):" in out
    assert "2026-11-20  pending            3              30" in out
    assert "2026-11-21  empty              0               0" in out
    assert "range run" in out and "run per date" in out
    output = yaml.safe_load(pipeline_file.read_text())["output_uri"].split("/")[2]
    assert s3_env.client().list_objects_v2(Bucket=output).get("KeyCount") == 0  # no manifest


def test_an_invalid_request_exits_2_naming_the_field(pipeline_file, capsys):
    code = main([str(pipeline_file), "--from", "2026-11-21", "--to", "2026-11-20"])
    assert code == 2
    assert "date_range: " in capsys.readouterr().err
    assert main([str(pipeline_file), "--from", "2026-11-20", "--conf", '{"batchsize": 2}']) == 2
    assert "did you mean 'batch_size'?" in capsys.readouterr().err


def test_without_a_reachable_s3_it_says_what_to_set_instead_of_a_traceback(
    pipeline_file, monkeypatch, capsys
):
    """docs/OPERATIONS.md's block run in a shell with no connection: no NoCredentialsError
    traceback."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection("http://127.0.0.1:9"))
    assert main([str(pipeline_file), "--from", "2026-11-20"]) == 1
    err = capsys.readouterr().err
    assert "Cannot read the pipeline's input through the Airflow connection 'aws_default'" in err
    assert "Set AIRFLOW_CONN_AWS_DEFAULT" in err
