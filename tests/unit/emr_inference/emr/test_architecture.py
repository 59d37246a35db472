"""Graviton (aarch64) nodes: the sourced instance rows, the refusals where the job cannot run on
them (emr_inference.emr.architecture), and a Graviton cluster's bootstrap on its own wheelhouse."""

from __future__ import annotations

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from emr_inference.artifacts import bootstrap_files, sha256_file
from emr_inference.config import ConfigError, parse_pipeline
from emr_inference.emr.architecture import cluster_architecture
from emr_inference.emr.backend import BACKEND
from emr_inference.emr.instance_types import FAMILY_ARCHITECTURES, INSTANCE_TYPES, InstanceType
from emr_inference.emr.job_flow import build_job_flow
from emr_inference.emr.releases import RUNTIME_ARCHITECTURES, SUPPORTED_RELEASES
from emr_inference.emr.wheelhouse import COMPLETE_MARKER, NODE_PLATFORMS, wheelhouse_prefix
from emr_inference.pins import parse_pins

from tests.unit.emr_inference.emr.test_emr_builders import ARTIFACTS, assert_valid
from tests.unit.emr_inference.pipeline_fixtures import MINIMAL, pipeline_data, resolved_request

GRAVITON = {
    "release_label": "emr-7.13.0",
    "master": {"instance_types": ["m7g.xlarge"], "count": 1},
    "core": {"instance_types": ["c7g.4xlarge"], "count": 2},
}


def model(runtime: str) -> dict:
    return {**MINIMAL["model"], "runtime": runtime}


def config_error(cluster: dict, runtime: str = "onnxruntime") -> str:
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(pipeline_data(cluster=cluster, model=model(runtime)), "unit.yaml")
    return str(caught.value)


# EMR Release Guide, "Task configuration" (c7g / m7g instances: yarn.nodemanager.resource.memory-mb)
# and the EC2 User Guide's hardware specifications (vCPUs, memory GiB): instance_types.py's sources.
@pytest.mark.parametrize(
    ("name", "vcpus", "memory_gib", "yarn_mb"),
    [
        ("c7g.xlarge", 4, 8, 5632),
        ("c7g.2xlarge", 8, 16, 11712),
        ("c7g.4xlarge", 16, 32, 23424),
        ("c7g.8xlarge", 32, 64, 54272),
        ("c7g.12xlarge", 48, 96, 85504),
        ("c7g.16xlarge", 64, 128, 116736),
        ("m7g.xlarge", 4, 16, 11712),
        ("m7g.2xlarge", 8, 32, 23424),
        ("m7g.4xlarge", 16, 64, 54272),
        ("m7g.8xlarge", 32, 128, 116736),
        ("m7g.12xlarge", 48, 192, 179200),
        ("m7g.16xlarge", 64, 256, 241664),
    ],
)
def test_graviton_rows_carry_the_sourced_numbers(name, vcpus, memory_gib, yarn_mb):
    assert INSTANCE_TYPES[name] == InstanceType(name, vcpus, memory_gib, yarn_mb, "aarch64")


def test_every_family_has_its_architecture():
    families = {name.split(".")[0] for name in INSTANCE_TYPES}
    assert families == set(FAMILY_ARCHITECTURES)
    aarch64 = {family for family, machine in FAMILY_ARCHITECTURES.items() if machine == "aarch64"}
    assert aarch64 == {"c7g", "m7g"}
    assert INSTANCE_TYPES["c5.9xlarge"].architecture == "x86_64"
    assert INSTANCE_TYPES["m7i.xlarge"].architecture == "x86_64"


def test_the_runtimes_architectures_match_the_pins():
    """openvino's pin carries ``platform_machine == "x86_64"``: aarch64 nodes would not install it,
    so the table must not say it runs there; onnxruntime's applies on both."""
    current = SUPPORTED_RELEASES["emr-7.13.0"]
    pins = {
        pin.name: pin
        for pin in parse_pins(bootstrap_files(current.label)["bootstrap_requirements"].read_text())
    }
    for runtime in current.runtimes:
        for machine in ("x86_64", "aarch64"):
            installs = pins[runtime].applies_to(current.python, machine)
            assert installs == (machine in RUNTIME_ARCHITECTURES[runtime]), (runtime, machine)
    assert RUNTIME_ARCHITECTURES["mxnet"] == ("x86_64",)  # EMR's MXNet: no aarch64 build
    assert SUPPORTED_RELEASES["emr-7.2.0"].architectures == ("x86_64",)
    assert current.architectures == ("x86_64", "aarch64")


def test_graviton_on_the_mxnet_release_is_refused_naming_the_instance_types():
    message = config_error({**GRAVITON, "release_label": "emr-7.2.0"}, runtime="mxnet")
    assert message.startswith("unit.yaml: cluster.core.instance_types: c7g.4xlarge ")
    assert "model.runtime mxnet on emr-7.2.0 runs on x86_64 only" in message
    assert "EMR's MXNet application has no aarch64 build" in message
    assert "aarch64 nodes run emr-7.13.0 + onnxruntime" in message


