"""`make rehearse`: every shipped pipeline runs here with its own job and Spark settings.

The EMR pipeline runs on the local backend emulating its cluster (executor cores and memory,
Python worker memory, task CPUs, spark_defaults; executors scaled to this machine) with a stand-in
ResNet-18 v1 and realistic photos. The settings cifar10_resnet18.yaml shipped with before the
sizing work (spark.executor.pyspark.memory 3g over 4 executor cores: 768 MiB of address space per
Python worker) are refused before Spark, and, run anyway, fail every task as they would on EMR.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.support import runbook

#: The shipped EMR pipelines: what a rehearsal is for (the node twin, EMR's Spark settings). The
#: local demo pipeline runs as it is in test_dag_run, test_demo_api and `make demo`'s test.
PIPELINES = sorted(
    path.stem
    for path in (REPO_ROOT / "include" / "pipelines").glob("*.yaml")
    if yaml.safe_load(path.read_text()).get("backend", "emr") == "emr"
)
OLD_SPARK_DEFAULTS = {  # cifar10_resnet18.yaml before: 2 tasks per executor, 3g of Python memory
    "spark.executor.cores": "4",
    "spark.executor.instances": "32",
    "spark.dynamicAllocation.enabled": "false",
    "spark.executor.memory": "2g",
    "spark.executor.pyspark.memory": "3g",
}

pytestmark = pytest.mark.slow


def rehearse(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emr_inference_tools.rehearse", *args, "--home", str(home)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": "plugins:spark_jobs"},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_shipped_pipeline_rehearses_green(pipeline: str) -> None:
    """docs/DEPLOYMENT.md's command, as written (its work folder is .rehearsal/<pipeline>/)."""
    result = subprocess.run(
        ["make", "rehearse", f"PIPELINE={pipeline}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    assert "[rehearse] PASSED" in out
    assert "published 200 rows (0 errors)" in out
    if pipeline == "cifar10_resnet18":  # on the node twin: the workers said so themselves
        assert "Spark driver and Python workers run on the emr-7.2.0 node twin: python 3.9." in out
        assert re.search(r"the Python workers ran on: .*mxnet 1\.9\.1.*python 3\.9\.\d+", out)
        assert "the rows were made by mxnet fp32 on engine rdd" in out
    if pipeline == "cifar10_resnet18_onnx":  # Python 3.11, no MXNet: converted here first
        assert "run on the emr-7.13.0 node twin: python 3.11." in out
        assert "emr-7.13.0's nodes have no MXNet: converting the model here first" in out
        assert re.search(r"the Python workers ran on: .*mxnet None, numpy 2\.\d+\.\d+, "
                         r"onnxruntime 1\.32\.0, .*python 3\.11\.\d+", out)  # fmt: skip
        assert "the rows were made by onnxruntime fp32 on engine rdd, top-1 agreement with " in out
    if pipeline == "cifar10_resnet18":  # the EMR settings reached spark-submit
        assert '"spark.executor.cores": "2"' in out and '"spark.task.cpus": "2"' in out
        work = REPO_ROOT / ".rehearsal" / pipeline
        command = next(work.glob("airflow/local_clusters/*/steps/step-001/command.json"))
        assert "spark.executor.memoryOverhead=1664m" in command.read_text()


@pytest.fixture
def old_cifar(tmp_path: Path) -> Path:
    data = yaml.safe_load((REPO_ROOT / "include/pipelines/cifar10_resnet18.yaml").read_text())
    data["cluster"]["spark_defaults"] = OLD_SPARK_DEFAULTS
    data["cluster"]["tasks_per_executor"] = 2
    path = tmp_path / "cifar10_resnet18.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_old_settings_are_refused_before_any_spark(old_cifar: Path, tmp_path: Path) -> None:
    result = rehearse(str(old_cifar), home=tmp_path / "home")
    assert result.returncode == 1
    assert "cluster.spark_defaults.spark.executor.pyspark.memory" in result.stdout
    assert "= 768 MiB of address space" in result.stdout
    assert "FAILED before any Spark" in result.stdout
    assert not (tmp_path / "home" / "cifar10_resnet18" / "airflow").exists()


def test_the_onnx_pipeline_rehearses_int8_on_its_node_twin() -> None:
    """docs/DEPLOYMENT.md's int8 command, as written: converted and quantized here (no onnx on the
    nodes), then the nodes' ONNX Runtime runs the int8 model behind its gate; every row int8."""
    command = "make rehearse PIPELINE=cifar10_resnet18_onnx PRECISION=int8"
    assert f"\n{command}\n" in runbook.docs_text()
    result = subprocess.run(
        command.split(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    assert "[rehearse] PASSED" in out and "published 200 rows (0 errors)" in out
    assert "so the rehearsal gates at 50%" in out
    made_by = re.search(
        r"the rows were made by onnxruntime int8 on engine rdd, top-1 agreement with MXNet "
        r"100\.00%, int8 with fp32 (\d+\.\d\d)%",
        out,
    )
    assert made_by and 50 <= float(made_by.group(1)) < 100, out[-3000:]
    assert "onnxruntime 1.32.0, openvino 2026.4.1, pillow 13.0.0, python 3.11." in out  # the twin


def test_the_old_settings_fail_every_task_as_on_emr(old_cifar: Path, tmp_path: Path) -> None:
    result = rehearse(str(old_cifar), "--skip-sizing-check", "--images", "32", home=tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "FAILED: nothing published" in result.stdout
    # each Python worker ran under the 768 MiB address-space limit and could not map MXNet
    assert "Setting mem limits to 805306368" in "".join(
        path.read_text(errors="replace") for path in tmp_path.glob("**/work-0/**/stderr")
    )
    # where the limit bites first depends on what the worker allocates first: MXNet's library,
    # the model's params (768 MiB less the prefetch's batch arrays), or its prefetch threads'
    # stacks (16 threads since they were measured to keep an int8 core busy)
    signs = (
        "libmxnet.so: failed to map segment",
        "MXNetError",
        "MemoryError",
        "cannot start prefetch thread",
        "can't start new thread",  # a thread of another library, refused the same way
    )
    assert any(sign in result.stdout for sign in signs), result.stdout[-3000:]


def test_pins_that_cannot_install_on_the_node_fail_before_any_spark(tmp_path: Path) -> None:
    """The pins shipped before the node twin: one urllib3 2 pin, which botocore refuses on 3.9."""
    from tests.support.old_pins import write_single_urllib3_2_pin

    old = write_single_urllib3_2_pin(tmp_path / "requirements-emr.txt")
    result = rehearse(
        "cifar10_resnet18", "--bootstrap-requirements", str(old), home=tmp_path / "home"
    )
    assert result.returncode == 1
    assert "FAILED before any Spark: the EMR node's environment: the bootstrap action" in (
        result.stdout
    )
    assert "ResolutionImpossible" in result.stdout
    assert "botocore 1.42.97 depends on urllib3<1.27" in result.stdout
    assert not (tmp_path / "home" / "cifar10_resnet18" / "airflow").exists()
