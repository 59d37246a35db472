"""Executor settings derived from the node type and the model's memory, and the checks that refuse
settings EMR could not run (emr_inference.emr.sizing, docs/SIZING.md)."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from emr_inference.config import ConfigError, load_pipeline, parse_pipeline
from emr_inference.emr.instance_types import INSTANCE_TYPES
from emr_inference.emr.job_flow import build_job_flow
from emr_inference.emr.sizing import (
    SizingError,
    check_sizing,
    executor_plan,
    memory_mb,
    spark_properties,
)
from emr_inference.local.operators import emulated_cluster_conf
from emr_inference.request import resolve_request
from emr_inference.resolved import ResolvedRequest

from tests.conftest import REPO_ROOT
from tests.unit.emr_inference.emr.test_emr_builders import ARTIFACTS, assert_valid
from tests.unit.emr_inference.pipeline_fixtures import pipeline, pipeline_data

PIPELINES = REPO_ROOT / "include" / "pipelines"
CIFAR = PIPELINES / "cifar10_resnet18.yaml"


def request_for(config=None, **params) -> ResolvedRequest:
    """A manual run's resolved request: what sizing and the job-flow builder read."""
    return resolve_request(
        config or pipeline(),
        params,
        dag_id="unit",
        run_id="manual__1",
        data_interval_end=dt.datetime(2026, 11, 23, tzinfo=dt.UTC),
    )


def cluster(**fields):
    return {"master": {"instance_types": ["m5.xlarge"], "count": 1}, **fields}


def config_error(**overrides) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(pipeline_data(**overrides), "unit.yaml")
    return str(caught.value)


def test_cifar_pipeline_gets_sixteen_one_task_executors_per_node():
    request = request_for(load_pipeline(CIFAR))
    properties = spark_properties(request)
    # c5.9xlarge: 36 vCPUs - 4 reserved = 16 executors of 2 vCPUs; YARN 65536 MiB holds 24 of
    # 1024 heap + 384 JVM overhead + 1280 for the Python worker = 2688 MiB
    assert properties["spark.executor.cores"] == "2"
    assert properties["spark.executor.memory"] == "1024m"
    assert properties["spark.executor.memoryOverhead"] == f"{384 + 1280}m"
    assert properties["spark.executor.instances"] == str(16 * 4)
    assert properties["spark.dynamicAllocation.enabled"] == "false"
    assert "spark.executor.pyspark.memory" not in properties  # no address-space limit
    plan = check_sizing(request)
    assert (plan.container_mb, plan.concurrent_tasks, plan.worker_limit_mb) == (2688, 1, None)


def test_the_settings_that_would_have_failed_every_task_are_refused_naming_the_field():
    data = yaml.safe_load(CIFAR.read_text())
    data["cluster"]["spark_defaults"] = {  # what cifar10_resnet18.yaml shipped with before
        "spark.executor.cores": "4",
        "spark.executor.instances": "32",
        "spark.executor.memory": "2g",
        "spark.executor.pyspark.memory": "3g",
    }
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(data, "cifar10_resnet18.yaml")
    message = str(caught.value)
    assert message.startswith(
        "cifar10_resnet18.yaml: cluster.spark_defaults.spark.executor.pyspark.memory: "
    )
    assert "3072 MiB / spark.executor.cores 4 = 768 MiB" in message
    assert "model.worker_address_space_mb 3456" in message
    assert "at least 13824m" in message  # 3456 MiB x 4 cores


def test_a_container_larger_than_the_nodes_yarn_memory_names_the_model_need():
    message = config_error(model={**pipeline_data()["model"], "worker_memory_mb": 70000})
    assert "model.worker_memory_mb: an executor's YARN container needs" in message
    assert "c5.9xlarge (cluster.core) offers YARN 65536 MiB" in message


def test_executor_cores_above_a_nodes_vcpus():
    message = config_error(
        cluster=cluster(core={"instance_types": ["c5.xlarge"], "count": 2}, task_cpus=8)
    )
    assert "cluster.task_cpus: spark.executor.cores 8 is above the 4 vCPUs of c5.xlarge" in message
    explicit = config_error(cluster=cluster(spark_defaults={"spark.executor.cores": "48"}))
    assert "cluster.spark_defaults.spark.executor.cores: spark.executor.cores 48" in explicit


