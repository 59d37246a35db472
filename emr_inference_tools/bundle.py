"""``make bundle TARGET=mwaa|astro|composer``: what a managed Airflow service deploys, laid out as
that service expects, in ``build/bundles/<target>/``.

Every bundle holds the DAG files, the pipeline files, the ``emr_inference`` package, the job's
sources (``spark_jobs/``: ``batch_inference`` and ``main.py``, which ``stage_job_artifacts`` zips
and stages) and ``include/``'s bootstrap action and IAM policies, with no reliance on PYTHONPATH
(:mod:`emr_inference.deployment` finds them; Airflow puts its DAGs and plugins folders on
``sys.path``):

* ``mwaa``: ``dags/`` (the DAG files, ``dags/pipelines/``) for the environment's S3 DAGs folder,
  ``plugins.zip`` (``emr_inference/``, ``spark_jobs/``, ``include/``) and ``requirements.txt``
  starting with Airflow's constraints for the environment's version, as MWAA requires;
* ``composer``: ``dags/`` and ``plugins/`` for the environment bucket's folders of the same names,
  and ``requirements.txt``, the PyPI packages to install (no constraint line: Composer resolves
  against its preinstalled packages);
* ``astro``: an Astro project (``astro deploy`` builds it): ``Dockerfile`` from the Astro Runtime
  image, ``requirements.txt``, ``packages.txt``, ``dags/``, ``plugins/emr_inference/``,
  ``include/`` (pipelines, bootstrap, IAM) and ``spark_jobs/``, all of which the image copies.

Each plugins folder has an ``.airflowignore`` naming the package's folders: Airflow's plugin
loader imports every ``.py`` file under the plugins folder as a top-level module (``config``,
``main``, ...) looking for ``AirflowPlugin`` classes, and this package defines none.

:func:`check_bundle` lists what a bundle lacks or holds stale (the build runs it last);
:func:`unpack` lays a bundle out as its service does (tests/integration/test_bundles.py runs the
demo DAG from there on the service's Airflow and Python, emr_inference_tools/service_venv.py).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from batch_inference.package import ENTRY_POINT, package_sources

from emr_inference_tools.airflow_env import REPO_ROOT

BUNDLES = REPO_ROOT / "build" / "bundles"
DEPLOY = REPO_ROOT / "deploy"
REQUIREMENTS = DEPLOY / "requirements.txt"
#: What Airflow's plugin loader must not import (see the module's docstring).
AIRFLOWIGNORE = "emr_inference/\nspark_jobs/\ninclude/\n"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Target:
    """A managed Airflow service: its versions and where each part goes in its bundle."""

    name: str
    service: str
    airflow: str
    python: str
    #: the shaped venv's pins (emr_inference_tools/service_venv.py; the file says their source)
    constraints: Path
    #: bundle folders: the DAG files, the pipeline files, the plugins folder, and the folder that
    #: holds spark_jobs/ and include/ (emr_inference.deployment's project root)
    pipelines: str
    plugins: str
    project_root: str
    #: ship the plugins folder as plugins.zip
    zip_plugins: bool
    #: the service's own files: bundle path -> text
    files: Mapping[str, str]

    @property
    def requirements(self) -> str:
        """The bundle's ``requirements.txt``."""
        return self.files["requirements.txt"]


def requirements_txt(constraint: str | None = None) -> str:
    """deploy/requirements.txt, after a ``--constraint`` line for ``constraint``."""
    text = REQUIREMENTS.read_text()
    return f'--constraint "{constraint}"\n{text}' if constraint else text


AIRFLOW_331_PY312 = DEPLOY / "constraints-airflow-3.3.1-python-3.12.txt"
#: The Astro Runtime image of the 3.3 line (Airflow 3.3.x, Python 3.12).
ASTRO_RUNTIME = "astrocrpublic.azurecr.io/runtime:3.3-2"

TARGETS = {
    "mwaa": Target(
        name="mwaa",
        service="Amazon MWAA",
        airflow="3.3.1",
        python="3.12",
        constraints=AIRFLOW_331_PY312,
        pipelines="dags/pipelines",
        plugins="plugins",
        project_root="plugins",
        zip_plugins=True,
        files={
            "requirements.txt": requirements_txt(
                "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt"
            )
        },
    ),
    "composer": Target(
        name="composer",
        service="Cloud Composer 3 (composer-3-airflow-3.3.1)",
        airflow="3.3.1",
        python="3.12",
        constraints=AIRFLOW_331_PY312,
        pipelines="dags/pipelines",
        plugins="plugins",
        project_root="plugins",
        zip_plugins=False,
        files={"requirements.txt": requirements_txt()},
    ),
    "astro": Target(
        name="astro",
        service="Astro (Astro Runtime 3.3)",
        airflow="3.3.1",
        python="3.12",
        constraints=AIRFLOW_331_PY312,
        pipelines="include/pipelines",
        plugins="plugins",
        project_root=".",
        zip_plugins=False,
        files={
            "requirements.txt": requirements_txt(),
            "Dockerfile": f"FROM {ASTRO_RUNTIME}\n",
            "packages.txt": "",
            ".astro/config.yaml": "project:\n  name: emr-inference\n",
        },
    ),
}


class BundleError(RuntimeError):
    """A bundle lacks a file it must hold, or holds a stale one: the message names each."""


