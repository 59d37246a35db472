"""The docs cannot drift: CONFIGURATION.md is what the generator produces, the README's commands
exist, every config field is described, and every command block an operator runs is run by
tests/e2e/test_runbook.py (or says why it cannot be)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from emr_inference.config import PipelineConfig
from pydantic import BaseModel

from tests.support import runbook
from tools import gen_config_docs

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
MAKEFILE = REPO_ROOT / "Makefile"


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every model nested in its fields' JSON schema."""
    nested = set(model.model_json_schema().get("$defs", {}))
    return [model, *(m for m in gen_config_docs.SECTIONS if m.__name__ in nested)]


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_-]+):", MAKEFILE.read_text(), flags=re.MULTILINE))


def test_configuration_md_is_what_the_generator_produces():
    committed = gen_config_docs.OUTPUT.read_text()
    assert committed == gen_config_docs.render(), (
        "docs/CONFIGURATION.md is out of date: run `make docs` and commit it"
    )


def test_check_mode_reports_a_stale_file(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "CONFIGURATION.md"
    stale.write_text(gen_config_docs.render().replace("batch_size", "batchsize"))
    monkeypatch.setattr(gen_config_docs, "OUTPUT", stale)
    assert gen_config_docs.main(["--check"]) == 1
    assert "make docs" in capsys.readouterr().err
    assert gen_config_docs.main([]) == 0
    assert gen_config_docs.main(["--check"]) == 0


@pytest.mark.parametrize("model", _models(PipelineConfig), ids=lambda model: model.__name__)
def test_every_config_field_is_described_in_the_reference(model):
    text = gen_config_docs.render()
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} needs Field(description=...)"
        assert f"| `{name}` |" in text


def test_reference_shows_types_defaults_constraints_rules_and_the_job_help():
    text = gen_config_docs.render()
    row = "| `batch_size` | integer | `64` | ≥ 1, ≤ 4096 | Images per forward pass |"
    assert row in text
    assert '| `mode` | `"none"` \\| `"AES256"` \\| `"aws:kms"` | `"none"` |' in text
    assert "| `model` | [object](#model) | *required* |" in text
    assert "* kms_key_id is only valid with mode aws:kms." in text
    assert "--max-error-rate MAX_ERROR_RATE" in text  # the job's --help, at a fixed width
    assert all(
        len(line) <= gen_config_docs.HELP_WIDTH for line in gen_config_docs.job_help().splitlines()
    )


def test_readme_starts_with_title_sentence_and_the_two_commands():
    title, sentence, commands = README.read_text().split("\n\n")[:3]
    assert title.startswith("# ") and "\n" not in title
    assert "\n" not in sentence and sentence.endswith(".") and sentence.count(". ") == 0
    lines = commands.splitlines()
    assert lines[0].startswith("```") and lines[-1] == "```"
    assert [line.split("#")[0].strip() for line in lines[1:-1]] == ["make demo", "make test"]


def test_every_make_target_in_the_readme_exists():
    mentioned = set(re.findall(r"\bmake ([a-z][a-z0-9_-]*)", README.read_text()))
    assert {"demo", "test"} <= mentioned
    missing = mentioned - make_targets()
    assert not missing, f"README mentions make targets the Makefile lacks: {sorted(missing)}"


def test_readme_links_the_reference_docs():
    text = README.read_text()
    for target in re.findall(r"\]\(((?:docs|include|plugins|spark_jobs|bench|tools)/[^)#]+)", text):
        assert (REPO_ROOT / target).exists(), f"README links a missing file: {target}"
    assert "docs/CONFIGURATION.md" in text


def test_every_runbook_block_is_marked_once_and_run_by_the_runbook_test():
    marked = [block.name for block in runbook.blocks() if block.name]
    assert sorted(marked) == sorted(runbook.RUNBOOK_BLOCKS)
    e2e = (REPO_ROOT / "tests" / "e2e" / "test_runbook.py").read_text()
    for name in runbook.RUNBOOK_BLOCKS:
        assert f'"{name}"' in e2e, f"tests/e2e/test_runbook.py does not run the {name!r} block"


def test_every_other_command_block_is_a_variables_block_or_says_why_it_is_not_run():
    unaccounted = runbook.unaccounted_blocks()
    assert unaccounted == [], [f"{block.doc}: {block.first_line}" for block in unaccounted]
    for prefix in runbook.NOT_RUN:  # no stale entries
        assert any(b.first_line.startswith(prefix) for b in runbook.blocks("bash")), prefix


def test_the_runbook_blocks_use_only_the_variables_the_docs_export():
    exported = runbook.exported_variables()
    # AIRFLOW_CONN_AWS_DEFAULT: read by make plan, not named in a block
    assert exported == {"AIRFLOW_URL", "AIRFLOW_HOME", "DAG_ID", "DATE", "AIRFLOW_CONN_AWS_DEFAULT"}
    set_in_blocks = {"PASSWORD", "TOKEN", "RUN_ID", "EMR_INFERENCE_LOCAL_STATE"}
    for name in runbook.RUNBOOK_BLOCKS:
        used = set(re.findall(r"\$\{?([A-Z_]+)", runbook.runbook_block(name).code))
        assert used <= exported | set_in_blocks, (name, used - exported - set_in_blocks)
