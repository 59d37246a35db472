"""Airflow side of the EMR image-inference pipelines.

Pipelines are YAML files (``include/pipelines/*.yaml``) turned into DAGs by :mod:`.factory`.
Modules here keep heavy imports (boto3 clients, Spark, MXNet) inside functions so that parsing a
DAG file stays fast.

What this side shares with the Spark job (job settings, formats) is defined once in the job
package's contract (``batch_inference.contract``, standard library only). Importing this package
makes ``batch_inference`` importable: when it is not already on ``sys.path`` (as in the Docker
image and the tests), ``spark_jobs/`` of :func:`project_root` is added.
"""

import importlib.util
import os
import sys
from pathlib import Path

PROJECT_ROOT_ENV = "EMR_INFERENCE_PROJECT_ROOT"


def project_root() -> Path:
    """The folder holding ``spark_jobs/`` and ``include/``: ``EMR_INFERENCE_PROJECT_ROOT`` when the
    deployment lays the folders out differently, else the repository (``plugins/..``)."""
    return Path(os.environ.get(PROJECT_ROOT_ENV) or Path(__file__).resolve().parents[2])


if importlib.util.find_spec("batch_inference") is None:
    sys.path.append(str(project_root() / "spark_jobs"))
