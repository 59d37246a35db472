"""Airflow DAGs: one per valid pipeline file in ``include/pipelines/`` (``emr_inference.factory``).

``EMR_INFERENCE_PIPELINES_DIR`` points at another folder of pipeline files. An invalid file is
left out here (the other pipelines stay scheduled) and reported by ``pipeline_file_errors.py``.
"""

from emr_inference.factory import build_dags, pipelines_dir

globals().update(build_dags(pipelines_dir(__file__)))