def source_files(target: Target) -> dict[str, Path]:
    """Bundle path -> repository file, for everything a bundle of ``target`` copies (the plugins
    folder's files before zipping)."""
    root = "" if target.project_root == "." else target.project_root + "/"
    files = {f"dags/{path.name}": path for path in sorted((REPO_ROOT / "dags").glob("*.py"))}
    pipelines = sorted((REPO_ROOT / "include" / "pipelines").glob("*.yaml"))
    files |= {f"{target.pipelines}/{path.name}": path for path in pipelines}
    package = REPO_ROOT / "plugins" / "emr_inference"
    files |= {
        f"{target.plugins}/emr_inference/{path.relative_to(package).as_posix()}": path
        for path in sorted(package.rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    job = REPO_ROOT / "spark_jobs"
    files |= {
        f"{root}spark_jobs/{path.relative_to(job).as_posix()}": path
        for path in [*package_sources(), ENTRY_POINT]
    }
    for folder in ("bootstrap", "iam"):
        for path in sorted((REPO_ROOT / "include" / folder).iterdir()):
            files[f"{root}include/{folder}/{path.name}"] = path
    return files


def expected(target: Target) -> dict[str, bytes]:
    """Bundle path -> bytes of every file a complete bundle of ``target`` holds; the plugins
    folder's files as ``plugins.zip:<path>`` when it is zipped."""
    files = {name: path.read_bytes() for name, path in source_files(target).items()}
    files |= {name: text.encode() for name, text in target.files.items()}
    files[f"{target.plugins}/.airflowignore"] = AIRFLOWIGNORE.encode()
    if not target.zip_plugins:
        return files
    prefix = target.plugins + "/"
    return {
        (f"plugins.zip:{name.removeprefix(prefix)}" if name.startswith(prefix) else name): data
        for name, data in files.items()
    }


def found(folder: Path) -> dict[str, bytes]:
    """Bundle path -> bytes of what ``folder`` holds (a ``plugins.zip``'s members as
    ``plugins.zip:<member>``)."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name == "plugins.zip":
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if not member.endswith("/"):
                        files[f"plugins.zip:{member}"] = archive.read(member)
        else:
            files[name] = path.read_bytes()
    return files


def check_bundle(target: Target, folder: Path) -> list[str]:
    """What the bundle in ``folder`` lacks (``missing: <path>``) or holds that differs from the
    sources (``stale: <path>``); empty when it is complete and current."""
    want, have = expected(target), found(folder)
    problems = [f"missing: {name}" for name in want if name not in have]
    problems += [f"stale: {name}" for name in want if name in have and have[name] != want[name]]
    return problems


def write_zip(folder: Path, dest: Path) -> None:
    """Zip ``folder``'s files into ``dest`` reproducibly (sorted, fixed timestamps and modes)."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100000 | (0o755 if path.suffix == ".sh" else 0o644)) << 16
            info.create_system = 3
            archive.writestr(info, path.read_bytes())


def build_bundle(target: Target, output: Path = BUNDLES) -> Path:
    """Build ``target``'s bundle in ``output/<target>/`` (replacing it); returns that folder, or
    :class:`BundleError` when the result is not complete."""
    folder = output / target.name
    shutil.rmtree(folder, ignore_errors=True)
    contents = {name: path.read_bytes() for name, path in source_files(target).items()}
    contents |= {name: text.encode() for name, text in target.files.items()}
    contents[f"{target.plugins}/.airflowignore"] = AIRFLOWIGNORE.encode()
    for name, data in contents.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if name.endswith(".sh"):
            path.chmod(0o755)
    if target.zip_plugins:
        write_zip(folder / target.plugins, folder / "plugins.zip")
        shutil.rmtree(folder / target.plugins)
    if problems := check_bundle(target, folder):
        raise BundleError(f"the {target.name} bundle is incomplete: " + "; ".join(problems))
    return folder


@dataclass(frozen=True)
class ServiceLayout:
    """A bundle laid out as its service lays it out: the folders Airflow is configured with."""

    dags_folder: Path
    plugins_folder: Path


def unpack(target: Target, bundle: Path, into: Path) -> ServiceLayout:
    """Lay ``bundle`` out in ``into`` as ``target``'s service does: MWAA syncs the DAGs folder to
    ``/usr/local/airflow/dags`` and unzips plugins.zip into ``/usr/local/airflow/plugins``;
    Composer syncs the bucket's ``dags/`` and ``plugins/`` to ``/home/airflow/gcs/``; Astro's
    image copies the project into ``/usr/local/airflow``. Raises :class:`BundleError` naming what
    the bundle lacks."""
    if problems := check_bundle(target, bundle):
        raise BundleError(f"the {target.name} bundle in {bundle} is incomplete: {problems}")
    home = into / ("gcs" if target.name == "composer" else "airflow")
    if target.name == "astro":
        shutil.copytree(bundle, home)
    else:
        shutil.copytree(bundle / "dags", home / "dags")
        if target.zip_plugins:
            with zipfile.ZipFile(bundle / "plugins.zip") as archive:
                archive.extractall(home / "plugins")
        else:
            shutil.copytree(bundle / target.plugins, home / "plugins")
    return ServiceLayout(home / "dags", home / "plugins")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(TARGETS), help="the managed Airflow service")
    parser.add_argument("--output", type=Path, default=BUNDLES, help="default: %(default)s")
    args = parser.parse_args(argv)
    target = TARGETS[args.target]
    try:
        folder = build_bundle(target, args.output)
    except BundleError as error:
        print(f"[bundle] FAILED: {error}", file=sys.stderr)
        return 1
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    print(f"[bundle] {target.service}, Airflow {target.airflow}, Python {target.python}")
    print(f"[bundle] {folder}: {len(files)} files; top level:")
    for name in sorted({name.split("/")[0] for name in files}):
        print(f"[bundle]   {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
