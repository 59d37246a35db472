"""Airflow side of the EMR image-inference pipelines.

Pipelines are YAML files (``include/pipelines/*.yaml``) turned into DAGs by :mod:`.factory`.
Modules here keep heavy imports (boto3 clients, Spark, MXNet) inside functions so that parsing a
DAG file stays fast.

What this side shares with the Spark job (job settings, formats) is defined once in the job
package's contract (``batch_inference.contract``, standard library only). Importing this package
refuses an Airflow older than the package needs, and makes ``batch_inference`` importable: when it
is not already on ``sys.path`` (as in the Docker image and the tests), ``spark_jobs/`` of
:func:`project_root` is added (:mod:`.deployment`: the layouts it finds, and the error naming what
a deployment lacks).
"""

import importlib.util
import sys

from emr_inference.deployment import (
    PROJECT_ROOT_ENV,
    airflow_version,
    check_airflow_version,
    project_root,
)

__all__ = ["PROJECT_ROOT_ENV", "project_root"]

check_airflow_version(airflow_version())

if importlib.util.find_spec("batch_inference") is None:
    sys.path.append(str(project_root() / "spark_jobs"))