def test_graviton_with_openvino_is_refused_naming_the_instance_types():
    message = config_error(GRAVITON, runtime="openvino")
    assert message.startswith("unit.yaml: cluster.core.instance_types: c7g.4xlarge ")
    assert "model.runtime openvino on emr-7.13.0 runs on x86_64 only" in message
    assert "glibc 2.35" in message


def test_openvino_stays_on_x86_64_nodes():
    cluster = {
        "release_label": "emr-7.13.0",
        "master": {"instance_types": ["m7i.xlarge"], "count": 1},
        "core": {"instance_types": ["c7i.4xlarge"], "count": 2},
    }
    parse_pipeline(pipeline_data(cluster=cluster, model=model("openvino")), "unit.yaml")


@pytest.mark.parametrize(
    ("cluster", "field", "words"),
    [
        (  # the bootstrap runs on the master too: an x86_64 master beside Graviton core nodes
            {**GRAVITON, "master": {"instance_types": ["m5.xlarge"], "count": 1}},
            "cluster.master.instance_types",
            "m5.xlarge x86_64; cluster.core: c7g.4xlarge aarch64",
        ),
        (
            {**GRAVITON, "task": {"instance_types": ["c5.4xlarge"], "count": 1}},
            "cluster.task.instance_types",
            "c5.4xlarge x86_64; cluster.core: c7g.4xlarge aarch64",
        ),
        (  # a fleet of both
            {
                **GRAVITON,
                "instance_collection": "fleets",
                "core": {"instance_types": ["c7g.4xlarge", "c7i.4xlarge"], "count": 2},
            },
            "cluster.core.instance_types",
            "c7g.4xlarge aarch64, c7i.4xlarge x86_64",
        ),
    ],
)
def test_a_cluster_of_two_architectures_is_refused_naming_the_group(cluster, field, words):
    message = config_error(cluster)
    assert message.startswith(f"unit.yaml: {field}: {words}: every node of a cluster must be one")


def test_a_master_type_missing_from_the_table_is_named():
    message = config_error({**GRAVITON, "master": {"instance_types": ["x9.huge"], "count": 1}})
    assert "cluster.master.instance_types: 'x9.huge' is not in the instance type table" in message


def test_graviton_with_onnxruntime_bootstraps_from_the_aarch64_wheelhouse(aws_conn, bucket, s3_env):
    request = resolved_request(
        cluster={**GRAVITON, "bootstrap_source": "wheelhouse"},
        model=model("onnxruntime"),
        artifacts_uri=f"s3://{bucket}/artifacts/unit/",
        sse={"mode": "none", "kms_key_id": None},
    )  # parsing ran the EMR backend's checks: the architecture, the release's runtime, sizing
    assert cluster_architecture(request.cluster) == "aarch64"
    files = bootstrap_files("emr-7.13.0")
    requirements = files["bootstrap_requirements"]
    artifacts = request.artifacts_uri.uri  # s3://<bucket>/artifacts/unit/<pipeline>/
    aarch64 = f"{artifacts}wheelhouse/aarch64/{sha256_file(requirements)}/"
    # staged before (the marker is the wheelhouse's last object): found, not downloaded again
    key = aarch64.removeprefix(f"s3://{bucket}/") + COMPLETE_MARKER
    s3_env.client().put_object(Bucket=bucket, Key=key, Body=b"")

    staged = BACKEND.stage_artifacts(S3Hook(aws_conn_id=aws_conn), request, files)
    assert staged == {"wheelhouse": aarch64}
    job_flow = build_job_flow(request, {**ARTIFACTS, **staged})
    assert_valid("RunJobFlow", job_flow)
    args = job_flow["BootstrapActions"][0]["ScriptBootstrapAction"]["Args"]
    assert args[args.index("--wheelhouse") + 1] == aarch64
    assert args[args.index("--base-python") + 1] == "/usr/bin/python3.11"
    groups = {group["InstanceRole"]: group for group in job_flow["Instances"]["InstanceGroups"]}
    assert (groups["MASTER"]["InstanceType"], groups["CORE"]["InstanceType"]) == (
        "m7g.xlarge",
        "c7g.4xlarge",
    )


def test_x86_64_and_aarch64_wheelhouses_never_share_a_prefix():
    requirements = bootstrap_files("emr-7.13.0")["bootstrap_requirements"]
    x86, arm = (wheelhouse_prefix("s3://bucket/a/", requirements, m) for m in ("x86_64", "aarch64"))
    assert x86 != arm and not x86.startswith(arm) and not arm.startswith(x86)
    assert "/x86_64/" in x86 and "/aarch64/" in arm
    assert NODE_PLATFORMS["aarch64"] == (
        "manylinux_2_34_aarch64",
        "manylinux_2_28_aarch64",
        "manylinux2014_aarch64",
    )
