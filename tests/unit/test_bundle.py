"""The deploy bundles (emr_inference_tools/bundle.py): each holds what its service expects, laid
out so that the
package finds its parts there, and a bundle that lacks a file is refused naming it. The bundles
run on their service's Airflow in tests/integration/test_bundles.py."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from emr_inference.deployment import NEEDED, DeploymentError, pipelines_dir, project_root

from emr_inference_tools.bundle import (
    AIRFLOWIGNORE,
    TARGETS,
    BundleError,
    build_bundle,
    check_bundle,
    unpack,
)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """Every target's bundle, built once."""
    output = tmp_path_factory.mktemp("bundles")
    return {name: build_bundle(target, output) for name, target in TARGETS.items()}


def copy_of(bundle: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(bundle, tmp_path / bundle.name))


def test_every_bundle_is_complete(bundles):
    for name, folder in bundles.items():
        assert check_bundle(TARGETS[name], folder) == [], name


def test_the_mwaa_bundle_is_a_dags_folder_plugins_zip_and_constrained_requirements(bundles):
    folder = bundles["mwaa"]
    assert sorted(p.name for p in folder.iterdir()) == ["dags", "plugins.zip", "requirements.txt"]
    assert (folder / "dags" / "inference_pipelines.py").is_file()
    assert (folder / "dags" / "pipelines" / "demo.yaml").is_file()
    names = set(zipfile.ZipFile(folder / "plugins.zip").namelist())
    assert {
        ".airflowignore",
        "emr_inference/__init__.py",
        "spark_jobs/batch_inference/job.py",
    } < names
    assert {"spark_jobs/main.py", "include/bootstrap/install_job_deps.sh"} < names
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert requirements[0] == (
        '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/'
        'constraints-3.12.txt"'
    )
    assert "apache-airflow-providers-amazon[aiobotocore]>=9.39.0,<10" in requirements


def test_the_composer_bundle_is_the_buckets_dags_and_plugins_folders(bundles):
    folder = bundles["composer"]
    assert sorted(p.name for p in folder.iterdir()) == ["dags", "plugins", "requirements.txt"]
    assert (folder / "plugins" / "spark_jobs" / "main.py").is_file()
    assert "--constraint" not in (folder / "requirements.txt").read_text()  # not allowed there


def test_the_astro_bundle_is_a_project_its_cli_builds(bundles):
    folder = bundles["astro"]
    assert (folder / "Dockerfile").read_text().startswith("FROM ")
    assert ":3.3-" in (folder / "Dockerfile").read_text()  # Astro Runtime 3.3: Airflow 3.3.x
    for path in ("requirements.txt", "packages.txt", "dags/inference_pipelines.py"):
        assert (folder / path).is_file(), path
    assert (folder / "include" / "pipelines" / "demo.yaml").is_file()
    assert (folder / "plugins" / "emr_inference" / "factory.py").is_file()
    assert (folder / "spark_jobs" / "batch_inference" / "job.py").is_file()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_unpacked_as_the_service_does_the_package_finds_every_part(bundles, tmp_path, name):
    """No PYTHONPATH: the project root and the pipelines are found from the folders Airflow is
    configured with."""
    layout = unpack(TARGETS[name], bundles[name], tmp_path)
    root = project_root(layout.plugins_folder)
    assert all((root / path).is_file() for path in NEEDED)
    pipelines = pipelines_dir(layout.dags_folder / "inference_pipelines.py")
    assert (pipelines / "demo.yaml").is_file()


def test_a_bundle_without_a_job_source_is_refused_naming_it(bundles, tmp_path):
    folder = copy_of(bundles["mwaa"], tmp_path)
    archive = folder / "plugins.zip"
    with zipfile.ZipFile(archive) as source:
        members = {name: source.read(name) for name in source.namelist()}
    with zipfile.ZipFile(archive, "w") as rewritten:
        for name, data in members.items():
            if name != "spark_jobs/batch_inference/job.py":
                rewritten.writestr(name, data)
    assert check_bundle(TARGETS["mwaa"], folder) == [
        "missing: plugins.zip:spark_jobs/batch_inference/job.py"
    ]
    with pytest.raises(BundleError, match="spark_jobs/batch_inference/job.py"):
        unpack(TARGETS["mwaa"], folder, tmp_path / "service")


def test_a_stale_or_missing_file_is_named(bundles, tmp_path):
    folder = copy_of(bundles["composer"], tmp_path)
    (folder / "plugins" / "include" / "bootstrap" / "install_job_deps.sh").unlink()
    (folder / "dags" / "pipelines" / "demo.yaml").write_text("pipeline: old\n")
    assert check_bundle(TARGETS["composer"], folder) == [
        "missing: plugins/include/bootstrap/install_job_deps.sh",
        "stale: dags/pipelines/demo.yaml",
    ]


def test_a_plugins_folder_without_the_job_fails_at_import_naming_it(bundles, tmp_path):
    """What the service would show as the DAG files' import error if the job were not deployed."""
    layout = unpack(TARGETS["composer"], bundles["composer"], tmp_path)
    (layout.plugins_folder / "spark_jobs" / "main.py").unlink()
    with pytest.raises(DeploymentError, match="lacks spark_jobs/main.py"):
        project_root(layout.plugins_folder)


def test_airflows_plugin_loader_skips_the_packages_folders(bundles, tmp_path):
    """Airflow imports every .py under the plugins folder as a top-level module unless
    .airflowignore says otherwise; the bundle's says it for every folder it ships."""
    from airflow._shared.module_loading import find_path_from_directory

    layout = unpack(TARGETS["composer"], bundles["composer"], tmp_path)

    def loaded() -> list[str]:
        files = find_path_from_directory(str(layout.plugins_folder), ".airflowignore", "glob")
        return [path for path in files if path.endswith(".py")]

    assert (layout.plugins_folder / ".airflowignore").read_text() == AIRFLOWIGNORE
    assert loaded() == []
    (layout.plugins_folder / ".airflowignore").unlink()
    assert len(loaded()) > 50  # what it would import without it


def test_every_target_runs_the_airflow_and_python_the_docs_name():
    """docs/DEPLOYMENT.md's versions table names the same versions."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "DEPLOYMENT.md").read_text()
    for target in TARGETS.values():
        assert f"`make bundle TARGET={target.name}`" in docs
        assert f"| {target.service} | {target.airflow} | {target.python} |" in docs
