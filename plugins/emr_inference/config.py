"""Pipeline configuration: one YAML file in ``include/pipelines/`` -> one typed, validated config.

A pipeline file has two kinds of fields:

* DAG settings (``pipeline``, ``backend``, ``schedule``, ``start_date``, ``catchup``, ...), fixed
  when the DAG is parsed;
* request fields (:class:`RequestDefaults`): the defaults of every Param a run can override at
  trigger time (input, output, model, batch size, cluster shape, ...). Params and YAML use the same
  names; :mod:`emr_inference.params` derives the Params' JSON schema from these models, so the YAML
  check and the trigger-time check are the same rules.

Errors name the file and the dotted path of the bad field (``model.image_size``).
"""

from __future__ import annotations

import datetime as dt
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from batch_inference.contract.s3 import encryption_args
from batch_inference.contract.settings import CONFIG, KEYS_PER_PARTITION_MIN, SETTING, SETTINGS
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from emr_inference.backends import REGISTERED, backend_named, check_backend_name

#: An s3:// URI: a bucket name and an optional key (Jinja templates allowed; the rendered URI is
#: checked strictly by emr_inference.s3 when a run resolves its request).
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"
#: What an s3:// URI matching S3_URI_PATTERN must not contain: a bucket with "..", ".-" or "-.",
#: or a key with an empty, "." or ".." path segment. A JSON schema ``not`` in the Params (no
#: look-around: the models' regex engine has none), so the REST API refuses them with a 400.
S3_URI_FORBIDDEN = r"^s3://[^/]*(\.\.|\.-|-\.)|^s3://[^/]+/(.*/)?(\.{1,2}(/|$)|/)"
#: A calendar date as the Params and the templates use it (month 01-12, day 01-31; the JSON
#: schema's ``format: date`` and the model also refuse days a month lacks, such as 2026-02-30).
DATE_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"


def _check_s3_uri(uri: str) -> str:
    """Refuse what S3_URI_FORBIDDEN describes (the Params refuse it through their schema)."""
    if re.search(S3_URI_FORBIDDEN, uri):
        raise ValueError(
            "an s3:// URI needs a valid bucket name and no empty, '.' or '..' path segment"
        )
    return uri


def _check_date(value: str) -> str:
    """Refuse a well-formed but impossible date (2026-02-30)."""
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a calendar date") from None
    return value


S3Uri = Annotated[
    str,
    Field(
        pattern=S3_URI_PATTERN,
        max_length=1024,
        json_schema_extra={"not": {"type": "string", "pattern": S3_URI_FORBIDDEN}},
    ),
    AfterValidator(_check_s3_uri),
]
IsoDate = Annotated[
    str,
    Field(pattern=DATE_PATTERN, json_schema_extra={"format": "date"}),
    AfterValidator(_check_date),
]
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
Triple = Annotated[list[float], Field(min_length=3, max_length=3)]
InstanceType = Annotated[str, Field(pattern=r"^[a-z0-9-]+\.[a-z0-9]+$", max_length=64)]

# Every free-form string is bounded (a Param's maxLength), so an oversize value is refused at
# trigger time with a 400. Tags: EMR's limits (50 a cluster, of which we add 3; key 128, value 256).
SubnetId = Annotated[str, Field(max_length=255)]
PipArgument = Annotated[str, Field(max_length=1024)]
SparkProperty = Annotated[str, Field(max_length=256)]
SparkValue = Annotated[str, Field(max_length=4096)]
TagKey = Annotated[str, Field(max_length=128)]
TagValue = Annotated[str, Field(max_length=256)]
MAX_USER_TAGS = 47


def job_field(name: str, **constraints: Any) -> Any:
    """A config field that is the job setting ``name``: its default and description come from
    :mod:`batch_inference.contract.settings`; ``constraints`` (bounds, pattern) are ours."""
    setting = SETTING[name]
    if setting.required:
        return Field(description=setting.help, **constraints)
    default = setting.default
    if isinstance(default, tuple):  # a JSON list in the config and the Params
        return Field(default_factory=lambda: list(default), description=setting.help, **constraints)
    return Field(default=default, description=setting.help, **constraints)


class ConfigError(ValueError):
    """A pipeline file (or a run's Params) is invalid; the message names the file and field."""


