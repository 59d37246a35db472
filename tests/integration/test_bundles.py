"""Each deploy bundle in its own shape: unpacked as its service lays it out, on its service's
Python and Airflow (emr_inference_tools/service_venv.py: CPython 3.12, Airflow 3.3.1, the target's
pins; one
cached venv for the targets whose pins agree), with no PYTHONPATH. Every DAG parses with no import
error and no heavy import, Airflow's plugin loader imports none of the bundle's modules, and the
demo DAG runs green from that layout (local backend, moto's S3 server).

The demo runs with ``model.runtime: onnxruntime``: mxnet 1.9.1 cannot run on CPython 3.12 (it needs
numpy < 1.24, which has no 3.12 wheel), so the model is converted first here, where MXNet is, as
``make convert`` does, and the run finds the conversion in the pipeline's cache.

Cost (2 cores): the venv ~70 s once (then cached in build/service-venv/), each target's parse
~3 s and demo run ~40 s: about 2.5 minutes with the venv cached, 3.5 without.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import pyspark
import pytest
import yaml

from emr_inference_tools.airflow_env import aws_connection
from emr_inference_tools.bundle import TARGETS, build_bundle, unpack
from emr_inference_tools.demo.images import demo_objects
from emr_inference_tools.node_twin import NodeTwinError
from emr_inference_tools.service_venv import build_service_venv
from tests.conftest import REPO_ROOT
from tests.integration.conftest import PARTITION_DATE, stage_demo_run

pytestmark = pytest.mark.slow

IMAGES = 12
IN_SERVICE = REPO_ROOT / "tests" / "support" / "in_service.py"
#: Spark for the local backend: this venv's pyspark distribution (the shaped venv has none)
PYSPARK_HOME = Path(pyspark.__file__).parent


@pytest.fixture(scope="session")
def service_python() -> Path:
    """The shaped venv's interpreter (the same for every target: their pins agree)."""
    pythons = set()
    try:
        for target in TARGETS.values():
            pythons.add(build_service_venv(target, log=lambda m: print(f"[venv] {m}")))
    except NodeTwinError as error:
        pytest.fail(f"the shaped venv cannot be built: {error}", pytrace=False)
    (python,) = pythons
    return python


@pytest.fixture(scope="session")
def converted_run(tmp_path_factory, s3_server, digits_model) -> dict:
    """A bucket with the demo images and the digits model, converted to ONNX in its cache by
    ``emr_inference_tools.convert`` here; returns the demo DAG's run conf for it (runtime
    onnxruntime)."""
    from emr_inference_tools.convert import main as convert

    client = s3_server.client()
    bucket = "bundles-demo"
    client.create_bucket(Bucket=bucket)
    conf = stage_demo_run(client, bucket, digits_model, demo_objects(IMAGES, bad_fraction=0))
    conf["model"] = {**conf["model"], "runtime": "onnxruntime"}
    pipeline = yaml.safe_load((REPO_ROOT / "include" / "pipelines" / "demo.yaml").read_text())
    pipeline |= {key: conf[key] for key in ("input_uri", "output_uri", "staging_uri")}
    pipeline |= {"artifacts_uri": conf["artifacts_uri"], "model": conf["model"]}
    path = tmp_path_factory.mktemp("convert") / "demo.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    env = {"AIRFLOW_CONN_AWS_DEFAULT": aws_connection(s3_server.endpoint_url), **s3_server.env}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        assert convert([str(path), "--date", PARTITION_DATE]) == 0
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
    return {"bucket": bucket, "conf": conf}


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory, service_python, s3_server) -> Path:
    """A metadata database migrated once by the shaped venv's Airflow (each test copies it)."""
    home = tmp_path_factory.mktemp("airflow-db")
    env = {**outside_env(), "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    migrate = [str(service_python), "-m", "airflow", "db", "migrate"]
    subprocess.run(migrate, check=True, capture_output=True, env=env, cwd=home, timeout=300)
    return home / "airflow.db"


def outside_env() -> dict[str, str]:
    """This process's environment without what configures Airflow, Python or this package here
    (the test session's Airflow home and folders, PYTHONPATH, Spark's interpreters)."""
    prefixes = ("AIRFLOW", "PYTHON", "PYSPARK", "EMR_INFERENCE")
    return {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}


def service_env(layout, home: Path, python: Path, s3_server) -> dict[str, str]:
    """The service's environment: its folders configured, nothing of this repository on the path,
    the local backend's Spark workers on the shaped venv."""
    return {
        **outside_env(),
        **s3_server.env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(layout.dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(layout.plugins_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(s3_server.endpoint_url),
        "PYSPARK_PYTHON": str(python),
        "PYSPARK_DRIVER_PYTHON": str(python),
        "EMR_INFERENCE_LOCAL_SPARK_HOME": str(PYSPARK_HOME),
    }


def in_service(python: Path, env: dict[str, str], *args: str, timeout: int = 120) -> dict:
    """Run tests/support/in_service.py on the shaped venv from a folder outside the repository."""
    result = subprocess.run(
        [str(python), str(IN_SERVICE), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=env["AIRFLOW_HOME"],
        timeout=timeout,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("IN_SERVICE ")]
    assert result.returncode == 0 and lines, (result.stdout + result.stderr)[-6000:]
    return json.loads(lines[-1].removeprefix("IN_SERVICE "))


@pytest.fixture
def service(request, tmp_path, service_python, s3_server):
    """``(layout, env)``: the bundle of the target named by the test's ``name`` unpacked as its
    service lays it out, and the service's environment over it."""
    target = TARGETS[request.node.callspec.params["name"]]
    layout = unpack(target, build_bundle(target, tmp_path / "bundles"), tmp_path / "service")
    home = tmp_path / "airflow-home"
    home.mkdir()
    return layout, service_env(layout, home, service_python, s3_server)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_dag_of_the_bundle_parses_on_its_services_airflow(name, service, service_python):
    layout, env = service
    parsed = in_service(service_python, env, "parse")
    assert parsed["import_errors"] == {}
    assert {"demo", "cifar10_resnet18", "emr_inference_sweeper"} <= set(parsed["dag_ids"])
    assert parsed["heavy"] == []
    assert parsed["plugin_modules"] == []  # .airflowignore: the loader imported none of ours
    assert parsed["emr_inference"].startswith(str(layout.plugins_folder))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_demo_dag_runs_green_from_the_bundle(
    name, service, service_python, migrated_db, converted_run, s3_server
):
    _, env = service
    shutil.copy(migrated_db, Path(env["AIRFLOW_HOME"]) / "airflow.db")
    bucket = converted_run["bucket"]
    output = f"{name}/predictions/dt={PARTITION_DATE}/"  # each target publishes its own
    conf = {**converted_run["conf"], "output_uri": f"s3://{bucket}/{output}"}
    date = dt.datetime(2026, 11, 23).isoformat()
    ran = in_service(service_python, env, "run", "demo", date, json.dumps(conf), timeout=600)
    assert ran["state"] == "success", ran["states"]
    assert set(ran["states"].values()) == {"success"}, ran["states"]

    client = s3_server.client()
    summary_key = output + "_run_summary.json"
    summary = json.loads(client.get_object(Bucket=bucket, Key=summary_key)["Body"].read())
    assert (summary["rows"], summary["errors"], summary["runtime"]) == (IMAGES, 0, "onnxruntime")
    assert summary["run_id"] == ran["run_id"]
