"""Every job setting, once: its name, command-line flag, default and help text.

A setting's ``name`` is its dotted path in the pipeline config and the resolved request
(``batch_size``, ``model.symbol``, ``sse.mode``); ``flag`` is the job's command-line option
(``--batch-size``); ``job`` is its dotted path in :class:`batch_inference.config.JobConfig`
(``batch_size``, ``model.symbol_uri``, ``encryption.mode``). Generated from this table:

* the job's parser: :func:`batch_inference.cli.build_parser` (groups, flags, defaults, help);
* the job's config: :func:`batch_inference.cli.parse_config` puts each value at its ``job`` path;
* the step's arguments: :func:`emr_inference.job_command.job_arguments` reads each ``name`` from the
  request and writes it with :meth:`JobSetting.arguments`;
* the pipeline config's fields: :func:`emr_inference.config.job_field` takes default and
  description from here (``emr_inference.config.job_setting_mismatches`` checks the result).

To add or change a setting, change it here; the Airflow side's bounds stay in its config model.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: ImageNet's per-channel statistics in 0-1 units: the default normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SSE_MODES = ("none", "AES256", "aws:kms")
PRECISIONS = ("fp32", "int8")
#: What runs the model's forward (:mod:`batch_inference.runtime`): MXNet itself, or ONNX Runtime
#: on the MXNet model converted once (:mod:`batch_inference.convert`).
RUNTIMES = ("mxnet", "onnxruntime", "openvino")
#: ``rdd``: :mod:`batch_inference.job`'s mapPartitions; ``predict_batch_udf``:
#: :mod:`batch_inference.dataframe_engine`. Same input, same output contract.
ENGINES = ("rdd", "predict_batch_udf")

#: Where a setting's value comes from when the Airflow side builds the job's arguments.
CONFIG = "config"  # a pipeline config field (and Param): request[name]
RUN = "run"  # a request key that validate_request sets, not a config field: request[name]
STEP = "step"  # derived by the step builder (the manifest, the output prefix, the int8 cache)
JOB = "job"  # the job's own: not passed by job_arguments

#: How a setting's value is written on the command line.
TEXT, INT, FLOAT, FLOATS3 = "text", "int", "float", "floats3"
FLAG = "flag"  # present when the request's value is ``flag_on`` (store_true in the job)
OFF_FLAG = "off_flag"  # present to turn off a setting that defaults to true (store_false)
REPEAT = "repeat"  # the flag once per item of a list (append)

IO, MODEL, PREPROCESSING, EXECUTION = "input and output", "model", "preprocessing", "execution"
INT8 = "int8 (batch_inference.quantize)"
CONVERSION = "conversion (batch_inference.convert)"

#: The fewest keys a derived partition holds (the partition count is also at most one per this
#: many keys), and the least ``max_partition_keys`` a pipeline may set.
KEYS_PER_PARTITION_MIN = 100


def derived_partition_keys(images_per_task_second: float, partition_seconds: float) -> int:
    """The keys of a partition that takes ``partition_seconds`` at ``images_per_task_second``:
    ``ceil(rate x seconds)`` (rounded first, so 0.1 x 300 is 30), at least
    :data:`KEYS_PER_PARTITION_MIN`. With the defaults, 25 x 300 = 7,500 keys: five minutes."""
    return max(
        KEYS_PER_PARTITION_MIN, math.ceil(round(images_per_task_second * partition_seconds, 6))
    )


def three_floats(text: str) -> tuple[float, float, float]:
    """Parse ``R,G,B`` (three comma-separated floats); argparse reports the error."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated floats, got {text!r}")
    return values


_PARSERS: dict[str, Callable[[str], Any]] = {
    TEXT: str,
    INT: int,
    FLOAT: float,
    FLOATS3: three_floats,
}


def to_text(kind: str, value: Any) -> str:
    """A value as the job's command line writes it (floats with ``repr``: no precision lost)."""
    if kind == FLOAT:
        return repr(float(value))
    if kind == FLOATS3:
        return ",".join(repr(float(item)) for item in value)
    return str(value)


