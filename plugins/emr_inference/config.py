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
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: An s3:// URI: a bucket name and an optional key (Jinja templates allowed; the rendered URI is
#: checked strictly by emr_inference.s3 when a run resolves its request).
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"
#: A calendar date as the Params and the templates use it.
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

S3Uri = Annotated[str, Field(pattern=S3_URI_PATTERN, max_length=1024)]
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
Triple = Annotated[list[float], Field(min_length=3, max_length=3)]
InstanceType = Annotated[str, Field(pattern=r"^[a-z0-9-]+\.[a-z0-9]+$")]

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class ConfigError(ValueError):
    """A pipeline file (or a run's Params) is invalid; the message names the file and field."""


class _Strict(BaseModel):
    """Base of every config model: unknown fields are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    """The MXNet model the job loads: symbol JSON, params and labels in S3."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Written into every row")
    symbol: S3Uri = Field(description="MXNet symbol JSON")
    params: S3Uri = Field(description="MXNet params file")
    labels: S3Uri = Field(description="Labels, one per line")
    symbol_sha256: Sha256 | None = None
    params_sha256: Sha256 | None = None
    labels_sha256: Sha256 | None = None
    input_name: str = Field(default="data", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    image_size: int = Field(default=224, ge=8, le=4096, description="Square side in pixels")
    mean: Triple = Field(default_factory=lambda: list(IMAGENET_MEAN))
    std: Triple = Field(default_factory=lambda: list(IMAGENET_STD))
    scale: float = Field(default=1 / 255, gt=0, le=1, description="Applied to 0-255 pixels first")


class SseConfig(_Strict):
    """Server-side encryption for every object the pipeline writes."""

    mode: Literal["none", "AES256", "aws:kms"] = "none"
    kms_key_id: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _kms_key_needs_kms(self) -> SseConfig:
        if self.kms_key_id and self.mode != "aws:kms":
            raise ValueError("kms_key_id is only valid with mode 'aws:kms'")
        return self


class NodeGroupConfig(_Strict):
    """One EMR node type (master or core): instance types, count and purchase option."""

    instance_types: list[InstanceType] = Field(min_length=1, max_length=30)
    count: int = Field(ge=1, le=500)
    market: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    ebs_volume_gb: int | None = Field(default=None, ge=1, le=16384)


class ClusterConfig(_Strict):
    """Shape and settings of the EMR cluster (ignored by the local backend)."""

    release_label: str = Field(default="emr-7.2.0", pattern=r"^emr-\d+\.\d+\.\d+$")
    log_uri: S3Uri | None = None
    job_flow_role: str = Field(default="EMR_EC2_DefaultRole", min_length=1)
    service_role: str = Field(default="EMR_DefaultRole", min_length=1)
    security_configuration: str | None = None
    instance_collection: Literal["groups", "fleets"] = "groups"
    master: NodeGroupConfig = Field(
        default_factory=lambda: NodeGroupConfig(instance_types=["m5.xlarge"], count=1)
    )
    core: NodeGroupConfig = Field(
        default_factory=lambda: NodeGroupConfig(instance_types=["c5.9xlarge"], count=4)
    )
    subnet_ids: list[str] = Field(default_factory=list, max_length=16)
    ec2_key_name: str | None = None
    idle_timeout_seconds: int = Field(default=3600, ge=60, le=604800)
    bootstrap_args: list[str] = Field(default_factory=list)
    task_cpus: int = Field(default=4, ge=1, le=192, description="spark.task.cpus = MXNet threads")
    python: str = Field(default="/usr/bin/python3", description="PYSPARK_PYTHON on the nodes")
    spark_defaults: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shape(self) -> ClusterConfig:
        if self.master.count not in (1, 3):
            raise ValueError("master.count must be 1 or 3")
        if self.instance_collection == "groups":
            for role in ("master", "core"):
                if len(getattr(self, role).instance_types) != 1:
                    raise ValueError(
                        f"{role}.instance_types must list exactly one type with "
                        "instance_collection 'groups' (use 'fleets' for several)"
                    )
        return self


class LocalConfig(_Strict):
    """Shape of the local Spark standalone cluster (local backend only)."""

    workers: int = Field(default=1, ge=1, le=8)
    worker_cores: int = Field(default=2, ge=1, le=64)
    worker_memory: str = Field(default="2g", pattern=r"^\d+[mg]$")


class RequestDefaults(_Strict):
    """Every field a run may override through Params (same names as the resolved request)."""

    partition_date: str | None = Field(
        default=None,
        pattern=DATE_PATTERN,
        description="YYYY-MM-DD; scheduled runs default to the day before the interval end",
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
        default_factory=lambda: [".jpg", ".jpeg", ".png"], min_length=1
    )
    sample_limit: int | None = Field(default=None, ge=1)
    shard_size: int = Field(default=10000, ge=1, le=100000)
    model: ModelConfig
    batch_size: int = Field(default=64, ge=1, le=4096)
    top_k: int = Field(default=5, ge=1, le=1000)
    partitions: int = Field(default=0, ge=0, le=100000, description="0 = derive from cluster")
    max_error_rate: float = Field(default=0.1, ge=0, le=1)
    prefetch_threads: int = Field(default=4, ge=1, le=64)
    prefetch_depth: int = Field(default=2, ge=1, le=64)
    omp_threads: int = Field(default=0, ge=0, le=256, description="0 = spark.task.cpus")
    sse: SseConfig = Field(default_factory=SseConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)

    @model_validator(mode="after")
    def _has_input(self) -> RequestDefaults:
        if not self.input_uri and not self.manifest_uri:
            raise ValueError("one of input_uri or manifest_uri is required")
        return self


class PipelineConfig(RequestDefaults):
    """A whole pipeline file: DAG settings plus the request defaults."""

    pipeline: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="The DAG id")
    description: str | None = None
    backend: Literal["local", "emr"] = "emr"
    schedule: str | None = Field(default="@daily", description="Cron or preset; null = manual")
    start_date: dt.date = dt.date(2024, 1, 1)
    catchup: bool = False
    max_active_runs: int = Field(default=1, ge=1, le=64)
    tags: list[str] = Field(default_factory=list)
    aws_conn_id: str = "aws_default"
    deferrable: bool = Field(default=True, description="Deferrable EMR sensor")
    poke_interval_seconds: int = Field(default=60, ge=1, le=3600)
    retries: int = Field(default=1, ge=0, le=10, description="Task retries (not validate_request)")
    retry_delay_seconds: int = Field(default=60, ge=0, le=3600)

    def request_defaults(self) -> dict[str, Any]:
        """The request fields of this pipeline, as JSON-compatible Param defaults."""
        return self.model_dump(mode="json", include=set(RequestDefaults.model_fields))


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
        return PipelineConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_errors(error, source)) from None


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and validate one pipeline YAML file; the pipeline name defaults to the file stem."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_pipeline(data, str(path), default_name=path.stem.replace(".", "-"))
