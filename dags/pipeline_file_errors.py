"""Airflow import errors for invalid pipeline files; this file defines no DAG.

``inference_pipelines.py`` builds the DAGs of the valid pipeline files only, so one broken file
cannot stop the others. This file raises one error naming every invalid file and field, which
the Airflow UI lists under "DAG Import Errors" (against this file) until the file is fixed.
"""

from emr_inference.factory import check_pipelines, pipelines_dir

check_pipelines(pipelines_dir(__file__))
