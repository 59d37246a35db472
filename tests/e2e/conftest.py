"""Fixtures for end-to-end tests: one whole Airflow (see airflow_stack.py) per test module.

A test module picks what the stack runs by overriding the module-scoped fixtures ``dags_folder``
(default: the repository's ``dags/``) and ``airflow_extra_env`` (default: nothing), then uses
``stack``. When a test fails, the tails of the Airflow process logs are added to its report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emr_inference_tools.airflow_env import REPO_ROOT
from emr_inference_tools.local_s3 import LocalS3
from tests.e2e.airflow_stack import AirflowStack, airflow_stack


@pytest.fixture(scope="module")
def dags_folder() -> Path:
    """The DAG folder the module's stack parses."""
    return REPO_ROOT / "dags"


@pytest.fixture(scope="module")
def airflow_extra_env() -> dict[str, str]:
    """Extra environment (Airflow settings) for the module's stack."""
    return {}


@pytest.fixture(scope="module")
def stack(
    dags_folder: Path, airflow_extra_env: dict[str, str], s3_server: LocalS3
) -> Iterator[AirflowStack]:
    """A running Airflow (PostgreSQL, api-server, scheduler, dag-processor, triggerer)."""
    with airflow_stack(dags_folder, s3_server.endpoint_url, extra_env=airflow_extra_env) as running:
        yield running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, AirflowStack):
                report.sections.append(("Airflow process logs", value.log_tails()))
    return report
