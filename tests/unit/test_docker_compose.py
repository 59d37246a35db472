"""Static checks of docker-compose.yaml and docker/Dockerfile (no Docker engine needed).

They catch what breaks a compose setup silently: a missing service, a mount or build path that does
not exist, an undocumented ``${VAR}``, a port published twice, a dependency on an unknown service,
and drift between the image and the pins the tests run with.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from emr_inference_tools.airflow_env import AWS_CONN_ID, IMPORT_ROOTS, REPO_ROOT, aws_connection

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
AIRFLOW_HOME_IN_IMAGE = Path("/opt/airflow")
AIRFLOW_COMMANDS = {
    "airflow-api-server": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
REQUIRED_SERVICES = {"postgres", "s3", "airflow-init", *AIRFLOW_COMMANDS}
MOUNTED_FOLDERS = ("dags", "plugins", "spark_jobs", "include")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ...; `$${...}` is an escaped `$`.
VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<modifier>:?[-?+][^}]*)?\}")


def _pin(requirements: Path, package: str) -> str:
    match = re.search(
        rf"^{re.escape(package)}(\[[^\]]*\])?==(?P<version>\S+)", requirements.read_text(), re.M
    )
    assert match, f"{package} is not pinned in {requirements.name}"
    return match["version"]


def _with_defaults(text: str) -> str:
    """Substitute ``${NAME:-default}`` by its default, as compose does when NAME is unset."""
    return VARIABLE.sub(lambda m: (m["modifier"] or "").lstrip(":")[1:], text)


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in logical.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow_env_vars(services: dict[str, dict]) -> dict[str, str]:
    return services["airflow-scheduler"]["environment"]


def test_compose_defines_every_service_of_the_design(services: dict[str, dict]):
    assert services.keys() >= REQUIRED_SERVICES


def test_airflow_services_share_one_definition_and_run_their_component(
    compose: dict, services: dict[str, dict]
):
    common = compose["x-airflow-common"]
    for name, command in AIRFLOW_COMMANDS.items():
        service = services[name]
        assert service["command"] == command, name
        for key in ("build", "image", "environment", "volumes", "user"):
            assert service[key] == common[key], f"{name}.{key} differs from x-airflow-common"
    init_command = " ".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init_command
    assert f"airflow connections get {AWS_CONN_ID}" in init_command
    assert services["airflow-init"]["environment"] == common["environment"]


def test_airflow_runs_production_shaped(airflow_env_vars: dict[str, str], services: dict):
    assert airflow_env_vars["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    database = urlsplit(airflow_env_vars["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    postgres_env = services["postgres"]["environment"]
    assert database.scheme == "postgresql+psycopg2"
    assert database.hostname == "postgres"
    assert (database.username, database.password, database.path.lstrip("/")) == (
        postgres_env["POSTGRES_USER"],
        postgres_env["POSTGRES_PASSWORD"],
        postgres_env["POSTGRES_DB"],
    )
    execution_api = urlsplit(airflow_env_vars["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution_api.hostname == "airflow-api-server"
    assert f"{execution_api.port}" in services["airflow-api-server"]["ports"][0].split(":")[-1]
    assert airflow_env_vars["AIRFLOW__API_AUTH__JWT_SECRET"], "components must share a JWT secret"


def test_aws_connection_points_at_the_s3_service(airflow_env_vars: dict, services: dict):
    container_port = _with_defaults(services["s3"]["ports"][0]).split(":")[-1]
    endpoint = f"http://s3:{container_port}"
    connection = json.loads(airflow_env_vars[f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}"])
    # The same connection emr_inference_tools/airflow_env.py gives a process-based local Airflow.
    assert connection == json.loads(aws_connection(endpoint))
    assert airflow_env_vars["AWS_ENDPOINT_URL_S3"] == endpoint


def test_project_folders_are_mounted_and_importable_like_in_tests(compose: dict):
    common = compose["x-airflow-common"]
    mounts = dict(volume.split(":", 1) for volume in common["volumes"])
    assert mounts == {f"./{name}": str(AIRFLOW_HOME_IN_IMAGE / name) for name in MOUNTED_FOLDERS}
    python_path = common["environment"]["PYTHONPATH"].split(":")
    assert [Path(entry).relative_to(AIRFLOW_HOME_IN_IMAGE) for entry in python_path] == [
        root.relative_to(REPO_ROOT) for root in IMPORT_ROOTS
    ]


def test_every_referenced_file_exists(services: dict[str, dict]):
    for name, service in services.items():
        if build := service.get("build"):
            context = REPO_ROOT / build["context"]
            assert context.is_dir(), f"{name}: build context {context}"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (REPO_ROOT / source).exists(), f"{name}: mounted path {source}"
        env_files = service.get("env_file", [])
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            assert (REPO_ROOT / path).is_file(), f"{name}: env_file {path}"


def test_every_variable_has_a_default_or_is_documented():
    text = COMPOSE_FILE.read_text()
    documented = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    referenced = {match["name"] for match in VARIABLE.finditer(text)}
    without_default = {
        match["name"]
        for match in VARIABLE.finditer(text)
        if not (match["modifier"] or "").lstrip(":").startswith("-")
    }
    assert without_default <= documented
    assert documented <= referenced, "stale entries in .env.example"


def test_published_host_ports_are_unique(services: dict[str, dict]):
    host_ports = [
        _with_defaults(str(port)).rsplit(":", 1)[0].rsplit(":", 1)[-1]
        for service in services.values()
        for port in service.get("ports", [])
    ]
    assert host_ports
    assert len(host_ports) == len(set(host_ports)), host_ports


def test_dependencies_exist_and_wait_for_the_right_condition(services: dict[str, dict]):
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, list):
            depends_on = {target: {"condition": "service_started"} for target in depends_on}
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on unknown service {target}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert services[target]["restart"] == "no", f"{target} is not a one-shot job"
    for name in AIRFLOW_COMMANDS:
        assert services[name]["depends_on"]["airflow-init"] == {
            "condition": "service_completed_successfully"
        }


def test_long_running_services_have_healthchecks(services: dict[str, dict]):
    for name, service in services.items():
        if service.get("restart") != "no":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_moto_image_is_the_pinned_moto():
    image = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["s3"]["image"]
    assert image == f"motoserver/moto:{_pin(REPO_ROOT / 'requirements-dev.txt', 'moto')}"


def test_dockerfile_extends_the_pinned_airflow_image_with_java_and_constraints(services: dict):
    build = services["airflow-scheduler"]["build"]
    dockerfile = REPO_ROOT / build["context"] / build["dockerfile"]
    instructions = _dockerfile_instructions(dockerfile)

    airflow = _pin(REPO_ROOT / "requirements.txt", "apache-airflow")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert [args for keyword, args in instructions if keyword == "FROM"] == [
        f"apache/airflow:{airflow}-python{python}"
    ]
    runs = [shlex.split(args) for keyword, args in instructions if keyword == "RUN"]
    assert any("openjdk-17-jre-headless" in run for run in runs)
    (pip,) = [run for run in runs if run[:2] == ["pip", "install"]]
    constraints = pip[pip.index("-c") + 1]
    requirements = [pip[i + 1] for i, arg in enumerate(pip) if arg == "-r"]
    assert Path(constraints).name == "constraints.txt"
    assert {Path(path).name for path in requirements} == {
        "requirements.txt",
        "requirements-job.txt",
    }

    copies = [shlex.split(args) for keyword, args in instructions if keyword == "COPY"]
    copied = {source for copy in copies for source in copy[:-1] if not source.startswith("--")}
    assert {Path(path).name for path in [constraints, *requirements]} <= copied
    # BuildKit's Dockerfile-specific ignore file must let every copied file into the context.
    ignore = dockerfile.with_name(f"{dockerfile.name}.dockerignore").read_text().splitlines()
    for source in copied:
        assert (REPO_ROOT / build["context"] / source).is_file(), source
        assert "*" not in ignore or f"!{source}" in ignore, f"{source} is excluded from the context"
