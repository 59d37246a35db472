"""The job-flow and step builders, checked against botocore's own EMR service model."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.validate import ParamValidator
from emr_inference.emr.job_flow import build_job_flow
from emr_inference.emr.steps import inference_step
from emr_inference.job_command import job_arguments

from tests.unit.emr_inference.pipeline_fixtures import MINIMAL
from tests.unit.emr_inference.pipeline_fixtures import resolved_request as request_for

ARTIFACTS = {
    "job_zip": "s3://out-bucket/artifacts/unit/batch_inference-0123abcd.zip",
    "entry_point": "s3://out-bucket/artifacts/unit/main-4567ef.py",
    "bootstrap": "s3://out-bucket/artifacts/unit/install_job_deps-89ab.sh",
    "bootstrap_requirements": "s3://out-bucket/artifacts/unit/cdef/requirements-emr.txt",
}
MANIFEST = "s3://out-bucket/_staging/unit/run/manifest/manifest.json"


def _model():
    return botocore.session.get_session().get_service_model("emr")


def assert_valid(operation: str, params: dict) -> None:
    shape = _model().operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def test_job_flow_is_a_valid_run_job_flow_request():
    request = request_for(
        cluster={
            "log_uri": "s3://logs/emr/",
            "security_configuration": "sec",
            "bootstrap_args": ["--no-cache-dir"],
            "tags": {"team": "ml"},
        }
    )
    job_flow = build_job_flow(request, ARTIFACTS)
    assert_valid("RunJobFlow", job_flow)

    assert job_flow["ReleaseLabel"] == "emr-7.2.0"
    assert [app["Name"] for app in job_flow["Applications"]] == ["Spark", "MXNet"]
    bootstrap = job_flow["BootstrapActions"][0]["ScriptBootstrapAction"]
    assert bootstrap["Path"] == ARTIFACTS["bootstrap"]
    # install_job_deps.sh --python ... --requirements ... [PIP ARGS...]: the job's interpreter is
    # the one PYSPARK_PYTHON names; the cluster's pip arguments come last.
    assert bootstrap["Args"] == [
        "--python", "/opt/emr-inference/venv/bin/python3",
        "--base-python", "/usr/bin/python3",
        "--requirements", ARTIFACTS["bootstrap_requirements"],
        "--no-cache-dir",
    ]  # fmt: skip
    assert job_flow["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert job_flow["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    assert job_flow["LogUri"] == "s3://logs/emr/"
    assert job_flow["SecurityConfiguration"] == "sec"
    assert (job_flow["JobFlowRole"], job_flow["ServiceRole"]) == (
        "EMR_EC2_DefaultRole",
        "EMR_DefaultRole",
    )
    tags = {tag["Key"]: tag["Value"] for tag in job_flow["Tags"]}
    assert tags == {
        "team": "ml",
        "dag_id": "unit",
        "run_id": "scheduled__2026-11-22T00:00:00+00:00",
        "pipeline": "unit",
    }
    groups = {group["InstanceRole"]: group for group in job_flow["Instances"]["InstanceGroups"]}
    assert (groups["MASTER"]["InstanceType"], groups["MASTER"]["InstanceCount"]) == ("m5.xlarge", 1)
    assert (groups["CORE"]["InstanceType"], groups["CORE"]["InstanceCount"]) == ("c5.9xlarge", 4)


def test_a_current_release_cluster_has_no_mxnet_and_builds_on_python_3_11():
    request = request_for(
        cluster={"release_label": "emr-7.13.0"},
        model={**MINIMAL["model"], "runtime": "onnxruntime"},
    )
    job_flow = build_job_flow(request, ARTIFACTS)
    assert_valid("RunJobFlow", job_flow)
    assert job_flow["ReleaseLabel"] == "emr-7.13.0"
    assert [app["Name"] for app in job_flow["Applications"]] == ["Spark"]
    args = job_flow["BootstrapActions"][0]["ScriptBootstrapAction"]["Args"]
    assert args[args.index("--base-python") + 1] == "/usr/bin/python3.11"
    step = inference_step(request, ARTIFACTS, MANIFEST)["HadoopJarStep"]["Args"]
    assert step[step.index("--runtime") + 1] == "onnxruntime"
    assert step[step.index("--conversion-cache") + 1] == (request.artifacts_uri.uri + "converted/")
    requires = [step[i + 1] for i, arg in enumerate(step) if arg == "--require"]
    assert requires == ["onnxruntime==1.32.0", "pillow==13.0.0", "boto3==1.43.117"]


def test_spark_configuration_sets_python_and_threads():
    request = request_for(
        cluster={"task_cpus": 6, "python": "/opt/job/bin/python3", "base_python": "/usr/bin/py3"}
    )
    configurations = {
        c["Classification"]: c for c in build_job_flow(request, ARTIFACTS)["Configurations"]
    }
    defaults = configurations["spark-defaults"]["Properties"]
    assert defaults["spark.task.cpus"] == "6"
    assert defaults["spark.executorEnv.OMP_NUM_THREADS"] == "6"  # omp_threads 0 = task cpus
    assert defaults["spark.python.worker.reuse"] == "true"
    assert defaults["spark.executor.cores"] == "6"
    export = configurations["spark-env"]["Configurations"][0]
    assert export["Classification"] == "export"
    assert export["Properties"]["PYSPARK_PYTHON"] == "/opt/job/bin/python3"
    assert export["Properties"]["PYSPARK_DRIVER_PYTHON"] == "/opt/job/bin/python3"
    assert export["Properties"]["OMP_NUM_THREADS"] == "6"
    bootstrap = build_job_flow(request, ARTIFACTS)["BootstrapActions"][0]["ScriptBootstrapAction"]
    # one setting names the interpreter of the bootstrap and of the job
    assert bootstrap["Args"][:4] == [
        "--python",
        "/opt/job/bin/python3",
        "--base-python",
        "/usr/bin/py3",
    ]


def test_spot_instance_fleets_are_valid():
    request = request_for(
        cluster={
            "instance_collection": "fleets",
            "subnet_ids": ["subnet-a", "subnet-b"],
            "core": {
                "instance_types": ["c5.9xlarge", "c5n.9xlarge"],
                "count": 4,
                "market": "SPOT",
                "ebs_volume_gb": 100,
            },
        }
    )
    job_flow = build_job_flow(request, ARTIFACTS)
    assert_valid("RunJobFlow", job_flow)
    instances = job_flow["Instances"]
    assert "InstanceGroups" not in instances
    assert instances["Ec2SubnetIds"] == ["subnet-a", "subnet-b"]
    fleets = {fleet["InstanceFleetType"]: fleet for fleet in instances["InstanceFleets"]}
    core = fleets["CORE"]
    assert (core["TargetSpotCapacity"], core["TargetOnDemandCapacity"]) == (4, 0)
    assert [c["InstanceType"] for c in core["InstanceTypeConfigs"]] == ["c5.9xlarge", "c5n.9xlarge"]
    assert (
        core["LaunchSpecifications"]["SpotSpecification"]["TimeoutAction"] == "SWITCH_TO_ON_DEMAND"
    )
    assert fleets["MASTER"]["TargetOnDemandCapacity"] == 1


def test_spot_instance_groups_are_valid():
    request = request_for(
        cluster={"core": {"instance_types": ["c5.9xlarge"], "count": 4, "market": "SPOT"}}
    )
    job_flow = build_job_flow(request, ARTIFACTS)
    assert_valid("RunJobFlow", job_flow)
    groups = {group["InstanceRole"]: group for group in job_flow["Instances"]["InstanceGroups"]}
    assert groups["CORE"]["Market"] == "SPOT"
    assert groups["MASTER"]["Market"] == "ON_DEMAND"


def test_step_is_a_valid_add_job_flow_steps_request():
    request = request_for(sse={"mode": "aws:kms", "kms_key_id": "alias/predictions"})
    step = inference_step(request, ARTIFACTS, MANIFEST)
    assert_valid("AddJobFlowSteps", {"JobFlowId": "j-1", "Steps": [step]})
    assert step["ActionOnFailure"] == "CONTINUE"
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    args = step["HadoopJarStep"]["Args"]
    assert args[0] == "spark-submit"
    zip_at = args.index("--py-files")
    assert args[zip_at + 1 : zip_at + 3] == [ARTIFACTS["job_zip"], ARTIFACTS["entry_point"]]
    requires = ["--require", "mxnet==1.9.1", "--require", "pillow==11.3.0"]
    requires += ["--require", "boto3==1.42.97"]  # include/bootstrap/requirements-emr.txt's pins
    assert args[zip_at + 3 :] == [*job_arguments(request, MANIFEST), *requires]


def _options(args: list[str]) -> dict[str, str]:
    assert len(args) % 2 == 0, args
    return dict(zip(args[::2], args[1::2], strict=True))


def test_job_arguments_follow_the_cli_contract():
    request = request_for(sse={"mode": "aws:kms", "kms_key_id": "alias/predictions"})
    request = request.model_copy(
        update={"model": request.model.model_copy(update={"params_sha256": "a" * 64})}
    )
    options = _options(job_arguments(request, MANIFEST))
    assert options["--manifest"] == MANIFEST
    assert options["--output"] == request.job_output_uri.uri
    assert options["--run-id"] == "scheduled__2026-11-22T00:00:00+00:00"
    assert options["--model-name"] == "resnet18"
    assert options["--model-symbol"] == "s3://models/resnet18/resnet18-symbol.json"
    assert options["--model-params-sha256"] == "a" * 64
    assert "--model-symbol-sha256" not in options
    assert options["--mean"] == "0.485,0.456,0.406"
    assert float(options["--scale"]) == pytest.approx(1 / 255)
    assert options["--batch-size"] == "64"
    assert options["--top-k"] == "5"
    assert options["--partitions"] == "0"
    assert options["--sse"] == "aws:kms"
    assert options["--sse-kms-key-id"] == "alias/predictions"


def test_job_arguments_parse_with_the_jobs_own_cli():
    """The two halves agree: the job's own parser accepts what the Airflow side builds."""
    from batch_inference.cli import parse_config

    request = request_for(sse={"mode": "aws:kms", "kms_key_id": "alias/predictions"})
    job = parse_config(job_arguments(request, MANIFEST))
    assert job.manifest_uri == MANIFEST
    assert job.output_uri == request.job_output_uri.uri
    assert job.model.params_uri == request.model.params
    assert job.preprocess.image_size == 224
    assert job.preprocess.mean == pytest.approx((0.485, 0.456, 0.406))
    assert (job.batch_size, job.top_k) == (64, 5)
    assert job.encryption.mode == "aws:kms"
    assert job.encryption.kms_key_id == "alias/predictions"


