"""Run by a shaped venv's interpreter (emr_inference_tools/service_venv.py), inside an unpacked
bundle's layout:
imports nothing of this repository, which is not on its path.

``python in_service.py parse``: load Airflow's plugins and parse the DAGs folder as the service
does (the folders come from ``AIRFLOW__CORE__DAGS_FOLDER`` / ``PLUGINS_FOLDER``); prints JSON:
the DAG ids, the import errors, the heavy modules the parse imported, and the modules Airflow's
plugin loader imported from the bundle's files.

``python in_service.py run DAG_ID LOGICAL_DATE CONF_JSON``: ``dag.test()`` of that DAG as parsed
from the DAGs folder; prints JSON: the run's state and each task's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

HEAVY = ("mxnet", "pyspark", "numpy", "pandas", "onnxruntime", "PIL")


def dag_bag():
    """The DAGs folder parsed as the dag-processor parses its DAG bundle (which puts the bundle's
    folder on ``sys.path``)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    folder = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
    return BundleDagBag(folder, bundle_path=folder, bundle_name="dags-folder")


def parse() -> dict:
    from airflow import plugins_manager

    before = set(sys.modules)
    plugins_manager.ensure_plugins_loaded()
    plugins = os.path.realpath(os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"])
    from_plugins = sorted(
        name
        for name in set(sys.modules) - before
        if os.path.realpath(getattr(sys.modules[name], "__file__", None) or "/").startswith(plugins)
    )
    bag = dag_bag()
    return {
        "dag_ids": sorted(bag.dag_ids),
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "heavy": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY),
        "plugin_modules": from_plugins,
        "emr_inference": getattr(sys.modules.get("emr_inference"), "__file__", None),
    }


def run(dag_id: str, logical_date: str, conf: str) -> dict:
    dag = dag_bag().get_dag(dag_id)
    date = dt.datetime.fromisoformat(logical_date).replace(tzinfo=dt.UTC)
    result = dag.test(logical_date=date, run_conf=json.loads(conf))
    states = {ti.task_id: ti.state for ti in result.get_task_instances()}
    return {"state": result.state, "states": states, "run_id": result.run_id}


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    out = parse() if command == "parse" else run(*args)
    print("IN_SERVICE " + json.dumps(out))
