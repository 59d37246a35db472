"""DAG file parse time, measured the way the DAG processor pays it.

Each measurement runs in a fresh interpreter (nothing cached in ``sys.modules``) with an isolated
``AIRFLOW_HOME``. Airflow itself is imported first and not timed: the DAG processor has it loaded
already, so what a DAG file costs is its own import (our factory, the pipeline YAMLs, the Params).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "dags"

_IMPORT_ONE = """
import json, runpy, sys, time
started = time.perf_counter()
import airflow.sdk
airflow_seconds = time.perf_counter() - started
started = time.perf_counter()
runpy.run_path(sys.argv[1])
print(json.dumps({"airflow": airflow_seconds, "file": time.perf_counter() - started}))
"""

_DAGBAG = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - started, "dags": len(bag.dags),
                  "import_errors": {str(k): v for k, v in bag.import_errors.items()}}))
"""


@dataclass(frozen=True)
class ParseTimes:
    """Seconds to import each DAG file alone, and to fill a DagBag from the whole folder."""

    file_seconds: dict[str, float]
    airflow_import_seconds: float
    dagbag_seconds: float
    dags: int


def _run(code: str, argument: Path, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code, str(argument)],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"parsing {argument} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_parse(dags_folder: Path = DAGS_FOLDER) -> ParseTimes:
    """Import every ``*.py`` in ``dags_folder`` in its own fresh process, then one DagBag."""
    with tempfile.TemporaryDirectory(prefix="bench-airflow-home-") as home:
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "plugins")]),
        }
        files, airflow_import = {}, 0.0
        for path in sorted(dags_folder.glob("*.py")):
            times = _run(_IMPORT_ONE, path, env)
            files[path.name] = times["file"]
            airflow_import = max(airflow_import, times["airflow"])
        bag = _run(_DAGBAG, dags_folder, env)
    if bag["import_errors"]:
        raise RuntimeError(f"DagBag import errors: {bag['import_errors']}")
    return ParseTimes(files, airflow_import, bag["seconds"], bag["dags"])
