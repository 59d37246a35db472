"""The wheelhouse: the bootstrap's pinned wheels for the nodes' CPython and machine, staged once in
S3 (x86_64 and, for Graviton nodes, aarch64).

Downloads the real wheels from the package index (like `make venv`), hence slow.
"""

from __future__ import annotations

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from emr_inference.artifacts import bootstrap_files, sha256_file
from emr_inference.emr import wheelhouse
from emr_inference.operators.artifacts import StageJobArtifactsOperator
from emr_inference.pins import parse_pins, pinned_versions

from tests.unit.emr_inference.pipeline_fixtures import date_request

pytestmark = pytest.mark.slow


def test_stages_the_pinned_node_wheels_once_behind_a_marker(aws_conn, bucket, s3_env, monkeypatch):
    uploads: list[str] = []
    real = S3Hook.load_file
    monkeypatch.setattr(
        S3Hook,
        "load_file",
        lambda self, filename, key, *a, **kw: (
            uploads.append(key) or real(self, filename, key, *a, **kw)
        ),
    )
    request = date_request(
        backend="emr",
        artifacts_uri=f"s3://{bucket}/artifacts/unit/",
        sse={"mode": "none", "kms_key_id": None},
        cluster={"bootstrap_source": "wheelhouse"},
    )
    operator = StageJobArtifactsOperator(task_id="stage_job_artifacts", request=request)
    staged = operator.execute({})

    requirements = bootstrap_files()["bootstrap_requirements"]
    prefix = f"artifacts/unit/wheelhouse/x86_64/{sha256_file(requirements)}/"
    assert staged["wheelhouse"] == f"s3://{bucket}/{prefix}"
    listing = s3_env.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    names = sorted(item["Key"][len(prefix) :] for item in listing["Contents"])
    assert wheelhouse.COMPLETE_MARKER in names
    wheels = [name for name in names if name.endswith(".whl")]
    pinned = pinned_versions(requirements.read_text(), wheelhouse.NODE_PYTHON_VERSION)
    assert len(wheels) == len(pinned)  # every pin, transitive ones included, and nothing else
    # the pin for the nodes' 3.9 (botocore there needs urllib3 < 1.27), not this interpreter's:
    # pip evaluates markers for itself, so the wheelhouse evaluates them for the nodes
    assert [name for name in wheels if name.startswith("urllib3-")] == [
        f"urllib3-{pinned['urllib3']}-py2.py3-none-any.whl"
    ]
    assert pinned["urllib3"].startswith("1.26.")
    pillow = next(name for name in wheels if name.startswith("pillow-"))
    assert "-cp39-" in pillow and "x86_64" in pillow  # the nodes' interpreter, not this one
    assert any(name.startswith("pip-") for name in wheels)  # for nodes without pip

    uploaded = len(uploads)
    assert operator.execute({}) == staged  # staged once: the marker is found
    assert len(uploads) == uploaded  # nothing uploaded again, the wheelhouse included


def test_stages_the_aarch64_wheels_of_the_current_release(aws_conn, bucket, s3_env):
    requirements = bootstrap_files("emr-7.13.0")["bootstrap_requirements"]
    hook = S3Hook(aws_conn_id=aws_conn)
    staged = wheelhouse.stage_wheelhouse(
        hook, requirements, f"s3://{bucket}/artifacts/unit/", "3.11", "aarch64"
    )

    prefix = f"artifacts/unit/wheelhouse/aarch64/{sha256_file(requirements)}/"
    assert staged == f"s3://{bucket}/{prefix}"
    listing = s3_env.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    names = sorted(item["Key"][len(prefix) :] for item in listing["Contents"])
    assert wheelhouse.COMPLETE_MARKER in names
    wheels = [name for name in names if name.endswith(".whl")]
    pins = [p for p in parse_pins(requirements.read_text()) if p.applies_to("3.11", "aarch64")]
    assert len(wheels) == len(pins)  # every pin Graviton nodes install, and nothing else
    assert not any(name.startswith("openvino") for name in wheels)  # x86_64-only pin
    for name in wheels:  # an aarch64 build (cp311 or abi3) or pure Python, never x86_64
        platform = name.removesuffix(".whl").split("-")[-1]
        assert platform == "any" or platform.endswith("aarch64"), name
    onnxruntime = next(name for name in wheels if name.startswith("onnxruntime-"))
    assert "-cp311-" in onnxruntime and onnxruntime.endswith("_aarch64.whl")


def test_a_download_failure_names_the_setting(tmp_path):
    broken = tmp_path / "requirements-emr.txt"
    broken.write_text("no-such-package-xyz==0.0.1 --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises(RuntimeError, match=r"^cluster.bootstrap_source: cannot download"):
        wheelhouse.download_wheels(broken, tmp_path / "wheels")
