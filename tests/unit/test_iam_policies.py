"""The IAM policies we document cover every AWS API our code calls.

The Airflow-side and job tests that call AWS run again in a subprocess with
:mod:`tests.support.aws_calls` recording each botocore call our packages make (EMR calls through
botocore's Stubber, S3 calls against the moto server); every call, mapped to its IAM actions
(and, for ``iam:PassRole``, the roles it passes: tests/support/iam.py), must be allowed by
``include/iam/airflow-connection-policy.json`` (Airflow side) or
``include/iam/emr-instance-profile-policy.json`` (the job on the nodes) or
``include/iam/online-predictor-policy.json`` (the online predictor's Lambda role).
docs/DEPLOYMENT.md shows the first and the last file verbatim. The S3 resources are checked on a
deployment's bucket layout by tests/integration/test_iam_resources.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.support import runbook
from tests.support.aws_calls import RECORDED_TESTS
from tests.support.iam import ACCOUNT, allows, needs, statements

IAM = REPO_ROOT / "include" / "iam"
POLICIES = {
    "airflow": IAM / "airflow-connection-policy.json",
    "job": IAM / "emr-instance-profile-policy.json",
    "online": IAM / "online-predictor-policy.json",
}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recorded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> list[dict]:
    """The recorded tests' calls: this session's, when it ran them all (``make test``), else
    from running them again in a subprocess."""
    session = request.config.pluginmanager.get_plugin("aws_session_recording")
    if session is not None and session.complete():
        return [json.loads(line) for line in session.calls_file.read_text().splitlines()]
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
    """Each call's actions; the roles RunJobFlow passes as resources too. The S3 calls' buckets
    here are the tests' own (one bucket for everything): their resources are checked against
    a deployment's layout by tests/integration/test_iam_resources.py."""
    policy = statements(POLICIES[side])
    missing = set()
    for call in (call for call in recorded if call["side"] == side):
        for action, resource in needs(call):
            # the tests' buckets and topics are their own: checked by action here
            checked = "*" if call["service"] in ("s3", "sns") else resource
            if not allows(policy, action, checked):
                missing.add((action, checked))
    assert not missing, f"{POLICIES[side].name} lacks {sorted(missing)}"


def test_run_job_flow_passes_only_the_roles_the_policy_names(recorded: list[dict]) -> None:
    policy = statements(POLICIES["airflow"])
    passed = [
        pair
        for call in recorded
        if call["operation"] == "RunJobFlow"
        for pair in needs(call)
        if pair[0] == "iam:PassRole"
    ]
    assert {role for _, role in passed} == {
        f"arn:aws:iam::{ACCOUNT}:role/EMR_DefaultRole",
        f"arn:aws:iam::{ACCOUNT}:role/EMR_EC2_DefaultRole",
    }
    assert all(allows(policy, action, role) for action, role in passed)
    assert not allows(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/AdminRole")


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
    assert "Publish" in operations  # report_dates' alerts


@pytest.mark.parametrize("side", ["airflow", "online"])
def test_the_deployment_doc_shows_the_policy_verbatim(side: str) -> None:
    text = runbook.docs_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    assert POLICIES[side].read_text() in blocks