@dataclass(frozen=True)
class JobSetting:
    """One job setting (see the module docstring for ``name``, ``flag`` and ``job``)."""

    name: str
    flag: str
    job: str
    help: str
    group: str
    source: str = CONFIG
    kind: str = TEXT
    #: the default in the pipeline config, the request and the job (``None``: unset)
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    #: for a FLAG: the request value that the flag stands for
    flag_on: Any = True
    #: the rows depend on it: the job's run fingerprint (a resumable partition) and, for a config
    #: setting, the request fingerprint (a published date) cover it (:data:`ROW_SETTINGS`)
    shapes_rows: bool = False
    #: a row setting added after dates were published: unset or at its default it is left out of
    #: the fingerprints (:func:`fingerprinted`), so those dates stay current and are not run again
    added_later: bool = False

    @property
    def job_default(self) -> Any:
        """The default as the job holds it (a FLAG is a bool there)."""
        if self.kind == FLAG:
            return self.default == self.flag_on
        if self.kind == OFF_FLAG:
            return True
        if self.kind == REPEAT:
            return ()
        return self.default

    def add_to(self, parser: argparse._ActionsContainer) -> None:
        """Add this setting's option to ``parser`` (or one of its groups)."""
        if self.kind == FLAG:
            parser.add_argument(self.flag, dest=self.name, action="store_true", help=self.help)
        elif self.kind == OFF_FLAG:
            parser.add_argument(self.flag, dest=self.name, action="store_false", help=self.help)
        elif self.kind == REPEAT:
            parser.add_argument(
                self.flag, dest=self.name, action="append", default=[], metavar=self.metavar,
                help=self.help,
            )  # fmt: skip
        else:
            default = to_text(self.kind, self.default) if self.kind == FLOATS3 else self.default
            # argparse names a value after ``dest`` (``MODEL.SYMBOL``): name it after the flag,
            # or show the choices
            metavar = self.metavar or self.flag[2:].upper().replace("-", "_")
            parser.add_argument(
                self.flag, dest=self.name, type=_PARSERS[self.kind], default=default,
                required=self.required, choices=self.choices,
                metavar=None if self.choices else metavar, help=self.help,
            )  # fmt: skip

    def read(self, request: Mapping[str, Any]) -> Any:
        """This setting's value in a resolved request; its default when the request lacks it (a
        run resolved by an earlier version, in flight across a deploy)."""
        value: Any = request
        for part in self.name.split("."):
            if not isinstance(value, Mapping) or part not in value:
                if self.required:
                    raise KeyError(f"the request has no {self.name!r}")
                return self.default
            value = value[part]
        return value

    def job_value(self, config: Any) -> Any:
        """This setting's value in the job's config (``None`` under an unset section, such as
        ``int8`` in an fp32 job)."""
        value = config
        for part in self.job.split("."):
            if value is None:
                return None
            value = getattr(value, part)
        return value

    def arguments(self, value: Any) -> list[str]:
        """The job's arguments for ``value``: none for an unset value or a flag that is off."""
        if self.kind == FLAG:
            return [self.flag] if value == self.flag_on else []
        if self.kind == OFF_FLAG:
            return [] if value else [self.flag]
        if self.kind == REPEAT:
            return [arg for item in value for arg in (self.flag, str(item))]
        if value is None or value == "":
            return []
        return [self.flag, to_text(self.kind, value)]


