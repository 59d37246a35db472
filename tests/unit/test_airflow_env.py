"""The environment of a local Airflow (emr_inference_tools/airflow_env.py) and `make airflow`'s
settings."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from emr_inference_tools.airflow_env import (
    AWS_CONN_ID,
    IMPORT_ROOTS,
    REPO_ROOT,
    airflow_env,
    aws_connection,
    is_healthy,
    simple_auth_passwords_file,
)
from emr_inference_tools.demo.run_airflow import (
    banner,
    parse_args,
    seeded_dates,
    standalone_settings,
)
from tests.support import runbook

ENDPOINT = "http://127.0.0.1:9999"


def test_callers_airflow_settings_do_not_leak_but_the_rest_of_the_environment_does(tmp_path):
    base = {
        "AIRFLOW_HOME": "/somewhere/else",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW_CONN_OTHER": "postgres://x",
        "HOME": "/root",
        "PATH": "/usr/bin",
        "PYTHONPATH": "/extra",
    }

    env = airflow_env(ENDPOINT, home=tmp_path, base=base)

    assert env["AIRFLOW_HOME"] == str(tmp_path)
    assert "AIRFLOW__CORE__UNIT_TEST_MODE" not in env
    assert "AIRFLOW_CONN_OTHER" not in env
    assert env["HOME"] == "/root"
    assert env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin"]
    assert env["PYTHONPATH"].split(os.pathsep) == [*map(str, IMPORT_ROOTS), "/extra"]


def test_folders_auth_and_spark_interpreter(tmp_path):
    env = airflow_env(ENDPOINT, home=tmp_path, dags_folder=tmp_path / "dags", base={})

    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(tmp_path / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(REPO_ROOT / "plugins")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == sys.executable


def test_aws_connection_is_what_the_amazon_provider_reads_as_the_local_endpoint():
    from airflow.models.connection import Connection
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

    env = airflow_env(ENDPOINT, base={})
    connection = Connection.from_json(
        env[f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}"], conn_id=AWS_CONN_ID
    )
    wrapper = AwsConnectionWrapper(connection)

    assert wrapper.endpoint_url == ENDPOINT
    assert wrapper.region_name == env["AWS_DEFAULT_REGION"]
    assert (connection.login, connection.password) == (
        env["AWS_ACCESS_KEY_ID"],
        env["AWS_SECRET_ACCESS_KEY"],
    )
    # Plain boto3 clients (the Spark job) reach the same endpoint.
    assert env["AWS_ENDPOINT_URL_S3"] == ENDPOINT


def test_extra_settings_win(tmp_path):
    env = airflow_env(ENDPOINT, extra={"AIRFLOW__CORE__LOAD_EXAMPLES": "True"}, base={})

    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "True"


def test_health_needs_every_component():
    healthy = {"status": "healthy"}
    everything = {
        "metadatabase": healthy,
        "scheduler": healthy,
        "triggerer": healthy,
        "dag_processor": healthy,
    }

    assert is_healthy(everything)
    assert not is_healthy({**everything, "triggerer": {"status": "unhealthy"}})
    assert not is_healthy({**everything, "dag_processor": None})


def test_make_airflow_defaults_and_overrides(monkeypatch):
    monkeypatch.delenv("DEMO_S3_PORT", raising=False)
    assert parse_args([]).s3_port == 9090
    monkeypatch.setenv("DEMO_S3_PORT", "9191")
    assert parse_args([]).s3_port == 9191
    assert parse_args(["--s3-port", "9292", "--port", "8181"]).port == 8181


DATES = ["2026-11-20", "2026-11-21", "2026-11-22"]


def test_make_airflow_points_tasks_at_its_own_api_server_and_says_where_things_are(tmp_path):
    settings = standalone_settings(8181)
    password_file = simple_auth_passwords_file(tmp_path)

    text = banner(settings["AIRFLOW__API__BASE_URL"], ENDPOINT, password_file, DATES)

    assert settings["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8181/execution/"
    assert "http://127.0.0.1:8181/auth/token" in text
    assert "http://127.0.0.1:8181/api/v2/dags/demo/dagRuns" in text
    assert str(password_file) in text
    assert ENDPOINT in text
    assert '"partition_date": "2026-11-22"' in text  # the example trigger names seeded data


def test_the_banner_and_the_readme_export_the_demo_connection_make_plan_reads(tmp_path):
    """make plan, run in another terminal than make airflow, reads S3 through aws_default: the
    banner prints the export line, and docs/OPERATIONS.md's is the one it prints by default."""
    from emr_inference_tools.demo.run_airflow import DEFAULT_S3_PORT

    default = f"http://127.0.0.1:{DEFAULT_S3_PORT}"
    line = f"export AIRFLOW_CONN_AWS_DEFAULT='{aws_connection(default)}'"
    text = banner("http://127.0.0.1:8080", default, simple_auth_passwords_file(tmp_path), DATES)
    assert line in text
    assert line in runbook.docs_text()


def test_make_airflow_seeds_the_days_a_nightly_run_and_a_short_backfill_read():
    assert seeded_dates(3, today=dt.date(2026, 11, 23)) == DATES
    assert parse_args([]).seed_days == 3
