"""The one place that computes the environment of a local Airflow (``make airflow``, e2e tests).

Every Airflow process we start (``airflow standalone``, or api-server, scheduler, dag-processor and
triggerer started one by one by the e2e harness) gets the environment built here, so they all agree
on AIRFLOW_HOME, the DAG and plugin folders, the auth manager and the AWS connection. The AWS
connection ``aws_default`` points at a local S3 endpoint (moto's server, see
:mod:`emr_inference_tools.local_s3`); the same endpoint is exported as ``AWS_ENDPOINT_URL_S3`` so
that plain
boto3 clients and Spark's Python workers reach it too.

The docker-compose setup expresses the same settings in ``docker-compose.yaml`` (x-airflow-common).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emr_inference_tools.local_s3 import DUMMY_CREDENTIALS

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AIRFLOW_HOME = REPO_ROOT / ".airflow"
AWS_CONN_ID = "aws_default"
SIMPLE_AUTH_MANAGER = (
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
ADMIN_USER = "admin"
# What `GET /api/v2/monitor/health` reports on; all "healthy" means the whole Airflow is up.
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
# What DAG files and tasks may import, the same as pytest's ``pythonpath`` in pyproject.toml.
IMPORT_ROOTS = (REPO_ROOT, REPO_ROOT / "plugins", REPO_ROOT / "spark_jobs")


def aws_connection(endpoint_url: str) -> str:
    """The ``aws_default`` connection (Airflow's JSON connection format) for an S3 endpoint."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "password": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "extra": {
                "endpoint_url": endpoint_url,
                "region_name": DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
            },
        }
    )


def airflow_env(
    s3_endpoint_url: str,
    *,
    home: Path = DEFAULT_AIRFLOW_HOME,
    dags_folder: Path = REPO_ROOT / "dags",
    plugins_folder: Path = REPO_ROOT / "plugins",
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The complete environment for a local Airflow process.

    ``base`` (default: this process's environment) is copied without any ``AIRFLOW_*`` /
    ``AIRFLOW__*`` variable, so a caller's own Airflow settings (pytest's isolated home, unit-test
    mode) never leak into the Airflow we start; ``extra`` is applied last and wins.
    """
    base = os.environ if base is None else base
    env = {name: value for name, value in base.items() if not name.startswith("AIRFLOW_")}
    interpreter_bin = str(Path(sys.executable).parent)
    python_path = [str(root) for root in IMPORT_ROOTS]
    if env.get("PYTHONPATH"):
        python_path.append(env["PYTHONPATH"])
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}": aws_connection(s3_endpoint_url),
            **DUMMY_CREDENTIALS,
            "AWS_ENDPOINT_URL_S3": s3_endpoint_url,
            # `airflow`, `spark-submit` and Spark's Python workers all come from this interpreter.
            "PATH": os.pathsep.join([interpreter_bin, env.get("PATH", os.defpath)]),
            "PYTHONPATH": os.pathsep.join(python_path),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
    )
    env.update(extra or {})
    return env


def simple_auth_passwords_file(home: Path) -> Path:
    """Where the simple auth manager keeps (and ``airflow standalone`` generates) passwords."""
    return home / "simple_auth_manager_passwords.json.generated"


def is_healthy(health: Mapping[str, Any]) -> bool:
    """Whether a ``/api/v2/monitor/health`` answer reports every component healthy."""
    return all((health.get(part) or {}).get("status") == "healthy" for part in HEALTH_COMPONENTS)
