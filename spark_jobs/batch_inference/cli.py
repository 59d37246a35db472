"""Command line of the job (docs/CONTRACTS.md, "Job command line")."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from batch_inference.config import (
    ConversionSettings,
    Encryption,
    Int8Settings,
    JobConfig,
    ModelSpec,
    Preprocess,
)
from batch_inference.contract.settings import MODEL, PREPROCESSING, SETTINGS, groups
from batch_inference.errors import JobFailed

log = logging.getLogger("batch_inference.cli")


class _HelpFormatter(argparse.HelpFormatter):
    """Shows ``(default: ...)`` for every optional argument that takes a value and has a default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        takes_value = action.nargs != 0  # a flag's default is only its off state
        if action.default not in (None, argparse.SUPPRESS) and not action.required and takes_value:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of :data:`batch_inference.contract.settings.SETTINGS`; ``--help``
    shows every argument with its default."""
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Classify the images of a key manifest with an MXNet model on Spark and "
        "write JSON Lines predictions plus per-partition metrics to S3.",
        formatter_class=_HelpFormatter,
    )
    for title, settings in groups().items():
        group = parser.add_argument_group(title)
        for setting in settings:
            setting.add_to(group)
    return parser


def _section(values: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The parsed values (setting name -> value) of the settings whose ``job`` path is in
    ``section`` of :class:`JobConfig` (``""``: its top level), by field name."""
    fields = {}
    for setting in SETTINGS:
        owner, _, field = setting.job.rpartition(".")
        if owner == section and setting.name in values:
            value = values[setting.name]
            fields[field] = tuple(value) if isinstance(value, list) else value
    return fields


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and preprocessing settings' options (shared with :mod:`batch_inference.online`,
    which has a ``--runtime`` of its own: it converts nothing)."""
    for title in (MODEL, PREPROCESSING):
        group = parser.add_argument_group(title)
        for setting in groups()[title]:
            if setting.name != "model.runtime":
                setting.add_to(group)


def model_spec(args: argparse.Namespace, runtime: str) -> ModelSpec:
    """The model of the arguments :func:`add_model_arguments` added, run by ``runtime``."""
    return ModelSpec(**_section(vars(args), "model"), runtime=runtime)


def preprocess(args: argparse.Namespace) -> Preprocess:
    """The preprocessing of the arguments :func:`add_model_arguments` added (``ValueError`` when
    they are inconsistent)."""
    return Preprocess(**_section(vars(args), "preprocess"))


def job_config(values: Mapping[str, Any]) -> JobConfig:
    """The :class:`JobConfig` of parsed arguments (setting name -> value): each value goes to its
    setting's ``job`` path; ``int8`` is set only when ``--int8-cache`` is given, ``conversion``
    only when ``--conversion-cache`` is."""
    int8 = _section(values, "int8")
    conversion = _section(values, "conversion")
    model = _section(values, "model")
    if model.get("onnx_uri") and (model.get("symbol_uri") or model.get("params_uri")):
        raise ValueError(
            "--model-onnx names the model: leave out --model-symbol and --model-params"
        )
    return JobConfig(
        **_section(values, ""),
        model=ModelSpec(**model),
        preprocess=Preprocess(**_section(values, "preprocess")),
        encryption=Encryption(**_section(values, "encryption")),
        int8=Int8Settings(**int8) if int8["cache_uri"] else None,
        conversion=ConversionSettings(**conversion) if conversion["cache_uri"] else None,
    )


def parse_config(argv: Sequence[str] | None = None) -> JobConfig:
    """Parse the command line into a :class:`JobConfig`; exits with a usage error naming the bad
    argument."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return job_config(vars(args))
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``main.py``: returns the process exit code (0 = success)."""
    from batch_inference.environment import check_environment
    from batch_inference.job import run_job
    from batch_inference.job_logging import configure_logging

    configure_logging()
    config = parse_config(argv)
    try:
        versions = check_environment(config.requirements, config.engine, config.model.runtime)
        log.info("job environment %s: %s", sys.executable, versions)
        run_job(config)
    except JobFailed as exc:
        log.error("batch inference job failed: %s", exc)
        return 1
    return 0
