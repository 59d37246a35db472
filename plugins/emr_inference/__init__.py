"""Airflow side of the EMR image-inference pipelines.

Pipelines are YAML files (``include/pipelines/*.yaml``) turned into DAGs by :mod:`.factory`.
Modules here keep heavy imports (boto3 clients, Spark, MXNet) inside functions so that parsing a
DAG file stays fast.
"""
