"""Single-image predictions with the batch job's code: the row the batch would have written.

``python -m batch_inference.online IMAGE --model-name ... --model-symbol ...`` predicts one image
(an ``s3://`` URI or a local file) and prints its row as JSON; :mod:`batch_inference.lambda_handler`
serves the same over AWS Lambda. Same download and decoding
(:func:`batch_inference.partition.prepare`), same preprocessing, same model loading with its
sha256 checks (:func:`batch_inference.model.load_model`, once per process), same ``top_k`` and
row format (:mod:`batch_inference.output`).

Probabilities equal the batch job's bit for bit when the model is bound for the pipeline's batch
size (``--batch-size``); the default, 1, costs one image's compute and agrees to about 1e-7
(float32 kernels of another shape), with the same classes in the same order.

``--runtime onnxruntime --model-onnx URI --model-onnx-sha256 HEX`` runs an ONNX model in ONNX
Runtime instead (the pipeline's own, or the one the batch job converted: ``make convert`` prints
both): MXNet is then neither imported nor needed (``--model-symbol`` and ``--model-params``, when
given, name the MXNet model it was converted from and are not downloaded).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from batch_inference.batching import top_k
from batch_inference.cli import add_model_arguments, model_spec, preprocess
from batch_inference.config import ModelSpec, Preprocess
from batch_inference.contract.settings import RUNTIMES
from batch_inference.model import load_model
from batch_inference.output import error_row, prediction_row
from batch_inference.partition import Prepared, decode_prepared, prepare
from batch_inference.runtime import BoundModel
from batch_inference.s3io import make_client

#: ``run_id`` of online rows unless ``--run-id`` (``RUN_ID``) says otherwise
ONLINE_RUN_ID = "online"


@dataclass(frozen=True)
class OnlineSettings:
    """The model, how images become its input, and what a row says."""

    model: ModelSpec
    preprocess: Preprocess
    top_k: int = 5
    batch_size: int = 1
    run_id: str = ONLINE_RUN_ID

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.batch_size < 1:
            raise ValueError(f"invalid top_k {self.top_k} or batch_size {self.batch_size}")


def build_parser(with_image: bool = True) -> argparse.ArgumentParser:
    """The CLI's parser: the job's model and preprocessing arguments, ``--top-k``,
    ``--batch-size`` and ``--run-id`` (and the image, for the CLI)."""
    parser = argparse.ArgumentParser(
        prog="python -m batch_inference.online",
        description="Predict one image with the batch job's model and code; prints its row.",
    )
    if with_image:
        parser.add_argument("image", help="s3://bucket/key or a local file")
    add_model_arguments(parser)
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="mxnet",
        help="mxnet: the symbol and params; onnxruntime or openvino: the ONNX model of "
        "--model-onnx (default: mxnet)",
    )
    parser.add_argument("--top-k", type=int, default=5, help="classes kept (default: 5)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="batch size the model is bound for: the pipeline's gives bit-identical "
        "probabilities at that many images' compute (default: 1)",
    )
    parser.add_argument(
        "--run-id", default=ONLINE_RUN_ID, help=f"run_id of the row (default: {ONLINE_RUN_ID})"
    )
    return parser


def settings_of(args: argparse.Namespace) -> OnlineSettings:
    """The settings of parsed arguments (``ValueError`` when inconsistent)."""
    if (args.runtime != "mxnet") != (vars(args)["model.onnx"] is not None):
        raise ValueError(
            f"--model-onnx is needed with --runtime {args.runtime}, and only with a runtime other "
            "than mxnet"
        )
    return OnlineSettings(
        model=model_spec(args, args.runtime),
        preprocess=preprocess(args),
        top_k=args.top_k,
        batch_size=args.batch_size,
        run_id=args.run_id,
    )


def env_name(flag: str) -> str:
    """The environment variable of a CLI flag: ``--model-symbol`` -> ``MODEL_SYMBOL``."""
    return flag.removeprefix("--").upper().replace("-", "_")


def settings_from_env(environ: Mapping[str, str]) -> OnlineSettings:
    """The settings from environment variables named after the CLI's flags (``MODEL_NAME``,
    ``MODEL_SYMBOL``, ``MODEL_PARAMS_SHA256``, ``IMAGE_SIZE``, ``TOP_K``, ...); ``ValueError``
    naming the variable when one is missing or invalid."""
    parser = build_parser(with_image=False)
    argv = []
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and env_name(flag) in environ:
                argv += [flag, environ[env_name(flag)]]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
        return settings_of(args)
    except SystemExit:
        message = stderr.getvalue().strip().splitlines()[-1]
    except ValueError as exc:  # settings that parse but do not fit together
        message = str(exc)
    flags = sorted({word for word in message.replace(",", " ").split() if word[:2] == "--"})
    names = ", ".join(env_name(flag) for flag in flags)
    raise ValueError(f"environment: {names}: {message}")


class Predictor:
    """One model, loaded once (on first use) and reused for every image."""

    def __init__(self, settings: OnlineSettings, client=None) -> None:
        self.settings = settings
        self.client = client or make_client()

    def model(self) -> BoundModel:
        """The bound model (:func:`batch_inference.model.load_model` keeps it per process);
        raises :class:`~batch_inference.errors.ModelLoadError` when it cannot be loaded."""
        spec = self.settings
        return load_model(self.client, spec.model, spec.batch_size, spec.preprocess.image_size)

    def predict_uri(self, uri: str) -> dict:
        """The row of the object at ``uri`` (``s3://``), downloaded as the batch job does."""
        return self.row(prepare(self.client, uri, self.settings.preprocess))

    def predict_bytes(self, key: str, data: bytes) -> dict:
        """The row of an image given as bytes; ``key`` is the row's ``key``."""
        return self.row(decode_prepared(key, data, self.settings.preprocess, 0.0))

    def row(self, prepared: Prepared) -> dict:
        """A prepared image's row: a prediction, or the batch job's error row."""
        name, run_id = self.settings.model.name, self.settings.run_id
        if prepared.tensor is None:
            assert prepared.error is not None  # decode_prepared gives a tensor or an error
            return error_row(prepared.key, prepared.error, name, run_id)
        model = self.model()
        probabilities = model.predict(prepared.tensor[None])[0]
        top = top_k(probabilities, model.labels, self.settings.top_k)
        return prediction_row(prepared.key, top, name, run_id)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the image's row as JSON; exit 0 for a prediction, 1 for an error row (a bad
    or missing image) and 2 for bad arguments."""
    from batch_inference.errors import ModelLoadError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        predictor = Predictor(settings_of(args))
    except ValueError as exc:
        parser.error(str(exc))
    try:
        if args.image.startswith("s3://"):
            row = predictor.predict_uri(args.image)
        else:
            try:
                data = Path(args.image).read_bytes()
            except OSError as exc:
                parser.error(f"image: cannot read {args.image}: {exc}")
            row = predictor.predict_bytes(args.image, data)
    except ModelLoadError as exc:
        print(f"the model could not be loaded: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(row))
    return 0 if row["error"] is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
