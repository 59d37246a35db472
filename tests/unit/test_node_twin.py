"""The node twin's decisions that need no build: which interpreter, when to rebuild, what the
job's interpreter must report, and the rehearsal's verdict on what the workers ran."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from emr_inference.emr.releases import EMR_7_2_0, EMR_7_13_0

from emr_inference_tools import node_twin
from emr_inference_tools.node_twin import (
    NodeTwin,
    NodeTwinError,
    expected_versions,
    find_node_python,
    twin_key,
)
from emr_inference_tools.rehearse import (
    environment_verdict,
    int8_gate_for_stand_in,
    prepared_here,
    rehearsal_pipeline,
)

REQUIREMENTS = node_twin.release_requirements(EMR_7_2_0).read_text()


def test_a_node_python_of_another_version_is_refused_saying_how_to_get_one(monkeypatch):
    monkeypatch.setenv("NODE_PYTHON", sys.executable)  # this machine's 3.11
    with pytest.raises(NodeTwinError) as raised:
        find_node_python("3.9")
    message = str(raised.value)
    assert f"tried: {sys.executable}" in message
    assert "pyenv install 3.9" in message and "NODE_PYTHON=/path/to/python3.9" in message


def test_a_missing_node_python_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("NODE_PYTHON", str(tmp_path / "python3.9"))
    with pytest.raises(NodeTwinError, match=r"no CPython 3.9 for the node twin"):
        find_node_python("3.9")


def test_without_node_python_a_pyenv_install_is_found(monkeypatch, tmp_path):
    monkeypatch.delenv("NODE_PYTHON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    for version in ("3.9.2", "3.9.18", "3.11.7"):  # 3.9.18 is newer than 3.9.2
        binary = tmp_path / "pyenv" / "versions" / version / "bin" / f"python{version[:3]}"
        binary.parent.mkdir(parents=True)
        binary.symlink_to(sys.executable)  # runs, but reports 3.11: refused below
    with pytest.raises(NodeTwinError) as raised:
        find_node_python("3.9")
    tried = str(raised.value).split("tried: ")[1].split(")")[0].split(", ")
    assert [Path(p).parent.parent.name for p in tried] == ["3.9.18", "3.9.2"]


def test_the_twin_is_rebuilt_exactly_when_what_decides_it_changes():
    key = twin_key(EMR_7_2_0, REQUIREMENTS, "3.9.18")
    assert key == twin_key(EMR_7_2_0, REQUIREMENTS, "3.9.18")
    assert key != twin_key(EMR_7_2_0, REQUIREMENTS.replace("1.26.20", "1.26.19"), "3.9.18")
    assert key != twin_key(EMR_7_2_0, REQUIREMENTS, "3.9.19")
    assert key != twin_key(replace(EMR_7_2_0, spark="3.5.2"), REQUIREMENTS, "3.9.18")
    numpy = {**EMR_7_2_0.application_packages, "numpy": "1.22.4"}
    assert key != twin_key(replace(EMR_7_2_0, application_packages=numpy), REQUIREMENTS, "3.9.18")


def test_the_job_interpreter_must_report_emr_packages_and_the_node_pins():
    assert expected_versions(EMR_7_2_0, REQUIREMENTS) == {
        "mxnet": "1.9.1",  # EMR's MXNet application, not a pin
        "numpy": "1.23.5",
        "pillow": "11.3.0",  # the bootstrap's pins for 3.9
        "boto3": "1.42.97",
    }


def test_a_current_release_twin_reports_its_runtime_at_the_bootstrap_pins():
    text = node_twin.release_requirements(EMR_7_13_0).read_text()
    assert node_twin.release_requirements(EMR_7_13_0).name == "requirements-emr-7.13.0.txt"
    assert expected_versions(EMR_7_13_0, text) == {
        "onnxruntime": "1.32.0",  # no MXNet application: every package is the bootstrap's pin
        "openvino": "2026.4.1",  # x86_64, as this machine and the priced instance types
        "numpy": "2.4.6",
        "pillow": "13.0.0",
        "boto3": "1.43.117",
    }


TWIN = NodeTwin(EMR_7_2_0, Path("/twin"), Path("/spark"), {"python": "3.9.18", "mxnet": "1.9.1"})


def test_the_rehearsal_fails_when_a_worker_ran_elsewhere():
    assert environment_verdict([{"python": "3.9.18", "mxnet": "1.9.1"}], TWIN) == []
    problems = environment_verdict(
        [{"python": "3.9.18", "mxnet": "1.9.1"}, {"python": "3.11.7", "mxnet": "1.9.1"}], TWIN
    )
    assert problems == [
        "a Python worker ran on python 3.11.7, the emr-7.2.0 node has 3.9.18: the rehearsal did "
        "not run on the node twin"
    ]
    assert environment_verdict([], TWIN) == [
        "the Python workers reported no environment (worker_environments is empty)"
    ]


def test_the_twin_runs_spark_and_its_workers_on_its_own_interpreter():
    env = TWIN.spark_env()
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == "/twin/venv/bin/python3"
    assert env["EMR_INFERENCE_LOCAL_SPARK_HOME"] == "/spark"
    assert TWIN.spark_submit == Path("/spark/bin/spark-submit")


def test_the_local_backend_runs_the_spark_it_is_pointed_at(monkeypatch, tmp_path):
    from emr_inference.local.cluster import LocalCluster, spark_class, spark_submit

    default = spark_class()
    assert default.parent.parent.name == "pyspark"  # pip's Spark beside this interpreter
    monkeypatch.setenv("EMR_INFERENCE_LOCAL_SPARK_HOME", str(tmp_path / "spark-3.5.1"))
    assert spark_class() == tmp_path / "spark-3.5.1" / "bin" / "spark-class"
    assert spark_submit() == tmp_path / "spark-3.5.1" / "bin" / "spark-submit"
    cluster = LocalCluster("local-x", str(tmp_path / "state"))
    assert cluster.process_env()["SPARK_HOME"] == str(tmp_path / "spark-3.5.1")


def test_the_rehearsal_leaves_the_pipelines_alerts_out():
    """A rehearsal tells no one, and airflow dags test cannot end a run of a DAG with a deadline
    alert (Airflow 3.3.2): the rehearsed pipeline has no alerts, whatever the file says."""
    from tests.unit.emr_inference.test_plan import cifar_request

    alerts = {"sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:a", "late_after_minutes": 5}
    rehearsed = rehearsal_pipeline({"pipeline": "p", "alerts": alerts}, cifar_request())
    assert rehearsed["alerts"] is None
    assert rehearsed["backend"] == "local" and rehearsed["pipeline"] == "p"


def test_only_an_int8_rehearsal_of_a_random_stand_in_gets_the_lenient_int8_gate():
    rehearsed = {"pipeline": "p", "int8": {"calibration_images": 64}}
    random, trained = "resnet18_v1", "digits-cnn"
    lenient = int8_gate_for_stand_in(rehearsed, random, "int8")
    assert lenient["int8"] == {"calibration_images": 64, "min_agreement": 0.5}
    assert int8_gate_for_stand_in(rehearsed, random, "fp32") == rehearsed
    assert int8_gate_for_stand_in(rehearsed, trained, "int8") == rehearsed  # a trained stand-in


def test_a_rehearsal_converts_or_quantizes_here_only_what_the_nodes_cannot():
    from emr_inference.config import ModelConfig

    labels = "s3://models/m/labels.txt"
    mxnet = {
        "name": "m",
        "symbol": "s3://models/m/s.json",
        "params": "s3://models/m/p",
        "labels": labels,
    }
    converted = ModelConfig(**{**mxnet, "runtime": "onnxruntime"})
    onnx_file = ModelConfig(
        name="m", onnx="s3://models/m/m.onnx", labels=labels, runtime="openvino"
    )
    assert prepared_here(EMR_7_13_0, converted, "fp32") == (
        "emr-7.13.0's nodes have no MXNet: converting the model here first"
    )
    assert prepared_here(EMR_7_13_0, onnx_file, "fp32") is None  # nothing to convert
    assert prepared_here(EMR_7_13_0, onnx_file, "int8") == (
        "emr-7.13.0's nodes cannot quantize: quantizing the ONNX file here first"
    )
    assert prepared_here(EMR_7_2_0, ModelConfig(**mxnet), "int8") is None  # MXNet on the nodes
    assert prepared_here(None, converted, "fp32") is None  # no twin: this machine converts
