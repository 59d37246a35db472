"""pytest plugin: record the AWS API calls that our own code makes (``-p tests.support.aws_calls``).

Every botocore call is attributed to the side whose code is on the calling thread's stack:
``emr_inference`` (the Airflow connection's credentials) or ``batch_inference`` (the EMR nodes'
instance profile); calls made only by test code (fixtures uploading data) are not recorded. One
JSON line per call goes to ``$AWS_CALLS_FILE``: side, IAM service prefix, operation, the
request parameter names (RunJobFlow's tags and auto-termination policy imply more permissions)
and the values of those that name resources (bucket, key, copy source, roles).

:func:`install` records in any process: ``tests/support/record_aws/sitecustomize.py`` calls it in
every Python process started with that folder on ``PYTHONPATH`` and ``$AWS_CALLS_FILE`` set (the
Spark driver and workers of a local cluster).
"""

from __future__ import annotations

import json
import os
import sys
import threading

from botocore.client import BaseClient

SIDES = {"emr_inference": "airflow", "batch_inference": "job"}
#: modules of the online predictor: its calls are the Lambda role's, not the nodes'
ONLINE_MODULES = {"batch_inference.online", "batch_inference.lambda_handler"}
_lock = threading.Lock()


def caller_side() -> str | None:
    """``airflow``, ``job`` or ``online`` (the Lambda's role) when a frame of our packages is on
    the stack, else the side that started this thread (boto3's transfer threads run uploads for
    whoever started them)."""
    frame = sys._getframe(2)
    side = None
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module in ONLINE_MODULES:
            return "online"
        side = side or SIDES.get(module.split(".")[0])
        frame = frame.f_back
    return side or getattr(threading.current_thread(), "_aws_calls_side", None)


def _record_thread_side() -> None:
    """Threads remember the side of the code that started them."""
    original = threading.Thread.start

    def start(self):
        self._aws_calls_side = caller_side()
        return original(self)

    threading.Thread.start = start


#: Request parameters that name what a call acts on (IAM's resources), recorded by value.
RESOURCE_PARAMS = ("Bucket", "Key", "CopySource", "JobFlowRole", "ServiceRole")


def resource_values(api_params: dict) -> dict:
    """The parameters of a call that name its resources; ``DeleteObjects``' keys as ``Keys``."""
    values = {name: api_params[name] for name in RESOURCE_PARAMS if name in api_params}
    if "Delete" in api_params:
        values["Keys"] = [item["Key"] for item in api_params["Delete"]["Objects"]]
    return values


def install(path: str):
    """Record our packages' botocore calls into ``path`` (JSON lines); returns the undo."""
    original = BaseClient._make_api_call
    original_start = threading.Thread.start

    def recording(self, operation_name, api_params):
        side = caller_side()
        if side:
            record = {
                "side": side,
                "service": self.meta.service_model.signing_name,
                "operation": operation_name,
                "params": sorted(api_params),
                "resources": resource_values(api_params),
            }
            with _lock, open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record, default=str) + "\n")
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = recording
    _record_thread_side()

    def undo() -> None:
        BaseClient._make_api_call = original
        threading.Thread.start = original_start

    return undo


def pytest_configure(config) -> None:
    install(os.environ["AWS_CALLS_FILE"])
