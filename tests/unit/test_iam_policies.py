"""The IAM policies we document cover every AWS API our code calls.

The Airflow-side and job tests that call AWS run again in a subprocess with
:mod:`tests.support.aws_calls` recording each botocore call our packages make (EMR calls through
botocore's Stubber, S3 calls against the moto server); every call, mapped to its IAM action, must
be allowed by ``include/iam/airflow-connection-policy.json`` (Airflow side) or
``include/iam/emr-instance-profile-policy.json`` (the job on the nodes) or
``include/iam/online-predictor-policy.json`` (the online predictor's Lambda role). The README shows
the first and the last file verbatim.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

IAM = REPO_ROOT / "include" / "iam"
POLICIES = {
    "airflow": IAM / "airflow-connection-policy.json",
    "job": IAM / "emr-instance-profile-policy.json",
    "online": IAM / "online-predictor-policy.json",
}
RECORDED_TESTS = [
    "tests/unit/emr_inference/test_emr_operators.py",
    "tests/unit/emr_inference/test_sweeper.py",
    "tests/unit/emr_inference/test_artifacts.py",
    "tests/unit/emr_inference/test_manifest.py",
    "tests/unit/emr_inference/test_publish.py",
    "tests/unit/emr_inference/test_progress.py",
    "tests/unit/emr_inference/test_validate_operator.py",
    "tests/unit/emr_inference/test_dates.py",
    "tests/unit/emr_inference/test_plan.py",
    "tests/unit/batch_inference/test_partition.py",
    "tests/unit/batch_inference/test_manifest.py",
    "tests/unit/batch_inference/test_quantize.py",
    "tests/unit/batch_inference/test_output_and_cli.py",
    "tests/unit/batch_inference/test_online.py",
]
#: S3 operations -> the IAM action that authorises them (s3 has its own action names).
S3_ACTIONS = {
    "ListObjectsV2": ["ListBucket"],
    "ListObjects": ["ListBucket"],
    "HeadBucket": ["ListBucket"],
    "GetObject": ["GetObject"],
    "HeadObject": ["GetObject"],
    "PutObject": ["PutObject"],
    "CreateMultipartUpload": ["PutObject"],
    "UploadPart": ["PutObject"],
    "CompleteMultipartUpload": ["PutObject"],
    "CopyObject": ["GetObject", "PutObject"],
    "DeleteObject": ["DeleteObject"],
    "DeleteObjects": ["DeleteObject"],
    "AbortMultipartUpload": ["AbortMultipartUpload"],
    "ListMultipartUploads": ["ListBucketMultipartUploads"],
}
#: RunJobFlow parameters that need permissions of their own.
RUN_JOB_FLOW_IMPLIES = {
    "Tags": ["elasticmapreduce:AddTags"],
    "AutoTerminationPolicy": ["elasticmapreduce:PutAutoTerminationPolicy"],
    "JobFlowRole": ["iam:PassRole"],
    "ServiceRole": ["iam:PassRole"],
}

pytestmark = pytest.mark.slow


def allowed_actions(path: Path) -> set[str]:
    actions: set[str] = set()
    for statement in json.loads(path.read_text())["Statement"]:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def iam_actions(call: dict) -> list[str]:
    """The IAM actions one recorded call needs."""
    if call["service"] == "s3":
        mapped = S3_ACTIONS.get(call["operation"])
        assert mapped, f"map S3 operation {call['operation']} to its IAM action in S3_ACTIONS"
        return [f"s3:{action}" for action in mapped]
    needed = [f"{call['service']}:{call['operation']}"]
    if call["operation"] == "RunJobFlow":
        for param in call["params"]:
            needed += RUN_JOB_FLOW_IMPLIES.get(param, [])
    return needed


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    calls_file = tmp_path_factory.mktemp("iam") / "calls.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.support.aws_calls",
         "-p", "no:cacheprovider", *RECORDED_TESTS],
        cwd=REPO_ROOT,
        env={**os.environ, "AWS_CALLS_FILE": str(calls_file)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    return [json.loads(line) for line in calls_file.read_text().splitlines()]


@pytest.mark.parametrize("side", ["airflow", "job", "online"])
def test_every_call_is_allowed_by_the_policy(recorded: list[dict], side: str) -> None:
    calls = [call for call in recorded if call["side"] == side]
    needed = {action for call in calls for action in iam_actions(call)}
    missing = needed - allowed_actions(POLICIES[side])
    assert not missing, f"{POLICIES[side].name} lacks {sorted(missing)}"


def test_the_recording_saw_the_whole_cluster_lifecycle(recorded: list[dict]) -> None:
    operations = {call["operation"] for call in recorded if call["side"] == "airflow"}
    lifecycle = {"RunJobFlow", "AddJobFlowSteps", "DescribeStep", "CancelSteps"}
    lifecycle |= {"TerminateJobFlows", "ListClusters", "ListSteps", "PutObject", "GetObject"}
    assert lifecycle <= operations, sorted(lifecycle - operations)
    run_job_flow = next(c for c in recorded if c["operation"] == "RunJobFlow")
    assert {"Tags", "AutoTerminationPolicy"} <= set(run_job_flow["params"])
    job = {call["operation"] for call in recorded if call["side"] == "job"}
    assert {"GetObject", "PutObject"} <= job
    assert {c["operation"] for c in recorded if c["side"] == "online"} == {"GetObject"}


@pytest.mark.parametrize("side", ["airflow", "online"])
def test_the_readme_shows_the_policy_verbatim(side: str) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", readme, flags=re.S)
    assert POLICIES[side].read_text() in blocks
