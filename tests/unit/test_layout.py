"""The layout docs/CONTRIBUTING.md documents: ``include/`` holds only what a deployment copies
(pipelines, bootstrap, IAM), and the dev-only tooling (demo, local S3, local Airflow) lives in
``emr_inference_tools/``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOYED_INCLUDE = {"pipelines", "bootstrap", "iam"}


def _tracked(folder: str) -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "--", folder], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    if listing:
        return listing
    # Not a git checkout (e.g. a copy): every file on disk, bytecode caches aside.
    return [
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]


def test_include_holds_only_what_a_deployment_copies():
    tops = {Path(path).parts[1] for path in _tracked("include")}
    assert tops == DEPLOYED_INCLUDE
    assert not [path for path in _tracked("include") if path.endswith(".py")]


def test_the_contributing_layout_names_existing_tools():
    text = (REPO_ROOT / "docs" / "CONTRIBUTING.md").read_text()
    layout = text.split("## Repository layout", 1)[1].split("```")[1]
    tools = layout.split("\nemr_inference_tools/", 1)[1].split("\n")[1:]
    entries = [m[1] for line in tools if (m := re.match(r"  (\S+)\s{2,}", line))]
    assert {"demo/", "local_s3.py", "airflow_env.py", "gen_config_docs.py"} <= set(entries)
    for entry in entries:
        assert (REPO_ROOT / "emr_inference_tools" / entry).exists(), (
            f"the layout names emr_inference_tools/{entry}"
        )


def test_no_tracked_text_file_holds_a_merge_conflict_marker():
    """A merge left half-done (``<<<<<<<`` ... ``>>>>>>>``) in code or docs is never committed."""
    marker = re.compile(r"^(<{7} |>{7} )", re.MULTILINE)
    found = []
    for path in _tracked("."):
        if not path.endswith((".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".cfg", ".sh")):
            continue
        text = (REPO_ROOT / path).read_text(errors="replace")
        found += [f"{path}:{text.count(chr(10), 0, m.start()) + 1}" for m in marker.finditer(text)]
    assert found == []


def test_no_installed_distribution_provides_one_of_our_top_level_packages():
    """An installed package with the same top-level name would shadow ours for any script run
    without this repository first on sys.path (cron_descriptor, an Airflow dependency, installs a
    top-level ``tools``: why the dev tooling is ``emr_inference_tools``)."""
    import importlib.metadata

    ours = {"emr_inference", "batch_inference", "emr_inference_tools", "bench", "tests", "dags"}
    installed = importlib.metadata.packages_distributions()
    assert {name: installed[name] for name in ours if name in installed} == {}
    assert "tools" in installed  # the shadow that made us rename: this check sees such packages