def test_int8_arguments_parse_with_the_jobs_own_cli():
    from batch_inference.cli import parse_config

    request = request_for(
        precision="int8",
        int8={"min_agreement": 0.995, "on_disagreement": "fp32", "calibration_images": 64,
              "calibration_uri": "s3://calib/digits/"},
    )  # fmt: skip
    job = parse_config(job_arguments(request, MANIFEST))
    assert job.precision == "int8"
    assert job.int8.cache_uri == request.artifacts_uri.uri + "int8/"
    assert (job.int8.min_agreement, job.int8.fallback) == (0.995, True)
    assert (job.int8.calibration_uri, job.int8.calibration_images) == ("s3://calib/digits/", 64)
    assert job.int8.agreement_images == 256
    assert "--precision" not in job_arguments(request_for(), MANIFEST)  # fp32: nothing added


def _gp3(size_gb: int) -> dict:
    """The EbsConfiguration of one gp3 volume of ``size_gb`` per instance (RunJobFlow shape)."""
    volume = {"VolumeSpecification": {"VolumeType": "gp3", "SizeInGB": size_gb}}
    return {"EbsBlockDeviceConfigs": [{**volume, "VolumesPerInstance": 1}]}


@pytest.mark.parametrize("collection", ["groups", "fleets"])
def test_ebs_volumes_reach_every_node_type_that_asks_for_one(collection):
    cluster = {
        "instance_collection": collection,
        "master": {"instance_types": ["m5.xlarge"], "count": 1, "ebs_volume_gb": 64},
        "core": {"instance_types": ["c5.9xlarge", "c5n.9xlarge"][: 1 if collection == "groups"
                                                                 else 2],
                 "count": 4, "ebs_volume_gb": 500},
    }  # fmt: skip
    job_flow = build_job_flow(request_for(cluster=cluster), ARTIFACTS)
    assert_valid("RunJobFlow", job_flow)
    if collection == "groups":
        groups = job_flow["Instances"]["InstanceGroups"]
        ebs = {group["InstanceRole"]: [group["EbsConfiguration"]] for group in groups}
    else:
        fleets = job_flow["Instances"]["InstanceFleets"]
        ebs = {
            fleet["InstanceFleetType"]: [
                c["EbsConfiguration"] for c in fleet["InstanceTypeConfigs"]
            ]
            for fleet in fleets
        }
    assert ebs == {"MASTER": [_gp3(64)], "CORE": [_gp3(500)] * (1 if collection == "groups" else 2)}


