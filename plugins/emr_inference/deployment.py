"""Where a deployment put the package's folders, and whether its Airflow is recent enough.

Standard library only: :mod:`emr_inference` runs this when it is imported, before anything else.

The package needs, besides itself, the job's sources (``spark_jobs/``: the ``batch_inference``
package and ``main.py``, zipped and staged by ``stage_job_artifacts``) and ``include/`` (the EMR
bootstrap action). A *project root* holds both; the layouts it supports (``make bundle``,
docs/DEPLOYMENT.md "Managed Airflow"):

* the repository, docker-compose and an Astro project: the folder above ``plugins/``;
* Amazon MWAA (``plugins.zip``) and Cloud Composer (the bucket's ``plugins/``): the plugins
  folder itself, which Airflow puts on ``sys.path``;
* anywhere else: ``EMR_INFERENCE_PROJECT_ROOT``.

The pipeline files are looked up next to the DAG file (:func:`pipelines_dir`): the repository's
and Astro's ``include/pipelines/``, or ``pipelines/`` in the DAGs folder (MWAA and Composer sync
that folder without restarting anything, so a pipeline is changed without a new plugins.zip).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

PROJECT_ROOT_ENV = "EMR_INFERENCE_PROJECT_ROOT"
PIPELINES_DIR_ENV = "EMR_INFERENCE_PIPELINES_DIR"
#: What a project root must hold (relative paths): the job's package and entry point, and the
#: bootstrap action staged beside them.
NEEDED = (
    "spark_jobs/batch_inference/__init__.py",
    "spark_jobs/main.py",
    "include/bootstrap/install_job_deps.sh",
)
#: The oldest Airflow the package runs on, and why: the feature it uses that is newest.
MINIMUM_AIRFLOW = (3, 2)
MINIMUM_AIRFLOW_REASON = (
    "partitioned pipelines are scheduled with CronPartitionTimetable and publish partitioned "
    "Asset events, both new in Airflow 3.2"
)
PLUGINS_DIR = Path(__file__).resolve().parents[1]


class DeploymentError(RuntimeError):
    """The deployment lacks a folder or file the package needs, or runs a too-old Airflow: the
    message names what is missing and where it was looked for."""


def missing(root: Path, needed: Sequence[str] = NEEDED) -> list[str]:
    """The paths of ``needed`` that ``root`` lacks."""
    return [path for path in needed if not (root / path).exists()]


def project_root(plugins_dir: Path = PLUGINS_DIR) -> Path:
    """The folder holding ``spark_jobs/`` and ``include/``: ``$EMR_INFERENCE_PROJECT_ROOT``, else
    the first complete one of ``plugins_dir/..`` (repository, Astro) and ``plugins_dir`` (MWAA,
    Composer); :class:`DeploymentError` naming what each candidate lacks when none is complete."""
    if os.environ.get(PROJECT_ROOT_ENV):
        candidates = [Path(os.environ[PROJECT_ROOT_ENV])]
    else:
        candidates = [plugins_dir.parent, plugins_dir]
    lacking = {root: missing(root) for root in candidates}
    for root, gaps in lacking.items():
        if not gaps:
            return root
    where = "; ".join(f"{root} lacks {', '.join(gaps)}" for root, gaps in lacking.items())
    raise DeploymentError(
        f"emr_inference cannot find the job's sources and include/ files: {where}. Deploy the "
        f"bundle `make bundle TARGET=...` builds (docs/DEPLOYMENT.md, Managed Airflow), or set "
        f"{PROJECT_ROOT_ENV} to the folder that holds spark_jobs/ and include/"
    )


def pipelines_dir(dag_file: str | Path) -> Path:
    """The folder of pipeline files: ``$EMR_INFERENCE_PIPELINES_DIR``, else ``include/pipelines``
    next to the DAGs folder of ``dag_file`` (repository, Astro), else ``pipelines/`` in it (MWAA,
    Composer); :class:`DeploymentError` naming both when neither exists."""
    if os.environ.get(PIPELINES_DIR_ENV):
        return Path(os.environ[PIPELINES_DIR_ENV])
    dags = Path(dag_file).resolve().parent
    candidates = [dags.parent / "include" / "pipelines", dags / "pipelines"]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise DeploymentError(
        f"no pipeline folder: neither {candidates[0]} nor {candidates[1]} exists; deploy the "
        f"pipelines there or set {PIPELINES_DIR_ENV}"
    )


def airflow_version() -> str | None:
    """The installed Airflow's version (``apache-airflow-core``, else ``apache-airflow``: Airflow
    2 has no core distribution), or None when there is no Airflow."""
    from importlib import metadata

    for distribution in ("apache-airflow-core", "apache-airflow"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_airflow_version(version: str | None) -> None:
    """:class:`DeploymentError` when ``version`` (``3.1.7+composer``, ...) is older than
    :data:`MINIMUM_AIRFLOW`; nothing for None (no Airflow: the job's tools import this package)."""
    if version is None:
        return
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise DeploymentError(f"cannot read the Airflow version {version!r}")
    if (int(match[1]), int(match[2])) < MINIMUM_AIRFLOW:
        oldest = ".".join(map(str, MINIMUM_AIRFLOW))
        raise DeploymentError(
            f"emr_inference needs Airflow {oldest} or newer and this is Airflow {version}: "
            f"{MINIMUM_AIRFLOW_REASON} (docs/DEPLOYMENT.md, Supported versions)"
        )
