"""The job's settings as plain, picklable dataclasses (shipped from the driver to every task)."""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SCALE = 1.0 / 255.0

SSE_MODES = ("none", "AES256", "aws:kms")


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a ``(3, size, size)`` float32 tensor.

    Each channel is ``(pixel * scale - mean) / std`` with pixels in 0-255.
    """

    image_size: int = 224
    scale: float = DEFAULT_SCALE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

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
    symbol_uri: str
    params_uri: str
    labels_uri: str
    symbol_sha256: str | None = None
    params_sha256: str | None = None
    labels_sha256: str | None = None
    input_name: str = "data"


@dataclass(frozen=True)
class Encryption:
    """Server-side encryption for every object the job writes."""

    mode: str = "none"
    kms_key_id: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in SSE_MODES:
            raise ValueError(f"sse must be one of {', '.join(SSE_MODES)}, got {self.mode!r}")
        if self.kms_key_id and self.mode != "aws:kms":
            raise ValueError("sse_kms_key_id is only valid with sse aws:kms")

    def put_object_args(self) -> dict[str, str]:
        """Extra ``PutObject`` parameters (``ServerSideEncryption``, ``SSEKMSKeyId``)."""
        if self.mode == "none":
            return {}
        args = {"ServerSideEncryption": self.mode}
        if self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args


PRECISIONS = ("fp32", "int8")
#: ``rdd``: :mod:`batch_inference.job`'s mapPartitions; ``predict_batch_udf``:
#: :mod:`batch_inference.dataframe_engine`. Same input, same output contract.
ENGINES = ("rdd", "predict_batch_udf")


@dataclass(frozen=True)
class Int8Settings:
    """How the int8 model is made and when it may be used (:mod:`batch_inference.quantize`)."""

    cache_uri: str
    min_agreement: float = 0.99
    fallback: bool = False
    calibration_uri: str | None = None
    calibration_images: int = 256
    agreement_images: int = 256

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"int8 min agreement must be in [0, 1], got {self.min_agreement}")
        if self.calibration_images < 1 or self.agreement_images < 1:
            raise ValueError("calibration and agreement images must be at least 1")


@dataclass(frozen=True)
class JobConfig:
    """Everything a partition needs; built from the command line by :mod:`batch_inference.cli`."""

    manifest_uri: str
    output_uri: str
    run_id: str
    model: ModelSpec
    preprocess: Preprocess = Preprocess()
    batch_size: int = 64
    top_k: int = 5
    partitions: int = 0
    #: a partition holds at most this many keys, whatever ``partitions`` says
    max_partition_keys: int = 5000
    max_error_rate: float = 0.1
    prefetch_threads: int = 8
    prefetch_depth: int = 2
    omp_threads: int = 0
    encryption: Encryption = Encryption()
    #: skip partitions already complete for the same run fingerprint (``--no-resume`` turns it off)
    resume: bool = True
    #: ``NAME==VERSION`` the interpreter must have (``--require``; checked by the driver first)
    requirements: tuple[str, ...] = ()
    #: ``fp32`` or ``int8``; the driver turns ``int8`` into ``fp32`` when it falls back
    precision: str = "fp32"
    int8: Int8Settings | None = None
    #: the measured top-1 agreement of int8 with fp32 (set by the driver), written into metrics
    int8_agreement: float | None = None
    #: how Spark runs the model (one of ``ENGINES``)
    engine: str = "rdd"

    def __post_init__(self) -> None:
        checks = {
            "batch_size": self.batch_size >= 1,
            "top_k": self.top_k >= 1,
            "partitions": self.partitions >= 0,
            "max_partition_keys": self.max_partition_keys >= 1,
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