def test_no_ebs_configuration_without_a_volume_size():
    job_flow = build_job_flow(request_for(), ARTIFACTS)
    assert all("EbsConfiguration" not in group for group in job_flow["Instances"]["InstanceGroups"])


@pytest.mark.parametrize("rate", [0.0, 0.25, 1.0])
def test_the_error_rate_limit_reaches_the_job(rate):
    from batch_inference.cli import parse_config

    request = request_for(max_error_rate=rate)
    args = job_arguments(request, MANIFEST)
    assert _options(args)["--max-error-rate"] == repr(rate)
    assert parse_config(args).max_error_rate == rate


def test_every_request_setting_reaches_the_job_unchanged():
    """Every job setting, each away from its default, comes out of the job's own parser as the
    request had it: an argument dropped, renamed or mangled on the way fails here."""
    from batch_inference.cli import parse_config
    from batch_inference.config import Encryption, JobConfig, ModelSpec, Preprocess

    model = {
        **MINIMAL["model"],
        "input_name": "pixels", "image_size": 96, "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6],
        "scale": 0.5, "symbol_sha256": "1" * 64, "params_sha256": "2" * 64,
        "labels_sha256": "3" * 64,
    }  # fmt: skip
    request = request_for(
        backend="local",  # the predict_batch_udf engine is refused with emr
        sse={"mode": "aws:kms", "kms_key_id": "alias/predictions"},
        model=model, batch_size=17, top_k=4, partitions=6, max_error_rate=0.3,
        prefetch_threads=3, prefetch_depth=5, omp_threads=2, engine="predict_batch_udf",
    )  # fmt: skip

    expected = JobConfig(
        manifest_uri=MANIFEST,
        output_uri=request.job_output_uri.uri,
        run_id=request.run_id,
        model=ModelSpec(
            name=model["name"],
            symbol_uri=model["symbol"],
            params_uri=model["params"],
            labels_uri=model["labels"],
            symbol_sha256="1" * 64,
            params_sha256="2" * 64,
            labels_sha256="3" * 64,
            input_name="pixels",
        ),
        preprocess=Preprocess(image_size=96, scale=0.5, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6)),
        batch_size=17,
        top_k=4,
        partitions=6,
        max_error_rate=0.3,
        prefetch_threads=3,
        prefetch_depth=5,
        omp_threads=2,
        encryption=Encryption("aws:kms", "alias/predictions"),
        engine="predict_batch_udf",
    )
    assert parse_config(job_arguments(request, MANIFEST)) == expected