#: Every setting, in the order of the job's ``--help`` and of the step's arguments.
SETTINGS: tuple[JobSetting, ...] = (
    JobSetting("manifest", "--manifest", "manifest_uri", "s3:// URI of the manifest.json", IO,
               source=STEP, required=True),
    JobSetting("output", "--output", "output_uri", "s3:// prefix for the staged output", IO,
               source=STEP, required=True),
    JobSetting("run_id", "--run-id", "run_id", "Run id written into every row", IO, source=RUN,
               required=True, shapes_rows=True),
    JobSetting("sse.mode", "--sse", "encryption.mode",
               "ServerSideEncryption of every object written; none = the bucket's default", IO,
               default="none", choices=SSE_MODES, shapes_rows=True),
    JobSetting("sse.kms_key_id", "--sse-kms-key-id", "encryption.kms_key_id",
               "KMS key id or ARN (sse mode aws:kms only)", IO, shapes_rows=True),
    JobSetting("model.name", "--model-name", "model.name", "Model name written into every row",
               MODEL, required=True, shapes_rows=True),
    JobSetting("model.symbol", "--model-symbol", "model.symbol_uri",
               "s3:// URI of the MXNet symbol JSON (none when the model is an ONNX file)", MODEL,
               shapes_rows=True),
    JobSetting("model.params", "--model-params", "model.params_uri",
               "s3:// URI of the MXNet params file (none when the model is an ONNX file)", MODEL,
               shapes_rows=True),
    JobSetting("model.labels", "--model-labels", "model.labels_uri",
               "s3:// URI of the labels, one per line", MODEL, required=True, shapes_rows=True),
    JobSetting("model.symbol_sha256", "--model-symbol-sha256", "model.symbol_sha256",
               "Hex SHA-256 the symbol file must have (checked before use)", MODEL,
               shapes_rows=True),
    JobSetting("model.params_sha256", "--model-params-sha256", "model.params_sha256",
               "Hex SHA-256 the params file must have (checked before use)", MODEL,
               shapes_rows=True),
    JobSetting("model.labels_sha256", "--model-labels-sha256", "model.labels_sha256",
               "Hex SHA-256 the labels file must have (checked before use)", MODEL,
               shapes_rows=True),
    JobSetting("model.input_name", "--input-name", "model.input_name",
               "Name of the symbol's data input", MODEL, default="data", shapes_rows=True),
    JobSetting("model.runtime", "--runtime", "model.runtime",
               "What runs the forward: mxnet, or onnxruntime or openvino on the ONNX file of "
               "model.onnx or on the MXNet model converted once to ONNX and gated by top-1 "
               "agreement with MXNet (batch_inference.convert)", MODEL,
               default="mxnet", choices=RUNTIMES, shapes_rows=True, added_later=True),
    JobSetting("model.onnx", "--model-onnx", "model.onnx_uri",
               "s3:// URI of an ONNX model run as it is by onnxruntime or openvino, instead of "
               "an MXNet symbol and params (no conversion, no agreement with MXNet)",
               MODEL, metavar="URI", shapes_rows=True, added_later=True),
    JobSetting("model.onnx_sha256", "--model-onnx-sha256", "model.onnx_sha256",
               "Hex SHA-256 the ONNX file must have (checked before use)", MODEL,
               metavar="HEX", shapes_rows=True, added_later=True),
    JobSetting("model.image_size", "--image-size", "preprocess.image_size",
               "Square input side in pixels", PREPROCESSING, kind=INT, default=224,
               shapes_rows=True),
    JobSetting("model.scale", "--scale", "preprocess.scale",
               "Multiplier applied to 0-255 pixels first", PREPROCESSING, kind=FLOAT,
               default=1.0 / 255.0, shapes_rows=True),
    JobSetting("model.mean", "--mean", "preprocess.mean",
               "R,G,B means subtracted after scale", PREPROCESSING,
               kind=FLOATS3, default=IMAGENET_MEAN, shapes_rows=True),
    JobSetting("model.std", "--std", "preprocess.std",
               "R,G,B standard deviations divided by after the mean", PREPROCESSING,
               kind=FLOATS3, default=IMAGENET_STD, shapes_rows=True),
    JobSetting("batch_size", "--batch-size", "batch_size", "Images per forward pass", EXECUTION,
               kind=INT, default=64),
    JobSetting("top_k", "--top-k", "top_k", "Predictions kept per image", EXECUTION, kind=INT,
               default=5, shapes_rows=True),
    JobSetting("partitions", "--partitions", "partitions",
               "Spark partitions; 0 = derive from the cluster (defaultParallelism x 2, at most "
               "one per 100 keys)", EXECUTION, kind=INT, default=0),
    JobSetting("max_partition_keys", "--max-partition-keys", "max_partition_keys",
               "Keys per partition at most (more partitions if needed); unset: derived, "
               "estimate.images_per_task_second x partition_seconds (at least 100)", EXECUTION,
               kind=INT),
    JobSetting("partition_seconds", "--partition-seconds", "partition_seconds",
               "Seconds one partition's task should take, when max_partition_keys is unset",
               EXECUTION, kind=INT, default=300),
    # the run plan's rate (emr_inference.plan) too: one number for the plan and the partitions
    JobSetting("estimate.images_per_task_second", "--images-per-task-second",
               "images_per_task_second",
               "Images one Spark task (one Python worker and its model) infers per second, job "
               "included (default: ResNet-18 fp32 on one physical core, docs/BENCHMARKS.md "
               "benchmark 2b): the run plan's rate and the derived partition size; a run "
               "summary's images_per_task_second measures it", EXECUTION, kind=FLOAT,
               default=25.0),
    JobSetting("max_error_rate", "--max-error-rate", "max_error_rate",
               "Error-row fraction above which the job fails", EXECUTION, kind=FLOAT, default=0.1),
    # 16: what docs/BENCHMARKS.md measured: 8 left an int8 model's core idle on 20 ms GETs
    JobSetting("prefetch_threads", "--prefetch-threads", "prefetch_threads",
               "Download/decode threads per partition (per Python worker)", EXECUTION, kind=INT,
               default=16),
    JobSetting("prefetch_depth", "--prefetch-depth", "prefetch_depth",
               "Batches decoded ahead of the model (bounded queue)", EXECUTION, kind=INT,
               default=2),
    JobSetting("omp_threads", "--omp-threads", "omp_threads",
               "Model runtime threads per Python worker (MXNet's OpenMP, ONNX Runtime's "
               "intra-op); 0 = spark.task.cpus", EXECUTION,
               kind=INT, default=0),
    JobSetting("engine", "--engine", "engine",
               "rdd: mapPartitions; predict_batch_udf: a DataFrame with Spark's predict_batch_udf "
               "(needs pandas and pyarrow); same output", EXECUTION, default="rdd",
               choices=ENGINES),
    JobSetting("requirements", "--require", "requirements",
               "A package version the interpreter must have (checked before anything else; "
               "mxnet, numpy, pillow and boto3 must always be importable)", EXECUTION,
               source=JOB, kind=REPEAT, metavar="NAME==VERSION"),
    JobSetting("resume", "--no-resume", "resume",
               "Redo every partition, even those already complete for the same run fingerprint "
               "(manifest, model, preprocessing, top-k, precision, run id, encryption)", EXECUTION,
               source=JOB, kind=OFF_FLAG),
    JobSetting("precision", "--precision", "precision",
               "The model's arithmetic; int8: the model quantized once (by the runtime's own "
               "quantizer), gated by agreement with fp32", INT8, default="fp32",
               choices=PRECISIONS, shapes_rows=True),
    JobSetting("int8.cache", "--int8-cache", "int8.cache_uri",
               "Prefix of the quantized models (required for int8)", INT8, source=STEP,
               metavar="URI"),
    JobSetting("int8.min_agreement", "--int8-min-agreement", "int8.min_agreement",
               "Top-1 agreement with fp32 on the run's own images below which int8 is refused",
               INT8, kind=FLOAT, default=0.99, shapes_rows=True),
    JobSetting("int8.on_disagreement", "--int8-fallback", "int8.fallback",
               "Below the minimum agreement: fail (the default) or run in fp32 (--int8-fallback)",
               INT8, kind=FLAG, default="fail", choices=("fail", "fp32"), flag_on="fp32",
               shapes_rows=True),
    JobSetting("int8.calibration_uri", "--calibration-uri", "int8.calibration_uri",
               "Prefix of calibration images (default: the first images of the run)", INT8,
               metavar="URI", shapes_rows=True),
    JobSetting("int8.calibration_images", "--calibration-images", "int8.calibration_images",
               "Images the quantization is calibrated on", INT8, kind=INT, default=256,
               shapes_rows=True),
    JobSetting("int8.agreement_images", "--agreement-images", "int8.agreement_images",
               "Images of each run the agreement is measured on", INT8, kind=INT, default=256,
               shapes_rows=True),
    JobSetting("conversion.cache", "--conversion-cache", "conversion.cache_uri",
               "Prefix of the converted models (required for a runtime other than mxnet)",
               CONVERSION, source=STEP, metavar="URI"),
    JobSetting("conversion.min_agreement", "--conversion-min-agreement",
               "conversion.min_agreement",
               "Top-1 agreement with the MXNet forward, on images of the run that converts, "
               "below which the converted model is refused", CONVERSION, kind=FLOAT,
               default=0.99, shapes_rows=True, added_later=True),
)  # fmt: skip

