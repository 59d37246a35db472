"""``make convert PIPELINE=name DATE=YYYY-MM-DD [PRECISION=int8]``: convert a pipeline's MXNet
model for its runtime where MXNet is installed (and quantize it for int8 runs), before its first
run on a release whose nodes have no MXNet. A pipeline naming its own ONNX file (``model.onnx``)
has nothing to convert; for int8 runs its file is quantized the same way.

A pipeline with ``model.runtime: onnxruntime`` on emr-7.13.0 names its MXNet model as any other;
its nodes cannot convert it (no MXNet there), so the job looks the converted model up in the
pipeline's cache (``<artifacts_uri>converted/<key>/``) and fails naming this command when it is
missing. This command does on this machine what a driver with MXNet does: the same conversion
(:func:`batch_inference.convert.converted_model`), gated by top-1 agreement with MXNet on
:data:`~batch_inference.convert.AGREEMENT_IMAGES` images of the date's input, cached with its
record; a second call finds it. For int8 runs (the pipeline's ``precision: int8``, or
``--precision int8`` for runs that will ask for it in their conf), the converted model is then
quantized as :mod:`batch_inference.quantize_onnx` does on a driver that has ONNX Runtime's
quantizer, calibrated on the date's first images (or the pipeline's ``int8.calibration_uri``), and
its agreement with the converted fp32 model is printed: each run gates on its own images again.
S3 is reached through the pipeline's Airflow connection, as ``make plan`` does. Run it once per
model version (the keys change with the model's files).
Exit code 2 for an invalid pipeline or date, 1 when the conversion is refused or S3 cannot be read.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys

from emr_inference_tools.rehearse import pipeline_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", help="a pipeline name (include/pipelines/NAME.yaml) or a path")
    parser.add_argument("--date", required=True, help="a date whose input to gate on, YYYY-MM-DD")
    parser.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        help="the precision the runs will ask for (default: the pipeline's); int8 quantizes too",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from batch_inference.agreement import decode_sample, top1_agreement
    from batch_inference.cli import parse_config
    from batch_inference.convert import AGREEMENT_IMAGES, converted_model, pinned_onnx
    from batch_inference.errors import JobFailed, ModelLoadError
    from batch_inference.quantize import int8_settings
    from batch_inference.quantize_onnx import onnx_int8
    from botocore.exceptions import BotoCoreError, ClientError
    from emr_inference.config import ConfigError, load_pipeline
    from emr_inference.job_command import job_arguments
    from emr_inference.manifest import matching_keys
    from emr_inference.request import resolve_request
    from emr_inference.s3 import s3_hook

    args = parse_args(argv)
    try:
        config = load_pipeline(pipeline_path(args.pipeline))
        request = resolve_request(
            config,
            {"partition_date": args.date}
            | ({"precision": args.precision} if args.precision else {}),
            dag_id=config.pipeline,
            run_id="convert",
            data_interval_end=None,
        )
    except (ConfigError, ValueError) as error:
        print(f"Invalid request: {error}", file=sys.stderr)
        return 2
    (date,) = request.date_requests()
    given_onnx = date.model.onnx is not None
    if (
        date.model.runtime == "mxnet"
        or date.input_uri is None
        or (given_onnx and date.precision != "int8")
    ):
        why = (
            "runs MXNet itself"
            if date.model.runtime == "mxnet"
            else "reads a manifest_uri"
            if date.input_uri is None
            else "names its ONNX file (model.onnx)"
        )
        print(f"{config.pipeline}: nothing to convert: the pipeline {why}", file=sys.stderr)
        return 2
    job = parse_config(job_arguments(date, "s3://unused/manifest.json"))  # no manifest is read
    hook = s3_hook(config.aws_conn_id, date.sse.model_dump())
    source = date.input_uri

    def first_keys(count: int) -> list[str]:
        keys = matching_keys(hook, source, date.extensions, date.sample_limit)
        return list(itertools.islice(keys, count))

    def sample() -> list[str]:
        return first_keys(AGREEMENT_IMAGES)

    client = hook.get_conn()
    try:
        if given_onnx:
            spec, gated = pinned_onnx(client, job.model), "the pipeline's own, not converted"
        else:
            spec, agreement = converted_model(client, job, sample, source.uri)
            gated = f"top-1 agreement with MXNet {agreement:.2%}"
        print(
            f"{config.pipeline}: {spec.runtime} model {spec.onnx_uri} (sha256 {spec.onnx_sha256}), "
            f"{gated}"
        )
        if date.precision == "int8":
            converted = dataclasses.replace(job, model=spec)
            int8_spec, bind_both = onnx_int8(client, converted, first_keys, source.uri)
            tensors = decode_sample(client, sample(), converted, "int8")
            fp32, int8 = bind_both(min(job.batch_size, len(tensors)), job.preprocess.image_size)
            agreement = top1_agreement(fp32, int8, tensors)
            print(
                f"{config.pipeline}: int8 model {int8_spec.onnx_uri} (sha256 "
                f"{int8_spec.onnx_sha256}), top-1 agreement with fp32 {agreement:.2%} on "
                f"{len(tensors)} images of {source.uri} (each run gates on its own: minimum "
                f"{int8_settings(job).min_agreement:.2%})"
            )
            if agreement < int8_settings(job).min_agreement:
                then = "in fp32" if int8_settings(job).fallback else "not at all"
                print(
                    f"Quantization refused: below int8.min_agreement on these images; runs whose "
                    f"own images agree as little will run {then} (int8.on_disagreement)",
                    file=sys.stderr,
                )
                return 1
    except (JobFailed, ModelLoadError) as error:
        print(f"Conversion refused: {error}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:
        print(f"Cannot reach S3 through {config.aws_conn_id!r}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
