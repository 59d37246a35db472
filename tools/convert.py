"""``make convert PIPELINE=name DATE=YYYY-MM-DD``: convert a pipeline's MXNet model for its runtime
where MXNet is installed, before its first run on a release whose nodes have no MXNet.

A pipeline with ``model.runtime: onnxruntime`` on emr-7.13.0 names its MXNet model as any other;
its nodes cannot convert it (no MXNet there), so the job looks the converted model up in the
pipeline's cache (``<artifacts_uri>converted/<key>/``) and fails naming this command when it is
missing. This command does on this machine what a driver with MXNet does: the same conversion
(:func:`batch_inference.convert.converted_model`), gated by top-1 agreement with MXNet on
:data:`~batch_inference.convert.AGREEMENT_IMAGES` images of the date's input, cached with its
record; a second call finds it. S3 is reached through the pipeline's Airflow connection, as
``make plan`` does. Run it once per model version (the key changes with the model's files).
Exit code 2 for an invalid pipeline or date, 1 when the conversion is refused or S3 cannot be read.
"""

from __future__ import annotations

import argparse
import itertools
import sys

from tools.rehearse import pipeline_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", help="a pipeline name (include/pipelines/NAME.yaml) or a path")
    parser.add_argument("--date", required=True, help="a date whose input to gate on, YYYY-MM-DD")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from batch_inference.cli import parse_config
    from batch_inference.convert import AGREEMENT_IMAGES, converted_model
    from batch_inference.errors import JobFailed, ModelLoadError
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
            {"partition_date": args.date},
            dag_id=config.pipeline,
            run_id="convert",
            data_interval_end=None,
        )
    except (ConfigError, ValueError) as error:
        print(f"Invalid request: {error}", file=sys.stderr)
        return 2
    (date,) = request.date_requests()
    if date.model.runtime == "mxnet" or date.input_uri is None:
        why = "runs MXNet itself" if date.model.runtime == "mxnet" else "reads a manifest_uri"
        print(f"{config.pipeline}: nothing to convert: the pipeline {why}", file=sys.stderr)
        return 2
    job = parse_config(job_arguments(date, "s3://unused/manifest.json"))  # no manifest is read
    hook = s3_hook(config.aws_conn_id, date.sse.model_dump())
    source = date.input_uri

    def sample() -> list[str]:
        keys = matching_keys(hook, source, date.extensions, date.sample_limit)
        return list(itertools.islice(keys, AGREEMENT_IMAGES))

    try:
        spec, agreement = converted_model(hook.get_conn(), job, sample, source.uri)
    except (JobFailed, ModelLoadError) as error:
        print(f"Conversion refused: {error}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:
        print(f"Cannot reach S3 through {config.aws_conn_id!r}: {error}", file=sys.stderr)
        return 1
    print(
        f"{config.pipeline}: {spec.runtime} model {spec.onnx_uri} (sha256 {spec.onnx_sha256}), "
        f"top-1 agreement with MXNet {agreement:.2%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