def test_fleets_ask_for_exactly_the_configured_capacity():
    request = request_for(
        cluster={
            "instance_collection": "fleets",
            "master": {"instance_types": ["m5.xlarge"], "count": 1},
            "core": {"instance_types": ["c5.9xlarge", "c5n.9xlarge"], "count": 3, "market": "SPOT"},
        }
    )
    fleets = build_job_flow(request, ARTIFACTS)["Instances"]["InstanceFleets"]
    master, core = fleets
    assert master == {
        "Name": "master",
        "InstanceFleetType": "MASTER",
        "TargetOnDemandCapacity": 1,
        "TargetSpotCapacity": 0,  # on-demand: no Spot capacity at all
        "InstanceTypeConfigs": [{"InstanceType": "m5.xlarge", "WeightedCapacity": 1}],
    }
    assert (core["Name"], core["TargetOnDemandCapacity"], core["TargetSpotCapacity"]) == (
        "core",
        0,
        3,
    )
    # One unit per instance, so the capacity is the instance count whatever the type.
    assert [c["WeightedCapacity"] for c in core["InstanceTypeConfigs"]] == [1, 1]
    spot = core["LaunchSpecifications"]["SpotSpecification"]
    assert spot["AllocationStrategy"] == "capacity-optimized"
    assert spot["TimeoutAction"] == "SWITCH_TO_ON_DEMAND" and spot["TimeoutDurationMinutes"] > 0