def test_task_cpus_above_the_executor_cores():
    message = config_error(cluster=cluster(spark_defaults={"spark.executor.cores": "2"}))
    assert "cluster.task_cpus: spark.task.cpus 4 is above spark.executor.cores 2" in message


def test_explicit_executor_instances_must_fit_the_nodes():
    message = config_error(cluster=cluster(spark_defaults={"spark.executor.instances": "100"}))
    assert message.startswith("unit.yaml: cluster.spark_defaults.spark.executor.instances: 100")
    assert "the nodes hold 32" in message  # c5.9xlarge x4: (36 - 2) // 4 = 8 per node


def test_an_explicit_overhead_must_leave_room_for_the_python_workers():
    message = config_error(
        cluster=cluster(
            tasks_per_executor=2, spark_defaults={"spark.executor.memoryOverhead": "1g"}
        )
    )
    assert "cluster.spark_defaults.spark.executor.memoryOverhead" in message
    assert "2 worker(s) need 2 x model.worker_memory_mb 1024 = 2048 MiB" in message


def test_an_instance_type_missing_from_the_table_is_named():
    message = config_error(cluster=cluster(core={"instance_types": ["x9.huge"], "count": 1}))
    assert "cluster.core.instance_types: 'x9.huge' is not in the instance type table" in message


def test_every_table_entry_leaves_memory_below_the_instance_memory():
    for kind in INSTANCE_TYPES.values():
        assert 0 < kind.yarn_memory_mb < kind.memory_gib * 1024, kind
        assert kind.vcpus in (4, 8, 16, 32, 36, 48, 64, 72, 96), kind


def test_the_application_master_takes_one_executor_where_it_does_not_fit_beside_them():
    # c5.xlarge: YARN 6144 MiB; containers of 1024 + 384 + 1292 = 2700 MiB: 2 per node leave
    # 744 MiB, less than the AM's 896, so one node runs one executor fewer
    config = pipeline(
        model={**pipeline_data()["model"], "worker_memory_mb": 1292},
        cluster=cluster(
            core={"instance_types": ["c5.xlarge"], "count": 3}, task_cpus=1, reserved_vcpus=0
        ),
    )
    assert executor_plan(request_for(config)).instances == 2 * 3 - 1


def test_fleets_are_sized_for_their_smallest_type_and_task_nodes_add_executors():
    config = pipeline(
        cluster=cluster(
            instance_collection="fleets",
            master={"instance_types": ["m5.xlarge"], "count": 1},
            core={"instance_types": ["c5.9xlarge", "c5.4xlarge"], "count": 2},
            task={"instance_types": ["m5.4xlarge"], "count": 3, "market": "SPOT"},
            task_cpus=2,
        )
    )
    request = request_for(config)
    # c5.4xlarge (16 vCPUs - 2) // 2 = 7 per core node; m5.4xlarge the same per task node
    assert executor_plan(request).instances == 7 * 2 + 7 * 3
    job_flow = build_job_flow(request, ARTIFACTS)
    assert_valid("RunJobFlow", job_flow)
    fleets = {f["InstanceFleetType"]: f for f in job_flow["Instances"]["InstanceFleets"]}
    assert (fleets["TASK"]["TargetSpotCapacity"], fleets["CORE"]["TargetOnDemandCapacity"]) == (
        3,
        2,
    )


def test_task_instance_groups_are_valid():
    config = pipeline(
        cluster=cluster(task={"instance_types": ["c5.9xlarge"], "count": 2, "market": "SPOT"})
    )
    job_flow = build_job_flow(request_for(config), ARTIFACTS)
    assert_valid("RunJobFlow", job_flow)
    groups = {g["InstanceRole"]: g for g in job_flow["Instances"]["InstanceGroups"]}
    assert (groups["TASK"]["Market"], groups["TASK"]["InstanceCount"]) == ("SPOT", 2)
    assert groups["CORE"]["Market"] == "ON_DEMAND"
    # EMR 7.2+: the YARN application master stays on the on-demand core nodes
    yarn_site = next(c for c in job_flow["Configurations"] if c["Classification"] == "yarn-site")
    assert yarn_site["Properties"] == {
        "yarn.node-labels.enabled": "true",
        "yarn.node-labels.am.default-node-label-expression": "ON_DEMAND",
    }


