"""What an IAM policy of include/iam/ allows, for the AWS calls tests/support/aws_calls.py records.

A recorded call needs one or more ``(action, resource)`` pairs (:func:`needs`: S3's own action
names, the bucket's ARN for bucket-level operations and the object's for the others, both sides
of a copy, each key of a batch delete, ``iam:PassRole`` on each role RunJobFlow names), and a
policy allows a pair when one of its statements lists the action and a ``Resource`` pattern that
matches (IAM's ``*`` and ``?``). The policies' placeholders (``IMAGES``, ``PREDICTIONS``,
``MODELS``, ``EMR-LOGS``, ``ACCOUNT``) stand for a deployment's names, given per test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path

#: S3 operations -> the IAM actions that authorise them (s3 has its own action names).
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
#: S3 operations whose resource is the bucket, not an object.
BUCKET_OPERATIONS = {"ListObjectsV2", "ListObjects", "HeadBucket", "ListMultipartUploads"}
#: RunJobFlow parameters that need permissions of their own.
RUN_JOB_FLOW_IMPLIES = {
    "Tags": ["elasticmapreduce:AddTags"],
    "AutoTerminationPolicy": ["elasticmapreduce:PutAutoTerminationPolicy"],
    "JobFlowRole": ["iam:PassRole"],
    "ServiceRole": ["iam:PassRole"],
}
ACCOUNT = "123456789012"


def s3_needs(operation: str, resources: Mapping) -> list[tuple[str, str]]:
    """The ``(s3:action, ARN)`` pairs of one S3 call."""
    mapped = S3_ACTIONS.get(operation)
    assert mapped, f"map S3 operation {operation} to its IAM action in S3_ACTIONS"
    bucket = resources["Bucket"]
    if operation in BUCKET_OPERATIONS:
        return [(f"s3:{mapped[0]}", f"arn:aws:s3:::{bucket}")]
    if operation == "CopyObject":
        source = resources["CopySource"]
        if isinstance(source, Mapping):
            source = f"{source['Bucket']}/{source['Key']}"
        target = f"arn:aws:s3:::{bucket}/{resources['Key']}"
        return [("s3:GetObject", f"arn:aws:s3:::{source}"), ("s3:PutObject", target)]
    keys = resources["Keys"] if operation == "DeleteObjects" else [resources["Key"]]
    return [(f"s3:{action}", f"arn:aws:s3:::{bucket}/{key}") for action in mapped for key in keys]


def needs(call: Mapping) -> list[tuple[str, str]]:
    """The ``(action, resource)`` pairs one recorded call needs (``*``: any resource)."""
    if call["service"] == "s3":
        return s3_needs(call["operation"], call["resources"])
    needed = [(f"{call['service']}:{call['operation']}", "*")]
    if call["operation"] == "RunJobFlow":
        for param in call["params"]:
            for action in RUN_JOB_FLOW_IMPLIES.get(param, []):
                role = call["resources"].get(param)
                needed.append((action, f"arn:aws:iam::{ACCOUNT}:role/{role}" if role else "*"))
    return needed


def statements(path: Path, names: Mapping[str, str] | None = None) -> list[dict]:
    """The policy's statements, its placeholders replaced by ``names`` (``{"IMAGES": bucket}``)."""
    text = path.read_text().replace(":ACCOUNT:", f":{ACCOUNT}:")
    for placeholder, name in (names or {}).items():
        text = text.replace(f":::{placeholder}", f":::{name}")
    found = json.loads(text)["Statement"]
    assert all(statement["Effect"] == "Allow" for statement in found)
    return found


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allowed_actions(path: Path) -> set[str]:
    """Every action the policy allows, on whatever resource."""
    return {action for statement in statements(path) for action in _listed(statement["Action"])}


def allows(policy: list[dict], action: str, resource: str) -> bool:
    """Whether a statement of ``policy`` allows ``action`` on ``resource`` (``*``: the action
    on any resource, as the action-only check asks)."""
    for statement in policy:
        if not any(fnmatchcase(action, listed) for listed in _listed(statement["Action"])):
            continue
        patterns = _listed(statement["Resource"])
        if resource == "*" or any(fnmatchcase(resource, pattern) for pattern in patterns):
            return True
    return False
