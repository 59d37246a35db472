"""The docs cannot drift: CONFIGURATION.md is what the generator produces, the commands the docs
name exist, every link (and its anchor) resolves, every config field is described, no doc cites an
issue number, and every command block an operator runs is run by tests/e2e/test_runbook.py (or
says why it cannot be)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from emr_inference.config import PipelineConfig
from pydantic import BaseModel

from emr_inference_tools import gen_config_docs
from tests.support import runbook

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
MAKEFILE = REPO_ROOT / "Makefile"
#: every hand-written or generated Markdown doc: the README and docs/*.md
ALL_DOCS = (README, *sorted((REPO_ROOT / "docs").glob("*.md")))
_FENCE = re.compile(r"^[ ]*```.*?^[ ]*```", re.DOTALL | re.MULTILINE)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """``text`` without its code blocks and spans (where ``[x](y)`` is code, not a link)."""
    return re.sub(r"`[^`\n]*`", "", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    """The anchors of ``doc``'s headings (a repeated heading's get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", doc.read_text()), flags=re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(doc: Path) -> list[str]:
    """The links of ``doc`` to a missing file, or to a heading its target does not have."""
    broken = []
    for target in _LINK.findall(_prose(doc.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.name})")
    return broken


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


@pytest.mark.parametrize("doc", ALL_DOCS[1:], ids=lambda doc: doc.name)
def test_every_make_target_in_the_docs_exists(doc):
    """In docs/*.md, a command is `make x` in backticks or a code line (prose says "make a ...")."""
    text = doc.read_text()
    mentioned = set(re.findall(r"`make ([a-z][a-z0-9_-]*)", text))
    mentioned |= set(re.findall(r"^[ ]*make ([a-z][a-z0-9_-]*)", text, flags=re.MULTILINE))
    missing = mentioned - make_targets()
    assert not missing, f"{doc.name} mentions make targets the Makefile lacks: {sorted(missing)}"


def test_the_slugs_are_githubs():
    assert slug("Backfills: one run per date, or one range run") == (
        "backfills-one-run-per-date-or-one-range-run"
    )
    assert slug("Airflow's partitions (`partition_key`)") == "airflows-partitions-partition_key"
    assert slug("`make airflow`: the UI and the REST API") == "make-airflow-the-ui-and-the-rest-api"
    assert slug("8. Backfills") == "8-backfills"


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda doc: doc.name)
def test_every_link_and_anchor_resolves(doc):
    assert broken_links(doc) == []


def test_a_broken_link_or_anchor_is_caught(tmp_path):
    (tmp_path / "OTHER.md").write_text("# Other\n\n## A section: here\n")
    doc = tmp_path / "DOC.md"
    doc.write_text(
        "# Doc\n\n[ok](OTHER.md#a-section-here) [ok](#doc) [gone](MISSING.md) "
        "[moved](OTHER.md#not-there) [here](#nowhere)\n\n```\n[code](NOT-A-LINK.md)\n```\n"
    )
    assert broken_links(doc) == [
        "MISSING.md (no such file)",
        "OTHER.md#not-there (no heading #not-there in OTHER.md)",
        "#nowhere (no heading #nowhere in DOC.md)",
    ]


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda doc: doc.name)
def test_no_doc_cites_an_issue_number(doc):
    """Issue numbers mean nothing to a reader of the docs: say what the change was instead."""
    cited = re.findall(r"(?:[Ii]ssues? #?\d+|(?<![\w&/(])#\d+\b)", _prose(doc.read_text()))
    assert cited == [], f"{doc.name} cites {cited}"


def test_every_runbook_doc_exists_and_the_readme_links_each_reader_doc():
    assert all(doc.exists() for doc in runbook.DOCS)
    text = README.read_text()
    for name in ("OPERATIONS", "DEPLOYMENT", "CONFIGURATION", "CONTRIBUTING", "TESTING"):
        assert f"](docs/{name}.md)" in text, f"README's map does not link docs/{name}.md"


def test_readme_links_the_reference_docs():
    text = README.read_text()
    for target in re.findall(r"\]\(((?:docs|include|plugins|spark_jobs|bench|tools)/[^)#]+)", text):
        assert (REPO_ROOT / target).exists(), f"README links a missing file: {target}"
    assert "docs/CONFIGURATION.md" in text


def test_every_runbook_block_is_marked_once_and_run_by_the_runbook_test():
    marked = [block.name for block in runbook.blocks() if block.name]
    assert sorted(marked) == sorted(runbook.RUNBOOK_BLOCKS)  # each name once, across all DOCS
    for name in runbook.RUNBOOK_BLOCKS:
        assert runbook.runbook_block(name).code  # found, whichever doc holds it now
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


_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda doc: doc.name)
def test_every_model_section_a_doc_shows_is_a_valid_one(doc):
    """A ``model:`` the docs tell a reader to write validates as the pipeline's model section."""
    import yaml
    from emr_inference.config import ModelConfig

    for block in _YAML_BLOCK.findall(doc.read_text()):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            ModelConfig.model_validate(data["model"])
