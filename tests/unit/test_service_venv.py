"""The shaped venv's identity (emr_inference_tools/service_venv.py): one venv for the targets whose
pins agree,
a new one when a pin changes. Built and used in tests/integration/test_bundles.py."""

from __future__ import annotations

import dataclasses

from emr_inference_tools.bundle import TARGETS
from emr_inference_tools.service_venv import requirements, venv_folder


def test_the_targets_share_one_venv_while_their_pins_agree():
    assert len({venv_folder(target, "3.12.1") for target in TARGETS.values()}) == 1


def test_a_changed_pin_or_interpreter_builds_another(tmp_path):
    mwaa = TARGETS["mwaa"]
    pins = tmp_path / "constraints.txt"
    pins.write_text(mwaa.constraints.read_text().replace("boto3==", "boto3==0.", 1))
    changed = dataclasses.replace(mwaa, constraints=pins)
    assert venv_folder(changed, "3.12.1") != venv_folder(mwaa, "3.12.1")
    assert venv_folder(mwaa, "3.12.8") != venv_folder(mwaa, "3.12.1")
    assert venv_folder(mwaa, "3.12.1").name.startswith("airflow-3.3.1-py3.12-")


def test_the_bundles_own_requirements_are_installed_without_the_url_constraint():
    text = requirements(TARGETS["mwaa"])
    assert "--constraint" not in text
    assert "apache-airflow-providers-amazon[aiobotocore]>=9.39.0,<10" in text.splitlines()
    assert text == requirements(TARGETS["astro"])
