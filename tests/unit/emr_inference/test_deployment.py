"""Where the package finds its folders in each deployment layout, and the Airflow it refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from emr_inference.deployment import (
    NEEDED,
    PIPELINES_DIR_ENV,
    PROJECT_ROOT_ENV,
    DeploymentError,
    check_airflow_version,
    pipelines_dir,
    project_root,
)

from tests.conftest import REPO_ROOT


def complete(root: Path) -> Path:
    """``root`` with every file a project root needs (empty files)."""
    for path in NEEDED:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).touch()
    return root


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch):
    monkeypatch.delenv(PROJECT_ROOT_ENV, raising=False)
    monkeypatch.delenv(PIPELINES_DIR_ENV, raising=False)


def test_the_repository_is_its_own_project_root():
    assert project_root() == REPO_ROOT


def test_a_project_above_the_plugins_folder_comes_first(tmp_path):
    """The repository and an Astro project: spark_jobs/ and include/ beside plugins/."""
    complete(tmp_path)
    complete(tmp_path / "plugins")
    assert project_root(tmp_path / "plugins") == tmp_path


def test_a_plugins_folder_that_holds_everything_is_the_root(tmp_path):
    """MWAA's unpacked plugins.zip and Composer's plugins/: nothing beside the plugins folder."""
    plugins = complete(tmp_path / "plugins")
    assert project_root(plugins) == plugins


def test_a_missing_job_source_is_named_with_every_place_looked_at(tmp_path):
    plugins = complete(tmp_path / "plugins")
    (plugins / "spark_jobs" / "main.py").unlink()
    with pytest.raises(DeploymentError) as error:
        project_root(plugins)
    message = str(error.value)
    assert f"{plugins} lacks spark_jobs/main.py" in message
    assert f"{tmp_path} lacks {', '.join(NEEDED)}" in message
    assert PROJECT_ROOT_ENV in message and "make bundle" in message


def test_the_environment_variable_wins_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(complete(tmp_path / "elsewhere")))
    assert project_root(complete(tmp_path / "plugins")) == tmp_path / "elsewhere"
    (tmp_path / "elsewhere" / "include" / "bootstrap" / "install_job_deps.sh").unlink()
    with pytest.raises(DeploymentError, match="lacks include/bootstrap/install_job_deps.sh"):
        project_root(tmp_path / "plugins")


def test_pipelines_are_found_beside_or_inside_the_dags_folder(tmp_path):
    dag_file = tmp_path / "dags" / "inference_pipelines.py"
    (tmp_path / "dags" / "pipelines").mkdir(parents=True)
    assert pipelines_dir(dag_file) == tmp_path / "dags" / "pipelines"  # MWAA, Composer
    (tmp_path / "include" / "pipelines").mkdir(parents=True)
    assert pipelines_dir(dag_file) == tmp_path / "include" / "pipelines"  # repository, Astro


def test_no_pipeline_folder_is_an_error_naming_both_places(tmp_path):
    (tmp_path / "dags").mkdir()
    with pytest.raises(DeploymentError) as error:
        pipelines_dir(tmp_path / "dags" / "inference_pipelines.py")
    assert str(tmp_path / "include" / "pipelines") in str(error.value)
    assert str(tmp_path / "dags" / "pipelines") in str(error.value)


@pytest.mark.parametrize("version", ["3.2.0", "3.3.1", "3.3.2", "3.10.0", "4.0.0b1", None])
def test_airflow_3_2_and_newer_are_accepted(version):
    check_airflow_version(version)


@pytest.mark.parametrize("version", ["3.1.7+composer", "3.0.6", "2.11.2", "2.10.5"])
def test_an_older_airflow_is_refused_naming_why(version):
    with pytest.raises(DeploymentError) as error:
        check_airflow_version(version)
    assert f"needs Airflow 3.2 or newer and this is Airflow {version}" in str(error.value)
    assert "CronPartitionTimetable" in str(error.value)


def test_parsing_a_dag_file_on_airflow_3_1_fails_with_that_message(tmp_path):
    """Importing the package (what every DAG file does first) refuses it: Airflow 3.1's metadata
    put first on the path stands for an installed 3.1 (the check reads no other part of it)."""
    info = tmp_path / "apache_airflow_core-3.1.7.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: apache-airflow-core\nVersion: 3.1.7\n"
    )
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import emr_inference"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT / "plugins")},
        timeout=60,
    )
    assert result.returncode == 1
    assert "DeploymentError: emr_inference needs Airflow 3.2 or newer" in result.stderr
    assert "this is Airflow 3.1.7" in result.stderr