@pytest.mark.parametrize(
    "fields",
    [
        {},  # no task nodes
        {"task": {"instance_types": ["c5.9xlarge"], "count": 2}},  # on-demand task nodes
    ],
)  # fmt: skip
def test_no_node_labels_without_spot_task_nodes_on_a_release_that_has_them(fields):
    job_flow = build_job_flow(request_for(pipeline(cluster=cluster(**fields))), ARTIFACTS)
    assert "yarn-site" not in {c["Classification"] for c in job_flow["Configurations"]}


def test_a_runs_params_are_checked_the_same_way():
    with pytest.raises(ConfigError) as caught:
        request_for(pipeline(), model={"worker_memory_mb": 70000})
    assert str(caught.value).startswith("params: model.worker_memory_mb: ")


def test_local_pipelines_are_not_sized_for_emr():
    config = pipeline(backend="local", cluster=cluster(spark_defaults={"spark.task.cpus": "64"}))
    assert config.backend == "local"


@pytest.mark.parametrize(
    ("text", "mib"), [("512m", 512), ("2g", 2048), ("2G", 2048), ("1024", 1024), ("1t", 1048576)]
)
def test_memory_strings(text, mib):
    assert memory_mb(text, "f") == mib


def test_a_bad_memory_string_names_the_field():
    with pytest.raises(SizingError, match=r"^cluster.spark_defaults.x: 'lots'"):
        memory_mb("lots", "cluster.spark_defaults.x")


def test_local_emulation_keeps_emrs_settings_and_scales_the_executors():
    config = pipeline(
        cluster=cluster(spark_defaults={"spark.executor.pyspark.memory": "16g"}, task_cpus=2),
        local={"workers": 1, "worker_cores": 4, "worker_memory": "4g", "emulate_cluster": True},
    )
    request = request_for(config)
    conf = emulated_cluster_conf(request)
    emr = spark_properties(request)

    def without_count(properties):
        return {k: v for k, v in properties.items() if k != "spark.executor.instances"}

    assert without_count(conf) == {**without_count(emr), "spark.cores.max": "4"}
    assert conf["spark.executor.pyspark.memory"] == "16g"  # the same worker limit as on EMR
    assert conf["spark.executor.instances"] == "2"  # 4 local cores / 2 per executor
    # EMR's count: containers of 1024 + 384 + 1024 + 16384 MiB, 3 per c5.9xlarge, x4 nodes
    assert emr["spark.executor.instances"] == "12"


@pytest.mark.parametrize(
    ("value", "words"), [("many", "'many' is not a whole number"), ("0", "0 must be at least 1")]
)
def test_an_explicit_count_that_is_not_a_positive_whole_number_is_named(value, words):
    message = config_error(cluster=cluster(spark_defaults={"spark.executor.instances": value}))
    assert f"unit.yaml: cluster.spark_defaults.spark.executor.instances: {words}" in message


def test_cores_derived_from_several_tasks_per_executor_name_that_field():
    message = config_error(
        cluster=cluster(
            core={"instance_types": ["c5.xlarge"], "count": 2}, task_cpus=2, tasks_per_executor=4
        )
    )
    assert "cluster.tasks_per_executor: spark.executor.cores 8 is above the 4 vCPUs" in message


def test_a_group_uses_its_first_instance_type_only_with_fleets_every_one():
    # groups take one type (the config refuses more); fleets are sized for their smallest type
    fleets = pipeline(
        cluster=cluster(
            instance_collection="fleets",
            core={"instance_types": ["c5.xlarge", "c5.9xlarge"], "count": 1},
            task_cpus=1,
            reserved_vcpus=0,
        )
    )
    # c5.xlarge: YARN 6144 MiB // (1024 + 384 + 1024) = 2 (a c5.9xlarge alone would hold 26)
    assert executor_plan(request_for(fleets)).instances == 2
