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

In a whole ``make test`` session the tests of :data:`RECORDED_TESTS` record as they run
(:class:`SessionRecording`, registered by tests/conftest.py), so tests/unit/test_iam_policies.py
reads their calls instead of running them a second time; run alone, it runs them in a subprocess
with this plugin.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest
from botocore.client import BaseClient

#: The test files whose AWS calls the IAM policy tests check.
RECORDED_TESTS = (
    "tests/unit/emr_inference/emr/test_emr_operators.py",
    "tests/unit/emr_inference/test_sweeper.py",
    "tests/unit/emr_inference/test_artifacts.py",
    "tests/unit/emr_inference/test_manifest.py",
    "tests/unit/emr_inference/test_publish.py",
    "tests/unit/emr_inference/test_progress.py",
    "tests/unit/emr_inference/operators/test_validate_operator.py",
    "tests/unit/emr_inference/test_dates.py",
    "tests/unit/emr_inference/test_plan.py",
    "tests/unit/emr_inference/operators/test_report.py",
    "tests/unit/batch_inference/test_partition.py",
    "tests/unit/batch_inference/test_manifest.py",
    "tests/unit/batch_inference/test_quantize.py",
    "tests/unit/batch_inference/test_output_and_cli.py",
    "tests/unit/batch_inference/test_online.py",
)
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


class SessionRecording:
    """pytest plugin: record the calls of :data:`RECORDED_TESTS` while the session runs them.

    :attr:`calls_file` holds them; :meth:`complete` says whether every file of
    :data:`RECORDED_TESTS` ran every one of its tests collected in this session, recording (a
    session that deselected some, ``-m "not slow"`` or ``-k``, is not complete).
    """

    def __init__(self, calls_file: Path) -> None:
        self.calls_file = calls_file
        self.collected: dict[str, int] = {}
        self.recorded: dict[str, int] = {}

    @staticmethod
    def _file(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]):
        for item in items:
            if (name := self._file(item)) in RECORDED_TESTS:
                self.collected[name] = self.collected.get(name, 0) + 1

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):
        name = self._file(item)
        undo = install(str(self.calls_file)) if name in RECORDED_TESTS else None
        try:
            yield
        finally:
            if undo:
                undo()
                self.recorded[name] = self.recorded.get(name, 0) + 1

    def complete(self) -> bool:
        """Whether the whole of every recorded file ran in this session (so far)."""
        return all(
            self.collected.get(name) and self.recorded.get(name) == self.collected[name]
            for name in RECORDED_TESTS
        )


def pytest_configure(config) -> None:
    install(os.environ["AWS_CALLS_FILE"])
