"""stage_job_artifacts: content-addressed uploads; an unchanged artifact is not put again."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from emr_inference import artifacts
from emr_inference.operators.artifacts import StageJobArtifactsOperator

from tests.unit.emr_inference.pipeline_fixtures import date_request


def _get(s3_env, uri: str) -> dict:
    bucket, key = uri[len("s3://") :].split("/", 1)
    return s3_env.client().get_object(Bucket=bucket, Key=key)


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every S3Hook.load_file call (the real upload still happens)."""
    calls: list[str] = []
    real = S3Hook.load_file

    def load_file(self, filename, key, bucket_name=None, **kwargs):
        calls.append(key)
        return real(self, filename, key, bucket_name, **kwargs)

    monkeypatch.setattr(S3Hook, "load_file", load_file)
    return calls


def test_stages_every_artifact_content_addressed_once(
    aws_conn: str, bucket: str, s3_env, uploads: list[str]
) -> None:
    request = date_request(
        backend="local",
        artifacts_uri=f"s3://{bucket}/artifacts/demo/",
        sse={"mode": "AES256", "kms_key_id": None},
    )
    operator = StageJobArtifactsOperator(task_id="stage_job_artifacts", request=request)
    staged = operator.execute({})

    assert set(staged) == {"job_zip", "entry_point", "bootstrap", "bootstrap_requirements"}
    names = {
        "job_zip": "batch_inference.zip",
        "entry_point": "main.py",
        "bootstrap": "install_job_deps.sh",
        "bootstrap_requirements": "requirements-emr.txt",
    }
    for name, uri in staged.items():
        obj = _get(s3_env, uri)
        body = obj["Body"].read()
        digest = hashlib.sha256(body).hexdigest()
        assert uri == f"s3://{bucket}/artifacts/demo/{digest}/{names[name]}"
        assert obj["ServerSideEncryption"] == "AES256"
    entry_point = _get(s3_env, staged["entry_point"])["Body"].read()
    assert entry_point == artifacts.import_job_package().ENTRY_POINT.read_bytes()
    archive = zipfile.ZipFile(io.BytesIO(_get(s3_env, staged["job_zip"])["Body"].read()))
    assert "batch_inference/job.py" in archive.namelist()
    assert len(uploads) == 4

    # A second run with the same sources puts nothing and returns the same URIs.
    assert operator.execute({}) == staged
    assert len(uploads) == 4


def test_a_changed_file_gets_a_new_key(
    aws_conn: str, bucket: str, tmp_path, uploads: list[str]
) -> None:
    hook = S3Hook(aws_conn_id=aws_conn)
    path = tmp_path / "install_job_deps.sh"
    path.write_text("echo one\n")
    first = artifacts.stage_artifacts(hook, {"bootstrap": path}, f"s3://{bucket}/a/")
    path.write_text("echo two\n")
    second = artifacts.stage_artifacts(hook, {"bootstrap": path}, f"s3://{bucket}/a/")
    assert first["bootstrap"] != second["bootstrap"]
    assert len(uploads) == 2


def test_rejects_a_bad_artifacts_uri(aws_conn: str, tmp_path) -> None:
    with pytest.raises(ValueError, match="artifacts_uri: .* must be a prefix"):
        artifacts.stage_artifacts(S3Hook(aws_conn_id=aws_conn), {}, "s3://bucket/artifacts")


def test_the_bootstrap_pins_are_the_releases(aws_conn: str, bucket: str, s3_env) -> None:
    """emr-7.13.0's nodes get their own pins (Python 3.11, onnxruntime): a cluster of that release
    bootstrapped with emr-7.2.0's would have no runtime."""
    request = date_request(
        backend="local",
        artifacts_uri=f"s3://{bucket}/artifacts/onnx/",
        cluster={"release_label": "emr-7.13.0"},
        model={"runtime": "onnxruntime"},
    )
    staged = StageJobArtifactsOperator(task_id="stage_job_artifacts", request=request).execute({})
    assert staged["bootstrap_requirements"].endswith("/requirements-emr-7.13.0.txt")
    body = _get(s3_env, staged["bootstrap_requirements"])["Body"].read().decode()
    pinned = [line.split("==")[0] for line in body.splitlines() if "==" in line and line[0] != "#"]
    assert "onnxruntime" in pinned and "mxnet" not in pinned