class _Strict(BaseModel):
    """Base of every config model: unknown fields are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    """The model the job loads (an MXNet symbol JSON and params, or an ONNX file, and labels in
    S3), and what runs it."""

    name: str = job_field("model.name", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    symbol: S3Uri | None = job_field("model.symbol")
    params: S3Uri | None = job_field("model.params")
    labels: S3Uri = job_field("model.labels")
    symbol_sha256: Sha256 | None = job_field("model.symbol_sha256")
    params_sha256: Sha256 | None = job_field("model.params_sha256")
    labels_sha256: Sha256 | None = job_field("model.labels_sha256")
    onnx: S3Uri | None = job_field("model.onnx")
    onnx_sha256: Sha256 | None = job_field("model.onnx_sha256")
    input_name: str = job_field("model.input_name", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    image_size: int = job_field("model.image_size", ge=8, le=4096)
    mean: Triple = job_field("model.mean")
    std: Triple = job_field("model.std")
    scale: float = job_field("model.scale", gt=0, le=1)
    runtime: Literal["mxnet", "onnxruntime", "openvino"] = job_field("model.runtime")
    worker_memory_mb: int = Field(
        default=1024,
        ge=64,
        le=262144,
        description=(
            "Peak resident memory (MiB) of one Python worker running this model at this batch "
            "size, as `make rehearse` measures it; reserved per task in the executors' memory"
        ),
    )
    worker_address_space_mb: int = Field(
        default=2048,
        ge=64,
        le=1048576,
        description=(
            "Peak address space (MiB) of one Python worker, as `make rehearse` measures it; an "
            "explicit spark.executor.pyspark.memory must give each worker at least this"
        ),
    )

    def files(self) -> dict[str, str]:
        """The model's files, by field (``symbol``, ``params``, ``labels``, ``onnx``): those the
        pipeline names."""
        named = {part: getattr(self, part) for part in ("symbol", "params", "labels", "onnx")}
        return {part: uri for part, uri in named.items() if uri is not None}

    @model_validator(mode="after")
    def _one_model(self) -> ModelConfig:
        """An MXNet model (symbol and params) or an ONNX file, not both; ONNX runs on a
        converted runtime."""
        mxnet_files = {
            f"model.{name}": getattr(self, name)
            for name in ("symbol", "params", "symbol_sha256", "params_sha256")
            if getattr(self, name) is not None
        }
        if self.onnx is None:
            if self.onnx_sha256 is not None:
                raise ValueError("model.onnx_sha256: given without model.onnx")
            if self.symbol is None or self.params is None:
                raise ValueError(
                    "model.symbol and model.params: required (or model.onnx: an ONNX file, run by "
                    "onnxruntime or openvino)"
                )
        elif mxnet_files:
            raise ValueError(
                f"model.onnx names the model: leave out {', '.join(sorted(mxnet_files))} (an MXNet "
                "model is converted, an ONNX file is run as it is)"
            )
        elif self.runtime == "mxnet":
            raise ValueError(
                "model.onnx: an ONNX file runs on model.runtime onnxruntime or openvino"
            )
        return self


class SseConfig(_Strict):
    """Server-side encryption for every object the pipeline writes."""

    mode: Literal["none", "AES256", "aws:kms"] = job_field("sse.mode")
    kms_key_id: str | None = job_field("sse.kms_key_id", max_length=2048)

    @model_validator(mode="after")
    def _kms_key_needs_kms(self) -> SseConfig:
        """kms_key_id is only valid with mode aws:kms."""
        encryption_args(self.mode, self.kms_key_id)
        return self


class Int8Config(_Strict):
    """How the int8 model is made and when a run may use it (``precision: int8``)."""

    min_agreement: float = job_field("int8.min_agreement", ge=0, le=1)
    on_disagreement: Literal["fail", "fp32"] = job_field("int8.on_disagreement")
    calibration_uri: S3Uri | None = job_field("int8.calibration_uri")
    calibration_images: int = job_field("int8.calibration_images", ge=16, le=10000)
    agreement_images: int = job_field("int8.agreement_images", ge=16, le=10000)


class ConversionConfig(_Strict):
    """When the model converted for a runtime other than mxnet may be used (``model.runtime``)."""

    min_agreement: float = job_field("conversion.min_agreement", ge=0, le=1)


class NodeGroupConfig(_Strict):
    """One EMR node type (master or core): instance types, count and purchase option."""

    instance_types: list[InstanceType] = Field(
        min_length=1, max_length=30, description="EC2 types; several only with 'fleets'"
    )
    count: int = Field(ge=1, le=500, description="Number of instances (fleets: target capacity)")
    market: Literal["ON_DEMAND", "SPOT"] = Field(
        default="ON_DEMAND", description="Purchase option; SPOT fleets fall back to on-demand"
    )
    ebs_volume_gb: int | None = Field(
        default=None, ge=1, le=16384, description="One gp3 EBS volume of this size per instance"
    )


class ClusterConfig(_Strict):
    """Shape and settings of the EMR cluster (ignored by the local backend)."""

    release_label: str = Field(
        default="emr-7.2.0",
        pattern=r"^emr-\d+\.\d+\.\d+$",
        description=(
            "EMR release, one the package describes (emr_inference/emr/releases.py): emr-7.2.0 "
            "(Python 3.9, EMR's MXNet: model.runtime mxnet) or emr-7.13.0 (Python 3.11, no "
            "MXNet: model.runtime onnxruntime or openvino)"
        ),
    )
    log_uri: S3Uri | None = Field(
        default=None, description="LogUri: where EMR archives cluster, step and container logs"
    )
    job_flow_role: str = Field(
        default="EMR_EC2_DefaultRole",
        min_length=1,
        max_length=2048,
        description="EC2 instance profile of the nodes",
    )
    service_role: str = Field(
        default="EMR_DefaultRole", min_length=1, max_length=2048, description="EMR service role"
    )
    security_configuration: str | None = Field(
        default=None, max_length=10280, description="Name of an EMR security configuration to apply"
    )
    instance_collection: Literal["groups", "fleets"] = Field(
        default="groups", description="Instance groups (one type each) or instance fleets"
    )
    master: NodeGroupConfig = Field(
        default_factory=lambda: NodeGroupConfig(instance_types=["m5.xlarge"], count=1),
        description="Master node(s): run the Spark driver",
    )
    core: NodeGroupConfig = Field(
        default_factory=lambda: NodeGroupConfig(instance_types=["c5.9xlarge"], count=4),
        description="Core nodes: run the executors that do the inference",
    )
    subnet_ids: list[SubnetId] = Field(
        default_factory=list,
        max_length=16,
        description="VPC subnets (groups use the first; fleets let EMR choose); [] = default VPC",
    )
    ec2_key_name: str | None = Field(
        default=None, max_length=255, description="EC2 key pair for SSH to the nodes"
    )
    idle_timeout_seconds: int = Field(
        default=3600,
        ge=60,
        le=604800,
        description="AutoTerminationPolicy: EMR ends the cluster after this long without steps",
    )
    bootstrap_source: Literal["wheelhouse", "index"] = Field(
        default="wheelhouse",
        description=(
            "Where the nodes get the job's pinned wheels: 'wheelhouse' = staged once in S3 by "
            "stage_job_artifacts (no package index on the nodes), 'index' = PyPI or "
            "bootstrap_args' --index-url on every node"
        ),
    )
    bootstrap_args: list[PipArgument] = Field(
        default_factory=list,
        max_length=64,
        description="Extra pip install arguments of the bootstrap action (e.g. --index-url)",
    )
    task: NodeGroupConfig | None = Field(
        default=None,
        description="Task nodes (no HDFS, safe on Spot): more executors beside the core nodes",
    )
    task_cpus: int = Field(default=4, ge=1, le=192, description="spark.task.cpus (vCPUs per task)")
    tasks_per_executor: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Tasks per executor: spark.executor.cores = task_cpus x this",
    )
    executor_memory_mb: int = Field(
        default=1024, ge=256, le=262144, description="spark.executor.memory (JVM heap), MiB"
    )
    reserved_vcpus: int = Field(
        default=2, ge=0, le=64, description="vCPUs per node left to the OS and YARN's daemons"
    )
    python: str = Field(
        default="/opt/emr-inference/venv/bin/python3",
        pattern=r"^/[A-Za-z0-9._/-]+/bin/python3?$",
        description=(
            "The job's interpreter on the nodes (PYSPARK_PYTHON): the bootstrap makes a virtualenv "
            "there that sees EMR's mxnet and numpy, and installs the job's packages into it"
        ),
    )
    base_python: str | None = Field(
        default=None,
        pattern=r"^/[A-Za-z0-9._/-]+$",
        description=(
            "The nodes' system Python that the job's virtualenv extends; default: the release's "
            "(emr-7.2.0: /usr/bin/python3, with EMR's mxnet; emr-7.13.0: /usr/bin/python3.11)"
        ),
    )
    spark_defaults: dict[SparkProperty, SparkValue] = Field(
        default_factory=dict,
        max_length=256,
        description="Extra spark-defaults properties (override ours and the derived ones; checked)",
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        max_length=MAX_USER_TAGS,
        description="Cluster tags (cost allocation); dag_id, run_id and pipeline are added",
    )

    @model_validator(mode="after")
    def _shape(self) -> ClusterConfig:
        """master.count is 1 or 3; with instance_collection groups, master and core each list
        exactly one instance type (fleets take up to 30)."""
        if self.master.count not in (1, 3):
            raise ValueError("master.count must be 1 or 3")
        if self.instance_collection == "groups":
            for role in ("master", "core", "task")[: 3 if self.task else 2]:
                if len(getattr(self, role).instance_types) != 1:
                    raise ValueError(
                        f"{role}.instance_types must list exactly one type with "
                        "instance_collection 'groups' (use 'fleets' for several)"
                    )
        return self


class LocalConfig(_Strict):
    """Shape of the local Spark standalone cluster (local backend only)."""

    workers: int = Field(default=1, ge=1, le=8, description="Spark standalone worker processes")
    worker_cores: int = Field(default=2, ge=1, le=64, description="Cores each worker offers")
    worker_memory: str = Field(
        default="2g", pattern=r"^\d+[mg]$", description="Memory each worker offers (512m, 2g)"
    )
    emulate_cluster: bool = Field(
        default=False,
        description=(
            "Run the step with the Spark settings the cluster section gives EMR (executor cores, "
            "memory, Python worker memory, task CPUs, spark_defaults), executors scaled to the "
            "local workers: how `make rehearse` runs an EMR pipeline here"
        ),
    )
    idle_timeout_seconds: int = Field(
        default=1800,
        ge=10,
        le=604800,
        description="A watchdog stops the cluster after this long without a running step",
    )


#: The most dates one run may name (``partition_dates`` + ``date_range``), whatever the pipeline's
#: ``max_range_dates``: the Params' schema refuses longer lists at trigger time.
MAX_RANGE_DATES = 366


class DateRange(_Strict):
    """An inclusive range of partition dates for one run."""

    start: IsoDate = Field(description="First date (YYYY-MM-DD), included")
    end: IsoDate = Field(description="Last date (YYYY-MM-DD), included; not before start")

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class EstimateConfig(_Strict):
    """What the run plan models a run's time and cost with, and the job its partitions' size
    (docs/OPERATIONS.md "Backfills: one run per date, or one range run"; a run summary measures
    the rate)."""

    # a job setting too: the job sizes its partitions with it (partition_seconds)
    images_per_task_second: float = job_field("estimate.images_per_task_second", gt=0, le=100000)
    cluster_start_seconds: int = Field(
        default=600,
        ge=0,
        le=7200,
        description="Seconds from RunJobFlow to the first step running (provisioning, bootstrap)",
    )
    step_start_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Seconds each step spends before its first image (spark-submit, model load)",
    )


class RequestDefaults(_Strict):
    """Every field a run may override through Params (same names as the resolved request)."""

    partition_date: IsoDate | None = Field(
        default=None,
        description="YYYY-MM-DD; scheduled runs default to the day before the interval end",
    )
    partition_dates: list[IsoDate] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_RANGE_DATES,
        description=(
            "Several dates for one run on one cluster (with date_range: both); each date is "
            "listed, run and published on its own"
        ),
    )
    date_range: DateRange | None = Field(
        default=None, description="An inclusive range of dates for one run on one cluster"
    )
    republish: bool = Field(
        default=False,
        description=(
            "Redo dates that another run already published for the same request (by default "
            "they are skipped)"
        ),
    )
    dry_run: bool = Field(
        default=False,
        description="Plan only: list every date's input, log the plan and its cost, no cluster",
    )
    estimate: EstimateConfig = Field(
        default_factory=EstimateConfig,
        description="What the run plan's time and cost (and the job's partition size) assume",
    )
    input_uri: S3Uri | None = Field(
        default=None, description="Input prefix; may use {{ partition_date }}"
    )
    manifest_uri: S3Uri | None = Field(
        default=None, description="A ready manifest.json; takes precedence over input_uri"
    )
    output_uri: S3Uri = Field(description="Published output prefix; may use {{ partition_date }}")
    staging_uri: S3Uri | None = Field(
        default=None, description="Staging root (default: s3://<output bucket>/_staging/)"
    )
    artifacts_uri: S3Uri | None = Field(
        default=None, description="Job artifacts root (default: s3://<output bucket>/artifacts/)"
    )
    extensions: list[Annotated[str, Field(pattern=r"^\.[A-Za-z0-9]{1,10}$")]] = Field(
        default_factory=lambda: [".jpg", ".jpeg", ".png"],
        min_length=1,
        max_length=32,
        description="Key suffixes listed from input_uri (case-insensitive)",
    )
    sample_limit: int | None = Field(
        default=None, ge=1, description="Process only the first N listed keys (smoke runs)"
    )
    shard_size: int = Field(default=10000, ge=1, le=100000, description="Keys per manifest shard")
    model: ModelConfig = Field(description="The MXNet model")
    batch_size: int = job_field("batch_size", ge=1, le=4096)
    top_k: int = job_field("top_k", ge=1, le=1000)
    partitions: int = job_field("partitions", ge=0, le=100000)
    max_partition_keys: int | None = job_field(
        "max_partition_keys", ge=KEYS_PER_PARTITION_MIN, le=1000000
    )
    partition_seconds: int = job_field("partition_seconds", ge=30, le=3600)
    max_error_rate: float = job_field("max_error_rate", ge=0, le=1)
    prefetch_threads: int = job_field("prefetch_threads", ge=1, le=64)
    prefetch_depth: int = job_field("prefetch_depth", ge=1, le=64)
    omp_threads: int = job_field("omp_threads", ge=0, le=256)
    precision: Literal["fp32", "int8"] = job_field("precision")
    int8: Int8Config = Field(default_factory=Int8Config, description="int8 settings")
    conversion: ConversionConfig = Field(
        default_factory=ConversionConfig,
        description="The converted model's gate (model.runtime other than mxnet)",
    )
    engine: Literal["rdd", "predict_batch_udf"] = job_field("engine")
    sse: SseConfig = Field(default_factory=SseConfig, description="Server-side encryption")
    cluster: ClusterConfig = Field(
        default_factory=ClusterConfig, description="EMR cluster (emr backend)"
    )
    local: LocalConfig = Field(
        default_factory=LocalConfig, description="Local Spark cluster (local backend)"
    )

    @model_validator(mode="after")
    def _has_input(self) -> RequestDefaults:
        """One of input_uri or manifest_uri is required; manifest_uri wins when both are given."""
        if not self.input_uri and not self.manifest_uri:
            raise ValueError("one of input_uri or manifest_uri is required")
        return self


#: An SNS topic's ARN (any partition; a FIFO topic ends in .fifo).
SNS_TOPIC_ARN_PATTERN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"


class AlertsConfig(_Strict):
    """Who hears what about the pipeline's runs: an SNS topic (Airflow's ``SnsNotifier``, on the
    pipeline's AWS connection) told when a run fails, optionally when it succeeds, and once when
    a run has not finished within ``late_after_minutes`` of being queued."""

    sns_topic_arn: str = Field(
        pattern=SNS_TOPIC_ARN_PATTERN, description="The SNS topic the alerts are published to"
    )
    on_failure: bool = Field(default=True, description="Publish the run's digest when it fails")
    on_success: bool = Field(default=False, description="Publish the run's digest when it succeeds")
    late_after_minutes: int | None = Field(
        default=None,
        ge=1,
        le=7 * 24 * 60,
        description=(
            "Publish one lateness alert when a run has not finished this many minutes after it "
            "was queued (an Airflow deadline alert); null = none"
        ),
    )


class PipelineConfig(RequestDefaults):
    """A whole pipeline file: DAG settings plus the request defaults."""

    pipeline: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="The DAG id")
    description: str | None = Field(default=None, description="The DAG's description")
    backend: Annotated[str, AfterValidator(check_backend_name)] = Field(
        default="emr",
        description="emr: a real EMR cluster; local: Spark standalone here",
        json_schema_extra={"enum": [name for name in sorted(REGISTERED)]},
    )
    schedule: str | None = Field(default="@daily", description="Cron or preset; null = manual")
    start_date: dt.date = Field(
        default=dt.date(2024, 1, 1), description="First schedulable date (midnight UTC)"
    )
    catchup: bool = Field(
        default=False, description="Schedule the missed runs since start_date when unpaused"
    )
    partitioned: bool = Field(
        default=False,
        description=(
            "Schedule with Airflow's CronPartitionTimetable (UTC): each run carries the date it "
            "processes as its partition_key (scheduled: the day before its tick; backfills: the "
            "tick's own date; REST triggers may pass one); runs have no data interval then"
        ),
    )
    max_range_dates: int = Field(
        default=92,
        ge=1,
        le=MAX_RANGE_DATES,
        description="The most dates one run may name (partition_dates and date_range together)",
    )
    max_active_runs: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "DAG runs at the same time, and clusters at the same time whoever made the runs "
            "(backfills too: wait_for_cluster_slot)"
        ),
    )
    tags: list[str] = Field(
        default_factory=list, description="DAG tags; the backend and 'inference' are added"
    )
    aws_conn_id: str = Field(default="aws_default", description="Airflow connection for S3 and EMR")
    deferrable: bool = Field(default=True, description="Deferrable EMR sensor")
    poke_interval_seconds: int = Field(
        default=60, ge=1, le=3600, description="Seconds between step status checks"
    )
    step_timeout_seconds: int = Field(
        default=12 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description=(
            "A step running longer than this from its own start is stopped and its date fails "
            "(the teardown then terminates the cluster): a cap on what a stuck step can cost; "
            "the wait of a range's date allows this x the dates, for the steps queued before it"
        ),
    )
    alerts: AlertsConfig | None = Field(
        default=None, description="Failure, success and lateness alerts; null = none"
    )
    retries: int = Field(default=1, ge=0, le=10, description="Task retries (not validate_request)")
    retry_delay_seconds: int = Field(
        default=60, ge=0, le=3600, description="Seconds between task retries"
    )

    def request_defaults(self) -> dict[str, Any]:
        """The request fields of this pipeline, as JSON-compatible Param defaults."""
        return self.model_dump(mode="json", include=set(RequestDefaults.model_fields))


def job_setting_mismatches(model: type[BaseModel] = RequestDefaults) -> list[str]:
    """How the request fields of ``model`` differ from the job settings of the contract
    (:data:`batch_inference.contract.settings.SETTINGS` whose source is the config): a missing
    field, another default, description or set of choices. Empty when they agree."""
    problems = []
    for setting in SETTINGS:
        if setting.source != CONFIG:
            continue
        *sections, name = setting.name.split(".")
        owner: Any = model
        for section in sections:
            owner = owner.model_fields[section].annotation
        field = owner.model_fields.get(name)
        if field is None:
            problems.append(f"{setting.name}: not a field of {model.__name__}")
            continue
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        expected = list(setting.default) if isinstance(setting.default, tuple) else setting.default
        if default != expected:
            problems.append(f"{setting.name}: default {default!r}, the job's is {expected!r}")
        if field.description != setting.help:
            problems.append(f"{setting.name}: description differs from the job's help")
        choices = typing.get_args(field.annotation) if setting.choices else None
        if choices is not None and choices != setting.choices:
            problems.append(f"{setting.name}: choices {choices}, the job's are {setting.choices}")
    return problems


def format_errors(error: ValidationError, source: str) -> str:
    """One line per pydantic error: ``<source>: <dotted.field>: <message>``."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<root>"
        lines.append(f"{source}: {field}: {item['msg']}")
    return "\n".join(lines)


def parse_pipeline(data: Any, source: str, default_name: str | None = None) -> PipelineConfig:
    """Validate already-loaded YAML data; ``default_name`` fills a missing ``pipeline`` field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must contain a mapping of pipeline fields")
    if default_name and "pipeline" not in data:
        data = {**data, "pipeline": default_name}
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_errors(error, source)) from None
    backend_named(config.backend).check_request(config, source)
    return config


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and validate one pipeline YAML file; the pipeline name defaults to the file stem."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_pipeline(data, str(path), default_name=path.stem.replace(".", "-"))