def test_names_are_cut_to_emrs_256_characters():
    from emr_inference.emr.job_flow import cluster_name
    from emr_inference.job_command import step_name

    request = request_for()
    request = request.model_copy(update={"run_id": "manual__" + "x" * 300})
    for name, start in (
        (cluster_name(request.dag_id, request.run_id), f"{request.dag_id} manual__x"),
        (step_name(request), "batch-inference unit manual__x"),
    ):
        assert len(name) == 256 and name.startswith(start)
    # the date stays in the step's name: each date of a range run has its own step
    assert step_name(request).endswith(f"x {request.partition_date}")
    request = request.model_copy(update={"run_id": "short"})
    assert cluster_name(request.dag_id, request.run_id) == f"{request.dag_id} short"
    assert step_name(request) == f"batch-inference unit short {request.partition_date}"


def test_the_cluster_can_be_torn_down_and_is_reachable_as_configured():
    request = request_for(
        cluster={
            "subnet_ids": ["subnet-a", "subnet-b"],
            "ec2_key_name": "ops",
            "task_cpus": 4,
            "python": "/opt/venv/bin/python",
            "spark_defaults": {"spark.python.worker.reuse": "false"},  # the pipeline's own wins
        },
        omp_threads=3,
    )
    job_flow = build_job_flow(request, ARTIFACTS)
    assert_valid("RunJobFlow", job_flow)
    instances = job_flow["Instances"]
    assert instances["TerminationProtected"] is False  # the teardown task must be able to end it
    assert instances["KeepJobFlowAliveWhenNoSteps"] is True  # steps are added after creation
    assert instances["Ec2SubnetId"] == "subnet-a" and "Ec2SubnetIds" not in instances
    assert instances["Ec2KeyName"] == "ops"
    assert [g["Name"] for g in instances["InstanceGroups"]] == ["master", "core"]
    assert job_flow["VisibleToAllUsers"] is True
    assert job_flow["BootstrapActions"][0]["Name"] == "install-job-dependencies"
    configurations = {c["Classification"]: c for c in job_flow["Configurations"]}
    defaults = configurations["spark-defaults"]["Properties"]
    assert defaults["spark.python.worker.reuse"] == "false"
    assert defaults["spark.task.cpus"] == "4"
    assert defaults["spark.executorEnv.OMP_NUM_THREADS"] == "3"  # the request's, not task_cpus
    assert configurations["spark-env"]["Properties"] == {}
    assert configurations["spark-env"]["Configurations"][0]["Properties"] == {
        "PYSPARK_PYTHON": "/opt/venv/bin/python",
        "PYSPARK_DRIVER_PYTHON": "/opt/venv/bin/python",
        "OMP_NUM_THREADS": "3",
    }


def test_optional_cluster_settings_are_left_out_when_unset():
    job_flow = build_job_flow(request_for(), ARTIFACTS)
    assert not {"LogUri", "SecurityConfiguration"} & set(job_flow)
    assert not {"Ec2SubnetId", "Ec2SubnetIds", "Ec2KeyName"} & set(job_flow["Instances"])


def test_spark_submit_runs_the_driver_on_the_master_under_yarn():
    from emr_inference.emr.steps import spark_submit_command
    from emr_inference.job_command import step_name

    request = request_for()
    command = spark_submit_command(request, ARTIFACTS, MANIFEST)
    assert command[:7] == [
        "spark-submit", "--master", "yarn", "--deploy-mode", "client",
        "--name", step_name(request),
    ]  # fmt: skip
