"""The job's settings as plain, picklable dataclasses (shipped from the driver to every task).

Defaults come from :mod:`batch_inference.contract.settings`, where every setting is defined.
"""

from __future__ import annotations

from dataclasses import dataclass

from batch_inference.contract.s3 import encryption_args
from batch_inference.contract.settings import (
    ENGINES,
    KEYS_PER_PARTITION_MIN,
    PRECISIONS,
    RUNTIMES,
    derived_partition_keys,
    job_default,
)


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a ``(3, size, size)`` float32 tensor.

    Each channel is ``(pixel * scale - mean) / std`` with pixels in 0-255.
    """

    image_size: int = job_default("model.image_size")
    scale: float = job_default("model.scale")
    mean: tuple[float, float, float] = job_default("model.mean")
    std: tuple[float, float, float] = job_default("model.std")

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std must have three values (R, G, B)")
        if any(value == 0 for value in self.std):
            raise ValueError(f"std must not contain 0, got {self.std}")


@dataclass(frozen=True)
class ModelSpec:
    """Where the model lives and how to call it. The URIs and digests identify a loaded model."""

    name: str
    #: the MXNet model (``None`` when the pipeline names an ONNX file instead: ``onnx_uri``)
    symbol_uri: str | None
    params_uri: str | None
    labels_uri: str
    symbol_sha256: str | None = job_default("model.symbol_sha256")
    params_sha256: str | None = job_default("model.params_sha256")
    labels_sha256: str | None = job_default("model.labels_sha256")
    input_name: str = job_default("model.input_name")
    #: what runs the forward (one of ``RUNTIMES``)
    runtime: str = job_default("model.runtime")
    #: the ONNX file a converted runtime loads: the pipeline's own (``--model-onnx``), or the
    #: MXNet model converted by the driver (:mod:`batch_inference.convert`)
    onnx_uri: str | None = job_default("model.onnx")
    onnx_sha256: str | None = job_default("model.onnx_sha256")

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"invalid runtime: {self.runtime!r} (one of {RUNTIMES})")
        if self.runtime == "mxnet" and self.onnx_uri is not None:
            raise ValueError("--model-onnx needs --runtime onnxruntime or openvino")
        if self.onnx_uri is None and (self.symbol_uri is None or self.params_uri is None):
            raise ValueError("the model needs --model-symbol and --model-params, or --model-onnx")

    @property
    def given_onnx(self) -> bool:
        """Whether the model is an ONNX file named as such (no MXNet model to convert)."""
        return self.onnx_uri is not None and self.symbol_uri is None


@dataclass(frozen=True)
class Encryption:
    """Server-side encryption for every object the job writes."""

    mode: str = job_default("sse.mode")
    kms_key_id: str | None = job_default("sse.kms_key_id")

    def __post_init__(self) -> None:
        self.put_object_args()  # refuses an unknown mode, or a key id without aws:kms

    def put_object_args(self) -> dict[str, str]:
        """Extra ``PutObject`` parameters (``ServerSideEncryption``, ``SSEKMSKeyId``)."""
        return encryption_args(self.mode, self.kms_key_id)


@dataclass(frozen=True)
class Int8Settings:
    """How the int8 model is made and when it may be used (:mod:`batch_inference.quantize`)."""

    cache_uri: str
    min_agreement: float = job_default("int8.min_agreement")
    fallback: bool = job_default("int8.on_disagreement")
    calibration_uri: str | None = job_default("int8.calibration_uri")
    calibration_images: int = job_default("int8.calibration_images")
    agreement_images: int = job_default("int8.agreement_images")

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"int8 min agreement must be in [0, 1], got {self.min_agreement}")
        if self.calibration_images < 1 or self.agreement_images < 1:
            raise ValueError("calibration and agreement images must be at least 1")


@dataclass(frozen=True)
class ConversionSettings:
    """Where converted models are cached, and when one may be used
    (:mod:`batch_inference.convert`)."""

    cache_uri: str
    min_agreement: float = job_default("conversion.min_agreement")

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(
                f"conversion min agreement must be in [0, 1], got {self.min_agreement}"
            )


@dataclass(frozen=True)
class JobConfig:
    """Everything a partition needs; built from the command line by :mod:`batch_inference.cli`."""

    manifest_uri: str
    output_uri: str
    run_id: str
    model: ModelSpec
    preprocess: Preprocess = Preprocess()
    batch_size: int = job_default("batch_size")
    top_k: int = job_default("top_k")
    partitions: int = job_default("partitions")
    #: a partition holds at most this many keys, whatever ``partitions`` says; ``None``: derived
    #: from ``images_per_task_second`` x ``partition_seconds`` (:meth:`partition_keys`)
    max_partition_keys: int | None = job_default("max_partition_keys")
    partition_seconds: int = job_default("partition_seconds")
    images_per_task_second: float = job_default("estimate.images_per_task_second")
    max_error_rate: float = job_default("max_error_rate")
    prefetch_threads: int = job_default("prefetch_threads")
    prefetch_depth: int = job_default("prefetch_depth")
    omp_threads: int = job_default("omp_threads")
    encryption: Encryption = Encryption()
    #: skip partitions already complete for the same run fingerprint (``--no-resume`` turns it off)
    resume: bool = job_default("resume")
    #: ``NAME==VERSION`` the interpreter must have (``--require``; checked by the driver first)
    requirements: tuple[str, ...] = job_default("requirements")
    #: ``fp32`` or ``int8``; the driver turns ``int8`` into ``fp32`` when it falls back
    precision: str = job_default("precision")
    int8: Int8Settings | None = None
    #: how Spark runs the model (one of ``ENGINES``)
    engine: str = job_default("engine")
    #: the measured top-1 agreement of int8 with fp32 (set by the driver), written into metrics
    int8_agreement: float | None = None
    conversion: ConversionSettings | None = None
    #: the converted model's top-1 agreement with MXNet, as measured when it was converted
    conversion_agreement: float | None = None

    def __post_init__(self) -> None:
        checks = {
            "batch_size": self.batch_size >= 1,
            "top_k": self.top_k >= 1,
            "partitions": self.partitions >= 0,
            "max_partition_keys": self.max_partition_keys is None or self.max_partition_keys >= 1,
            "partition_seconds": self.partition_seconds >= 1,
            "images_per_task_second": self.images_per_task_second > 0,
            "max_error_rate": 0.0 <= self.max_error_rate <= 1.0,
            "prefetch_threads": self.prefetch_threads >= 1,
            "prefetch_depth": self.prefetch_depth >= 1,
            "omp_threads": self.omp_threads >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"invalid {name}: {getattr(self, name)!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"invalid precision: {self.precision!r} (one of {PRECISIONS})")
        if self.engine not in ENGINES:
            raise ValueError(f"invalid engine: {self.engine!r} (one of {ENGINES})")
        if self.precision == "int8" and self.int8 is None:
            raise ValueError("precision int8 needs --int8-cache")
        if self.model.runtime != "mxnet" and self.conversion is None and not self.model.given_onnx:
            raise ValueError(f"runtime {self.model.runtime} needs --conversion-cache")

    def partition_keys(self) -> tuple[int, str]:
        """The most keys a partition holds, and where that bound comes from (for the log)."""
        if self.max_partition_keys is not None:
            return self.max_partition_keys, "--max-partition-keys"
        keys = derived_partition_keys(self.images_per_task_second, self.partition_seconds)
        return keys, (
            f"derived: {self.images_per_task_second:g} images per task-second x "
            f"{self.partition_seconds} s, at least {KEYS_PER_PARTITION_MIN}"
        )