#: The settings the rows depend on (``shapes_rows``): what the model is and how it is fed, top-k,
#: precision and the int8 gate, the encryption, the run id. Not how the work is split and run
#: (batch size, partitions, threads, engine, error budget, the rate estimate).
ROW_SETTINGS: tuple[JobSetting, ...] = tuple(setting for setting in SETTINGS if setting.shapes_rows)


def fingerprinted(
    settings: tuple[JobSetting, ...], value_of: Callable[[JobSetting], Any]
) -> dict[str, Any]:
    """``{name: value}`` of ``settings`` for a fingerprint, without the ``added_later`` ones that
    are unset or hold their default: a fingerprint made before such a setting existed stays the
    same, so a date published then is not run again."""
    document = {}
    for setting in settings:
        value = value_of(setting)
        if not (setting.added_later and value in (None, setting.job_default)):
            document[setting.name] = value
    return document


#: The settings by name.
SETTING: dict[str, JobSetting] = {setting.name: setting for setting in SETTINGS}


def job_default(name: str) -> Any:
    """The job's default of the setting ``name`` (for the fields of ``JobConfig``)."""
    return SETTING[name].job_default


def groups() -> dict[str, list[JobSetting]]:
    """The settings by ``--help`` group, groups in order of first appearance."""
    grouped: dict[str, list[JobSetting]] = {}
    for setting in SETTINGS:
        grouped.setdefault(setting.group, []).append(setting)
    return grouped
