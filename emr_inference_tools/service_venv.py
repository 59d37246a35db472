"""The shaped venv: a managed Airflow service's Python and Airflow, with the target's pins, here.

A bundle (:mod:`emr_inference_tools.bundle`) is tested on the Airflow its service runs, not this
repository's:
the target's CPython (found as the node twin finds one: PATH, then pyenv), a virtualenv with
``apache-airflow==<the target's version>`` and the bundle's own ``requirements.txt`` (its
``--constraint`` line, which names a URL, replaced by the target's committed pins,
``deploy/constraints-*.txt``, which say where they come from), plus ``deploy/local-backend.txt``
so that the demo pipeline's local backend runs its Spark workers on it.

The venv lives in ``build/service-venv/airflow-<version>-py<python>-<key>/``; the key hashes what
decides it (the pins, both requirements files, the interpreter's version), so targets whose pins
agree share one venv and a changed pin builds a new one (``.complete`` is written last).

``python -m emr_inference_tools.service_venv [--target mwaa]`` builds it and prints its interpreter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from emr_inference_tools.airflow_env import REPO_ROOT
from emr_inference_tools.bundle import DEPLOY, TARGETS, Target
from emr_inference_tools.node_twin import (
    Log,
    NodeTwinError,
    build_lock,
    find_node_python,
    interpreter_version,
    run,
)

SERVICE_ROOT = REPO_ROOT / "build" / "service-venv"
LOCAL_BACKEND = DEPLOY / "local-backend.txt"
#: Changes to how a venv is built (this module) that must rebuild existing ones.
RECIPE = "1"


def requirements(target: Target) -> str:
    """The bundle's requirements.txt without its ``--constraint`` lines (the shaped venv installs
    under the target's committed pins instead)."""
    lines = target.requirements.splitlines()
    return "\n".join(line for line in lines if not line.startswith("--constraint")) + "\n"


def venv_key(target: Target, base_version: str) -> str:
    """What decides a target's venv, hashed: equal for targets whose pins agree."""
    decided_by = {
        "recipe": RECIPE,
        "python": base_version,
        "airflow": target.airflow,
        "constraints": target.constraints.read_text(),
        "requirements": requirements(target),
        "local_backend": LOCAL_BACKEND.read_text(),
    }
    return hashlib.sha256(json.dumps(decided_by, sort_keys=True).encode()).hexdigest()[:16]


def venv_folder(target: Target, base_version: str) -> Path:
    """Where ``target``'s venv is (or will be) built."""
    key = venv_key(target, base_version)
    return SERVICE_ROOT / f"airflow-{target.airflow}-py{target.python}-{key}"


def build_service_venv(target: Target, log: Log = print) -> Path:
    """``target``'s shaped venv, built or found already built; returns its interpreter.
    :class:`~emr_inference_tools.node_twin.NodeTwinError` when the target's CPython is missing or
    pip fails."""
    base = find_node_python(target.python, override_env=None)
    folder = venv_folder(target, ".".join(interpreter_version(base)))
    python = folder / "bin" / "python"
    with build_lock(SERVICE_ROOT):
        if (folder / ".complete").exists():
            return python
        log(f"building the {target.service} venv in {folder} from {base}")
        shutil.rmtree(folder, ignore_errors=True)
        run([str(base), "-m", "venv", str(folder)], f"creating a Python {target.python} venv")
        (folder / "requirements.txt").write_text(requirements(target))
        run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-c", str(target.constraints), f"apache-airflow=={target.airflow}",
             "-r", str(folder / "requirements.txt"), "-r", str(LOCAL_BACKEND)],
            f"installing Airflow {target.airflow} and the {target.name} bundle's requirements",
        )  # fmt: skip
        code = "import airflow; print(airflow.__version__)"
        # the last line: Airflow may log to stdout first (unit test mode, from the environment)
        version = run([str(python), "-c", code], "importing airflow").strip().splitlines()[-1]
        if version != target.airflow:
            raise NodeTwinError(f"{python} runs Airflow {version}, not {target.airflow}")
        (folder / ".complete").write_text(target.airflow + "\n")
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=sorted(TARGETS), default="mwaa")
    args = parser.parse_args(argv)
    try:
        python = build_service_venv(TARGETS[args.target], log=lambda m: print(f"[venv] {m}"))
    except NodeTwinError as error:
        print(f"[venv] FAILED: {error}", file=sys.stderr)
        return 1
    print(f"[venv] {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
