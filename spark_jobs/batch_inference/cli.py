"""Command line of the job (docs/CONTRACTS.md, "Job command line")."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from batch_inference.config import (
    DEFAULT_SCALE,
    ENGINES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRECISIONS,
    SSE_MODES,
    Encryption,
    Int8Settings,
    JobConfig,
    ModelSpec,
    Preprocess,
)
from batch_inference.errors import JobFailed

log = logging.getLogger("batch_inference.cli")


def _three_floats(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated floats, got {text!r}")
    return values  # type: ignore[return-value]


def _floats_text(values: Sequence[float]) -> str:
    return ",".join(str(value) for value in values)


class _HelpFormatter(argparse.HelpFormatter):
    """Shows ``(default: ...)`` for every optional argument that takes a value and has a default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        takes_value = action.nargs != 0  # a flag's default is only its off state
        if action.default not in (None, argparse.SUPPRESS) and not action.required and takes_value:
            text += " (default: %(default)s)"
        return text


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and preprocessing arguments (shared with :mod:`batch_inference.online`)."""
    model = parser.add_argument_group("model")
    model.add_argument("--model-name", required=True, help="model name written into every row")
    model.add_argument("--model-symbol", required=True, help="s3:// URI of the symbol JSON")
    model.add_argument("--model-params", required=True, help="s3:// URI of the params file")
    model.add_argument("--model-labels", required=True, help="s3:// URI of the labels, one a line")
    for part in ("symbol", "params", "labels"):
        model.add_argument(
            f"--model-{part}-sha256", default=None, help=f"hex SHA-256 the {part} file must have"
        )
    model.add_argument("--input-name", default="data", help="name of the symbol's data input")

    prep = parser.add_argument_group("preprocessing")
    prep.add_argument("--image-size", type=int, default=224, help="square input side in pixels")
    prep.add_argument(
        "--scale", type=float, default=DEFAULT_SCALE, help="multiplier applied to 0-255 pixels"
    )
    prep.add_argument(
        "--mean",
        type=_three_floats,
        default=_floats_text(IMAGENET_MEAN),
        help="R,G,B means subtracted after --scale",
    )
    prep.add_argument(
        "--std",
        type=_three_floats,
        default=_floats_text(IMAGENET_STD),
        help="R,G,B standard deviations divided by after the mean",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``--help`` shows every argument with its default."""
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Classify the images of a key manifest with an MXNet model on Spark and "
        "write JSON Lines predictions plus per-partition metrics to S3.",
        formatter_class=_HelpFormatter,
    )
    io_group = parser.add_argument_group("input and output")
    io_group.add_argument("--manifest", required=True, help="s3:// URI of the manifest.json")
    io_group.add_argument("--output", required=True, help="s3:// prefix for the staged output")
    io_group.add_argument("--run-id", required=True, help="run id written into every row")
    io_group.add_argument(
        "--sse", choices=SSE_MODES, default="none", help="server-side encryption of written objects"
    )
    io_group.add_argument("--sse-kms-key-id", default=None, help="KMS key for --sse aws:kms")

    add_model_arguments(parser)

    run = parser.add_argument_group("execution")
    run.add_argument("--batch-size", type=int, default=64, help="images per model call")
    run.add_argument("--top-k", type=int, default=5, help="classes kept per image")
    run.add_argument(
        "--partitions",
        type=int,
        default=0,
        help="Spark partitions; 0 = defaultParallelism x 2, at most one per 100 keys",
    )
    run.add_argument(
        "--max-partition-keys",
        type=int,
        default=5000,
        help="at most this many keys per partition (more partitions if needed): minutes each",
    )
    run.add_argument(
        "--max-error-rate",
        type=float,
        default=0.1,
        help="fraction of error rows above which the job fails",
    )
    run.add_argument(
        "--prefetch-threads", type=int, default=8, help="download/decode threads per partition"
    )
    run.add_argument(
        "--prefetch-depth", type=int, default=2, help="batches downloaded ahead of the model"
    )
    run.add_argument(
        "--omp-threads",
        type=int,
        default=0,
        help="MXNet/OpenMP threads per Python worker; 0 = spark.task.cpus",
    )
    run.add_argument(
        "--engine",
        choices=ENGINES,
        default="rdd",
        help="rdd: mapPartitions; predict_batch_udf: a DataFrame with Spark's predict_batch_udf "
        "(needs pandas and pyarrow); same output",
    )
    int8 = parser.add_argument_group("int8 (batch_inference.quantize)")
    int8.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="the model's arithmetic"
    )
    int8.add_argument(
        "--int8-cache", metavar="URI", help="prefix of the quantized models (required for int8)"
    )
    int8.add_argument(
        "--int8-min-agreement",
        type=float,
        default=0.99,
        help="top-1 agreement with fp32 on this run's images below which int8 is refused",
    )
    int8.add_argument(
        "--int8-fallback",
        action="store_true",
        help="run in fp32 when the agreement is too low (default: fail)",
    )
    int8.add_argument(
        "--calibration-uri",
        metavar="URI",
        help="prefix of calibration images (default: the first images of the run)",
    )
    int8.add_argument("--calibration-images", type=int, default=256, help="images to calibrate")
    int8.add_argument(
        "--agreement-images", type=int, default=256, help="images of the run to measure agreement"
    )
    run.add_argument(
        "--require",
        dest="requirements",
        action="append",
        default=[],
        metavar="NAME==VERSION",
        help="a package version the interpreter must have (checked before anything else; "
        "mxnet, numpy, pillow and boto3 must always be importable)",
    )
    run.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="redo every partition, even those already complete for the same run fingerprint "
        "(manifest, model, preprocessing, top-k, run id, encryption)",
    )
    return parser


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The model of the arguments :func:`add_model_arguments` added."""
    return ModelSpec(
        name=args.model_name,
        symbol_uri=args.model_symbol,
        params_uri=args.model_params,
        labels_uri=args.model_labels,
        symbol_sha256=args.model_symbol_sha256,
        params_sha256=args.model_params_sha256,
        labels_sha256=args.model_labels_sha256,
        input_name=args.input_name,
    )


def preprocess(args: argparse.Namespace) -> Preprocess:
    """The preprocessing of the arguments :func:`add_model_arguments` added (``ValueError`` when
    they are inconsistent)."""
    return Preprocess(
        image_size=args.image_size, scale=args.scale, mean=tuple(args.mean), std=tuple(args.std)
    )


def int8_settings(args: argparse.Namespace) -> Int8Settings | None:
    """The int8 arguments, when ``--int8-cache`` is given."""
    if not args.int8_cache:
        return None
    return Int8Settings(
        cache_uri=args.int8_cache,
        min_agreement=args.int8_min_agreement,
        fallback=args.int8_fallback,
        calibration_uri=args.calibration_uri,
        calibration_images=args.calibration_images,
        agreement_images=args.agreement_images,
    )


def parse_config(argv: Sequence[str] | None = None) -> JobConfig:
    """Parse the command line into a :class:`JobConfig`; exits with a usage error naming the bad
    argument."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return JobConfig(
            manifest_uri=args.manifest,
            output_uri=args.output,
            run_id=args.run_id,
            model=model_spec(args),
            preprocess=preprocess(args),
            batch_size=args.batch_size,
            top_k=args.top_k,
            partitions=args.partitions,
            max_partition_keys=args.max_partition_keys,
            max_error_rate=args.max_error_rate,
            prefetch_threads=args.prefetch_threads,
            prefetch_depth=args.prefetch_depth,
            omp_threads=args.omp_threads,
            encryption=Encryption(mode=args.sse, kms_key_id=args.sse_kms_key_id),
            resume=args.resume,
            requirements=tuple(args.requirements),
            precision=args.precision,
            int8=int8_settings(args),
            engine=args.engine,
        )
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``main.py``: returns the process exit code (0 = success)."""
    from batch_inference.environment import check_environment
    from batch_inference.job import configure_logging, run_job

    configure_logging()
    config = parse_config(argv)
    try:
        versions = check_environment(config.requirements, config.engine)
        log.info("job environment %s: %s", sys.executable, versions)
        run_job(config)
    except JobFailed as exc:
        log.error("batch inference job failed: %s", exc)
        return 1
    return 0
