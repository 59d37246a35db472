"""Airflow DAGs: one per pipeline file in ``include/pipelines/`` (see ``emr_inference.factory``).

``EMR_INFERENCE_PIPELINES_DIR`` points at another folder of pipeline files.
"""

import os
from pathlib import Path

from emr_inference.factory import build_dags

PIPELINES_DIR = Path(
    os.environ.get(
        "EMR_INFERENCE_PIPELINES_DIR",
        Path(__file__).resolve().parents[1] / "include" / "pipelines",
    )
)

globals().update(build_dags(PIPELINES_DIR))
