"""The command blocks of the docs (:data:`DOCS`), as the runbook test runs them.

A block an operator runs is marked in the Markdown with ``<!-- runbook: NAME -->`` on the line
before its fence; ``tests/e2e/test_runbook.py`` runs each marked block, as written, against a
whole Airflow on PostgreSQL. Every other ``bash`` block must be a variables block (``export``
only) or be listed in :data:`NOT_RUN` with the reason it cannot run in the tests, so a new command
block that nobody runs fails ``tests/unit/test_docs.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The docs whose ``bash`` blocks are accounted for (run, a variables block, or NOT_RUN), and
#: where the marked blocks and the commands other tests run "as written" are looked up.
DOCS = (
    REPO_ROOT / "README.md",
    REPO_ROOT / "docs" / "OPERATIONS.md",
    REPO_ROOT / "docs" / "DEPLOYMENT.md",
    REPO_ROOT / "docs" / "CONTRIBUTING.md",
)

#: The marked blocks, all of which tests/e2e/test_runbook.py runs.
RUNBOOK_BLOCKS = frozenset(
    {
        "token",
        "trigger",
        "python-client",
        "backfill",
        "find-run",
        "kill-run",
        "rerun-trigger",
        "rerun-clear",
        "backfill-cli",
        "kill",
        "logs",
        "plan",
        "range-trigger",
    }
)

#: Unmarked bash blocks, by their first line, and why the tests do not run them.
NOT_RUN = {
    "make demo": "the README's first block: `make demo` and `make test` (the suite itself)",
    "docker compose exec airflow-scheduler airflow backfill create": "needs Docker",
    "cp .env.example .env": "needs Docker",
    "export AIRFLOW_URL=http://localhost:8080": "needs Docker (the compose password)",
    "aws emr list-clusters": "needs a real EMR",
    'ls "${EMR_INFERENCE_LOCAL_STATE': "needs a leaked local cluster",
    "make rehearse PIPELINE=cifar10_resnet18": "run as written by test_rehearsal.py (integration)",
    "make convert PIPELINE=cifar10_resnet18_onnx": (
        "run as written by test_convert_command.py (integration), the pipeline's buckets in moto"
    ),
    "PYTHONPATH=spark_jobs .venv/bin/python -m batch_inference.online": (
        "run as written by tests/unit/batch_inference/test_online.py"
    ),
    "docker build -f docker/lambda/Dockerfile": (
        "needs Docker; tests/unit/test_lambda_image.py checks the Dockerfile statically"
    ),
    "docker build -f docker/lambda-onnxruntime/Dockerfile": (
        "needs Docker; tests/unit/test_lambda_image.py checks the Dockerfile statically, and "
        "tests/integration/test_lambda_pins.py runs the handler on its pins and Python"
    ),
    "make bundle TARGET=mwaa": (
        "builds the bundles (emr_inference_tools.bundle): tests/unit/test_bundle.py builds each "
        "and checks it, "
        "tests/integration/test_bundles.py runs each on its service's Airflow and Python"
    ),
    "   airflow dags trigger emr_inference_sweeper": (
        "the sweeper DAG runs under a real Airflow in tests/e2e/test_crash_recovery.py (triggered "
        "through the REST API); the CLI writes to the metadata database, locked under make airflow"
    ),
}

_BLOCK = re.compile(
    r"(?:<!-- runbook: (?P<name>[a-z0-9-]+) -->\n)?```(?P<lang>[a-z]*)\n(?P<code>.*?)^[ ]*```",
    re.DOTALL | re.MULTILINE,
)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a doc."""

    doc: str
    name: str | None
    lang: str
    code: str

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0] if self.code else ""


def blocks(lang: str | None = None) -> list[Block]:
    """Every fenced block of the runbook docs (of language ``lang`` if given), in order."""
    found = []
    for doc in DOCS:
        for match in _BLOCK.finditer(doc.read_text()):
            if lang is None or match["lang"] == lang:
                found.append(Block(doc.name, match["name"], match["lang"], match["code"]))
    return found


def docs_text() -> str:
    """The text of every doc of :data:`DOCS`, one after the other (for a command a test checks is
    written in the docs, wherever it now lives)."""
    return "\n".join(doc.read_text() for doc in DOCS)


def runbook_block(name: str) -> Block:
    """The block marked ``<!-- runbook: name -->`` (exactly one must exist)."""
    (block,) = [block for block in blocks() if block.name == name]
    return block


def exported_variables() -> set[str]:
    """The variables the docs' ``export`` blocks set for the runbook blocks to use."""
    names: set[str] = set()
    for block in blocks("bash"):
        if block.name is None and block.first_line.startswith("export ") and not _not_run(block):
            names |= set(re.findall(r"\b([A-Z_]+)=", block.code))
    return names


def _not_run(block: Block) -> bool:
    return any(block.first_line.startswith(prefix) for prefix in NOT_RUN)


def unaccounted_blocks() -> list[Block]:
    """bash blocks that are neither marked, nor a variables block, nor listed in NOT_RUN."""
    return [
        block
        for block in blocks("bash")
        if block.name is None
        and not _not_run(block)
        and not all(line.startswith("export ") for line in block.code.splitlines())
    ]
