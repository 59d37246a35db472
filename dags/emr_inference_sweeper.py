"""Airflow maintenance DAG ``emr_inference_sweeper``: stops clusters whose run is over.

See ``emr_inference.sweeper`` and docs/OPERATIONS.md ("Clusters that outlive their run").
"""

from emr_inference.factory import load_pipelines, pipelines_dir
from emr_inference.sweeper_dag import build_sweeper_dag

dag = build_sweeper_dag(
    config for config, _ in load_pipelines(pipelines_dir(__file__)).configs.values()
)
