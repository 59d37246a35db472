"""``make rehearse PIPELINE=name``: run a pipeline on this machine with its own Spark settings.

An EMR pipeline cannot be tried here, so it is rehearsed: the same DAG (``airflow dags test``),
the same job, batch size, threads and prefetch, and the spark-defaults its EMR step would get
(executor cores and memory, ``spark.executor.pyspark.memory`` and so the Python workers' address
space limit, task CPUs, the pipeline's ``spark_defaults``), with only the executor count scaled to
this machine (:func:`emr_inference.local.operators.emulated_cluster_conf`), on the local backend
against moto's S3 server. The model's URIs are not reachable here, so a stand-in of the same
architecture and input size is staged at them (random weights: the memory and time of a real
forward, not its answers), with realistic photos (~500x375 JPEG) as input.

An EMR pipeline runs on its release's node twin (:mod:`emr_inference_tools.node_twin`): Spark's
driver and
Python workers on the nodes' CPython and packages, built by the bootstrap action itself, under the
release's Spark version; every job module is imported there first, and the workers' reported
interpreter and package versions must be the node's.

Before it runs, the pipeline's executor settings are checked as an EMR run checks them
(:func:`emr_inference.emr.sizing.check_sizing`); ``--skip-sizing-check`` runs them anyway, to see
what the job would do with them. After the run, the workers' measured memory peaks are compared
with ``model.worker_memory_mb`` / ``model.worker_address_space_mb``: a rehearsal fails when the
pipeline under-declares what its model needs. Exit code 0 means it would work on EMR as far as this
machine can tell (docs/SIZING.md says what a rehearsal cannot check).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from emr_inference_tools.airflow_env import REPO_ROOT, airflow_env
from emr_inference_tools.local_s3 import LocalS3, start_local_s3
from emr_inference_tools.node_twin import (
    NodeTwin,
    NodeTwinError,
    build_twin,
    check_job_imports,
)

if TYPE_CHECKING:
    from emr_inference.config import ModelConfig, PipelineConfig, RequestDefaults
    from emr_inference.emr.releases import EmrRelease
    from emr_inference.resolved import ResolvedRequest

PIPELINES_DIR = REPO_ROOT / "include" / "pipelines"
REHEARSAL_DIR = REPO_ROOT / ".rehearsal"
PARTITION_DATE = "2026-11-22"


def log(message: str) -> None:
    print(f"[rehearse] {message}", flush=True)


def shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", help="a pipeline name (include/pipelines/NAME.yaml) or a path")
    parser.add_argument("--images", type=int, default=200, help="input images (default 200)")
    parser.add_argument(
        "--partition-date", default=PARTITION_DATE, help=f"date to process ({PARTITION_DATE})"
    )
    parser.add_argument(
        "--skip-sizing-check",
        action="store_true",
        help="run even when the EMR sizing check refuses the settings",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        help="the run's precision, asked for in its conf as an operator would (default: the "
        "pipeline's)",
    )
    parser.add_argument("--home", type=Path, default=REHEARSAL_DIR, help="work folder")
    parser.add_argument(
        "--bootstrap-requirements",
        type=Path,
        default=None,
        help="the bootstrap's pins to build the node twin from (default: the release's "
        "shipped include/bootstrap/requirements-emr*.txt): try new pins before shipping them",
    )
    return parser.parse_args(argv)


def pipeline_path(name: str) -> Path:
    """``include/pipelines/<name>.yaml``, or ``name`` itself when it is a file."""
    path = Path(name)
    return path if path.suffix in (".yaml", ".yml") else PIPELINES_DIR / f"{name}.yaml"


def local_shape(executor_cores: int, heap_mb: int, cores: int | None = None) -> dict[str, Any]:
    """One local worker holding as many executors as this machine's cores allow (at least one)."""
    executors = max(1, (cores or os.cpu_count() or 1) // executor_cores)
    return {
        "workers": 1,
        "worker_cores": executors * executor_cores,
        "worker_memory": f"{executors * heap_mb}m",
        "emulate_cluster": True,
    }


def rehearsal_pipeline(data: dict[str, Any], request: RequestDefaults) -> dict[str, Any]:
    """The pipeline file to rehearse: the original, on the local backend, emulating its cluster.

    Only what cannot apply here changes: the backend, the local workers (sized to hold at least
    one of its executors), a manual schedule, no retries, fast polls, no alerts (see
    :func:`without_alerts`).
    """
    from emr_inference.emr.sizing import executor_plan

    plan = executor_plan(request)
    return without_alerts(
        {
            **data,
            "backend": "local",
            "schedule": None,
            "catchup": False,
            "retries": 0,
            "poke_interval_seconds": 2,
            "local": local_shape(plan.executor_cores, plan.heap_mb),
        }
    )


def without_alerts(data: dict[str, Any]) -> dict[str, Any]:
    """The pipeline without ``alerts``: a rehearsal tells no one, and ``airflow dags test``
    cannot finish a run of a DAG with deadline alerts (Airflow 3.3.2's ``DagRun.update_state``
    looks them up by ids that ``dags test`` never stored)."""
    return {**data, "alerts": None}


StandIn = Callable[[Path, "ModelConfig"], Any]


def _resnet18_v1(out_dir: Path, model: ModelConfig):
    from emr_inference_tools.demo.models import export_resnet18

    return export_resnet18(out_dir, image_size=model.image_size, name=model.name)


def _digits_cnn(out_dir: Path, model: ModelConfig):
    from emr_inference_tools.demo.models import train_digits_classifier

    return train_digits_classifier(out_dir, image_size=model.image_size, name=model.name)


#: model.name -> a function exporting a model of the same architecture and input size.
STAND_INS: dict[str, StandIn] = {"resnet18_v1": _resnet18_v1, "digits-cnn": _digits_cnn}
#: The stand-ins with random weights: their top classes are near ties, so int8 changes the top-1
#: of many more images than on a trained model (measured on the rehearsal's photos: ONNX Runtime's
#: int8 ~92 %, MXNet's ~76 %; on the trained digits CNN 99.5 % and 99.8 %).
RANDOM_STAND_INS = {"resnet18_v1"}
#: The int8 gate of a rehearsal with a random stand-in: it still refuses a broken quantization
#: (chance is 0.1 % on 1,000 classes), not the stand-in's ties.
RANDOM_STAND_IN_INT8_MIN_AGREEMENT = 0.5


def int8_gate_for_stand_in(
    rehearsed: dict[str, Any], model_name: str, precision: str
) -> dict[str, Any]:
    """The rehearsed pipeline with the int8 gate a random stand-in can pass (logged), when the run
    is int8 and the stand-in for ``model_name`` is random; else as it is."""
    if precision != "int8" or model_name not in RANDOM_STAND_INS:
        return rehearsed
    gate = RANDOM_STAND_IN_INT8_MIN_AGREEMENT
    log(
        f"int8 with a random-weights stand-in {model_name}: its near-tied top classes make "
        f"int8's top-1 agreement meaningless, so the rehearsal gates at {gate:.0%} (the "
        f"pipeline's int8.min_agreement is for the real model)"
    )
    return {**rehearsed, "int8": {**(rehearsed.get("int8") or {}), "min_agreement": gate}}


def stage_stand_in_model(client, model: ModelConfig, work: Path) -> dict[str, Any]:
    """Export the stand-in for ``model`` and upload it at the pipeline's model URIs; returns the
    run's ``model`` override (the stand-in's digests)."""
    from batch_inference.model import sha256_hex
    from batch_inference.s3io import parse_s3_uri

    make = STAND_INS.get(model.name)
    if make is None:
        raise SystemExit(
            f"[rehearse] model.name: no stand-in for {model.name!r} "
            f"(known: {', '.join(sorted(STAND_INS))}); add one to emr_inference_tools/rehearse.py"
        )
    exported = make(work / "model", model)
    files: list[tuple[str, str | None, bytes]] = [
        ("labels", model.labels, exported.labels_path.read_bytes())
    ]
    if model.onnx is None:
        files += [
            ("symbol", model.symbol, exported.symbol_path.read_bytes()),
            ("params", model.params, exported.params_path.read_bytes()),
        ]
    else:  # the pipeline names an ONNX file: the stand-in exported to ONNX as MXNet would
        from batch_inference.convert import export_onnx

        symbol_json, params = exported.symbol_path.read_text(), exported.params_path.read_bytes()
        onnx = export_onnx(symbol_json, params, model.input_name, model.image_size)
        files.append(("onnx", model.onnx, onnx))
    override = {}
    for part, uri, data in files:
        assert uri is not None  # ModelConfig: symbol and params, or onnx
        target = parse_s3_uri(uri, f"model.{part}")
        client.put_object(Bucket=target.bucket, Key=target.key, Body=data)
        override[f"{part}_sha256"] = sha256_hex(data)
    return override


def upload_photos(client, input_uri: str, count: int) -> None:
    """``count`` realistic photos (~500x375 JPEG, bench.dataset) under ``input_uri``."""
    from batch_inference.s3io import parse_s3_uri

    from bench.dataset import photo_jpeg

    prefix = parse_s3_uri(input_uri, "input_uri")
    for index in range(count):
        key = f"{prefix.key}photo-{index:06d}.jpg"
        client.put_object(Bucket=prefix.bucket, Key=key, Body=photo_jpeg(index))


def create_buckets(client, request: ResolvedRequest) -> None:
    """Every bucket the request reads or writes."""
    prefixes = (request.input_uri, request.output_uri, request.staging_uri, request.artifacts_uri)
    buckets = {prefix.bucket for prefix in prefixes if prefix}
    model = request.model
    buckets |= {uri.split("/")[2] for uri in model.files().values()}
    for bucket in sorted(buckets):
        client.create_bucket(Bucket=bucket)


def resolve(
    path: Path, partition_date: str
) -> tuple[dict[str, Any], PipelineConfig, ResolvedRequest]:
    """The pipeline file's data, its config and the request a run of ``partition_date`` gets
    (EMR sizing not checked yet)."""
    from emr_inference.config import PipelineConfig
    from emr_inference.request import resolve_request

    data = yaml.safe_load(path.read_text())
    data.setdefault("pipeline", path.stem)
    local = PipelineConfig.model_validate({**data, "backend": "local"})
    request = resolve_request(
        local,
        {"partition_date": partition_date},
        dag_id=local.pipeline,
        run_id="rehearsal",
        data_interval_end=None,
    )
    return data, local, request


def describe(request: RequestDefaults) -> list[str]:
    """What EMR would get and what the rehearsal runs."""
    from emr_inference.emr.sizing import executor_plan, spark_properties
    from emr_inference.local.operators import emulated_cluster_conf

    plan = executor_plan(request)
    emulated = emulated_cluster_conf(request)
    lines = [
        f"EMR executors: {plan.instances} x ({plan.executor_cores} cores, container "
        f"{plan.container_mb} MiB = heap {plan.heap_mb} + overhead {plan.overhead_mb} + pyspark "
        f"{plan.pyspark_mb}), {plan.concurrent_tasks} task(s) each; Python worker limit: "
        + (f"{plan.worker_limit_mb} MiB address space" if plan.worker_limit_mb else "none"),
        "EMR spark-defaults: " + json.dumps(spark_properties(request), sort_keys=True),
        "rehearsal --conf:  " + json.dumps(emulated, sort_keys=True),
    ]
    return lines


def run_dag(env: dict[str, str], pipeline: str, conf: dict[str, Any], log_file: Path) -> int:
    """``airflow dags test`` of the rehearsal pipeline; returns its exit code."""
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    with log_file.open("w") as out:
        return subprocess.run(
            [*airflow, "dags", "test", pipeline, "--conf", json.dumps(conf)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        ).returncode


def prepared_here(release: EmrRelease | None, model: ModelConfig, precision: str) -> str | None:
    """Why ``make convert`` must run here before the DAG (as the runbook tells an operator), or
    ``None``: a release whose nodes have no MXNet cannot convert an MXNet model for a converted
    runtime, nor quantize for int8 (an ONNX file named by the pipeline needs nothing in fp32)."""
    if release is None or "mxnet" in release.application_packages or model.runtime == "mxnet":
        return None
    if model.onnx is None:
        return f"{release.label}'s nodes have no MXNet: converting the model here first"
    if precision == "int8":
        return f"{release.label}'s nodes cannot quantize: quantizing the ONNX file here first"
    return None


def convert_first(
    env: dict[str, str], pipeline: Path, partition_date: str, precision: str | None
) -> int:
    """``make convert`` for the rehearsed pipeline, as the runbook tells an operator to before the
    first run on a release without MXNet (:mod:`emr_inference_tools.convert`, on this machine's
    MXNet)."""
    command = [
        sys.executable,
        "-m",
        "emr_inference_tools.convert",
        str(pipeline),
        "--date",
        partition_date,
    ]
    command += ["--precision", precision] if precision else []
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    for line in (result.stdout + result.stderr).strip().splitlines()[-3:]:
        log(f"  {line}")
    return result.returncode


def job_errors(airflow_home: Path) -> list[str]:
    """The distinct Python exceptions in the rehearsal's driver logs (executor tracebacks
    included), in order of first appearance."""
    found: dict[str, None] = {}
    for driver_log in sorted(airflow_home.glob("local_clusters/*/steps/*/driver.log")):
        for line in driver_log.read_text(errors="replace").splitlines():
            if re.match(r"^[A-Za-z_.]*(Error|Exception|Failed): ", line):
                found.setdefault(line.strip()[:300])
    return list(found)


def read_summary(client, output_uri: str) -> dict[str, Any] | None:
    """The published ``_run_summary.json``, or None when nothing was published."""
    bucket, _, key = output_uri[len("s3://") :].partition("/")
    try:
        body = client.get_object(Bucket=bucket, Key=key + "_run_summary.json")["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def made_by(summary: dict[str, Any]) -> str:
    """What made the rows, and how far it agrees with what it was made from."""
    said = (
        f"the rows were made by {summary.get('runtime')} {summary.get('precision')} on engine "
        f"{summary.get('engine')}"
    )
    conversion, int8 = summary.get("conversion_top1_agreement"), summary.get("int8_top1_agreement")
    said += f", top-1 agreement with MXNet {conversion:.2%}" if conversion is not None else ""
    return said + (f", int8 with fp32 {int8:.2%}" if int8 is not None else "")


def memory_verdict(summary: dict[str, Any], model: ModelConfig) -> list[str]:
    """Problems with the declared per-worker memory, against what the workers measured."""
    problems = []
    for measured_name, declared_name, declared in (
        ("worker_peak_rss_mb", "worker_memory_mb", model.worker_memory_mb),
        ("worker_peak_address_space_mb", "worker_address_space_mb", model.worker_address_space_mb),
    ):
        measured = summary.get(measured_name)
        if measured is not None and measured > declared:
            problems.append(
                f"model.{declared_name}: the workers measured {measured} MiB "
                f"({measured_name}) but the pipeline declares {declared}: raise it "
                "(with some headroom), or the executors are sized for less than the model needs"
            )
    return problems


def environment_verdict(ran: list[dict[str, Any]], twin: NodeTwin) -> list[str]:
    """Problems with what the Python workers reported they ran on (the run summary's
    ``worker_environments``), against the node twin's interpreter and packages."""
    if not ran:
        return ["the Python workers reported no environment (worker_environments is empty)"]
    return [
        f"a Python worker ran on {name} {environment.get(name)}, the "
        f"{twin.release.label} node has {expected}: the rehearsal did not run on the node twin"
        for environment in ran
        for name, expected in twin.versions.items()
        if environment.get(name) != expected
    ]


def rehearse(args: argparse.Namespace, s3: LocalS3) -> int:
    """Stage, run and judge one rehearsal; returns the exit code."""
    from emr_inference.config import LocalConfig
    from emr_inference.emr.sizing import SizingError, check_sizing

    path = pipeline_path(args.pipeline)
    data, config, request = resolve(path, args.partition_date)
    emr = data.get("backend", "emr") == "emr"
    log(f"pipeline {config.pipeline} ({shown(path)}), backend {data.get('backend', 'emr')}")
    if emr:
        try:
            check_sizing(request)
        except SizingError as error:
            log(f"EMR sizing check: {error}")
            if not args.skip_sizing_check:
                log("FAILED before any Spark (run with --skip-sizing-check to see the job fail)")
                return 1
    rehearsed = (
        rehearsal_pipeline(data, request) if emr else without_alerts({**data, "schedule": None})
    )
    precision = args.precision or request.precision
    rehearsed = int8_gate_for_stand_in(rehearsed, request.model.name, precision)
    twin = None
    if emr:
        emulated = LocalConfig.model_validate(rehearsed["local"])
        for line in describe(request.model_copy(update={"local": emulated})):
            log(line)
        try:
            twin = build_twin(request.cluster.release_label, args.bootstrap_requirements, log=log)
            imported = check_job_imports(twin)
        except (NodeTwinError, KeyError) as error:
            log(f"FAILED before any Spark: the EMR node's environment: {error}")
            return 1
        log(f"all {len(imported)} job modules import on the node's Python")
        log(
            f"Spark driver and Python workers run on the {twin.describe()}; Spark "
            f"{twin.release.spark} ({shown(twin.spark_home)})"
        )

    work = args.home / config.pipeline
    shutil.rmtree(work, ignore_errors=True)
    pipelines = work / "pipelines"
    pipelines.mkdir(parents=True)
    (pipelines / f"{config.pipeline}.yaml").write_text(yaml.safe_dump(rehearsed))

    client = s3.client()
    create_buckets(client, request)
    log(f"staging a stand-in {request.model.name} and {args.images} photos")
    model_digests = stage_stand_in_model(client, request.model, work)
    assert request.input_uri is not None, "a rehearsal lists its photos from input_uri"
    upload_photos(client, request.input_uri.uri, args.images)

    env = airflow_env(
        s3.endpoint_url,
        home=work / "airflow",
        extra={"EMR_INFERENCE_PIPELINES_DIR": str(pipelines), **(twin.spark_env() if twin else {})},
    )
    release = twin.release if twin is not None else None
    if why := prepared_here(release, request.model, args.precision or request.precision):
        log(why)
        pipeline = pipelines / f"{config.pipeline}.yaml"
        code = convert_first(env, pipeline, args.partition_date, args.precision)
        if code != 0:
            log("FAILED before the DAG: the model could not be converted")
            return 1
    log_file = work / "dags-test.log"
    log(f"running the DAG (airflow dags test; log {shown(log_file)})")
    started = time.monotonic()
    conf = {"partition_date": args.partition_date, "model": model_digests}
    conf |= {"precision": args.precision} if args.precision else {}
    code = run_dag(env, config.pipeline, conf, log_file)
    log(f"DAG run ended with exit code {code} after {time.monotonic() - started:.0f} s")
    summary = read_summary(client, request.output_uri.uri)
    if code != 0 or summary is None:
        log("FAILED: nothing published. The job's errors:")
        print("\n".join(job_errors(work / "airflow")) or f"(none: see {log_file})", flush=True)
        return 1
    log(
        f"published {summary['rows']} rows ({summary['errors']} errors) to "
        f"{request.output_uri.uri}, {summary['images_per_second']} images/s; largest Python "
        f"worker: {summary.get('worker_peak_rss_mb')} MiB resident, "
        f"{summary.get('worker_peak_address_space_mb')} MiB address space"
    )
    log(made_by(summary))
    problems = memory_verdict(summary, request.model)
    if args.precision and summary.get("precision") != args.precision:
        problems.append(f"the run asked for {args.precision}, its rows are {summary['precision']}")
    if twin is not None:
        ran = summary.get("worker_environments") or []
        for environment in ran:
            log(
                "the Python workers ran on: "
                + ", ".join(f"{k} {v}" for k, v in environment.items())
            )
        problems += environment_verdict(ran, twin)
    for problem in problems:
        log(f"FAILED: {problem}")
    if not problems:
        log("PASSED")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.home.mkdir(parents=True, exist_ok=True)
    log("starting the local S3 server (moto) on 127.0.0.1")
    s3 = start_local_s3()
    try:
        return rehearse(args, s3)
    finally:
        s3.stop()


if __name__ == "__main__":
    sys.exit(main())
