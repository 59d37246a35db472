"""``make demo``: the whole pipeline on this machine, then a short report.

1. starts moto's S3 server on loopback (:mod:`emr_inference_tools.local_s3`);
2. builds the demo data: held-out scikit-learn digits rendered as PNG/JPEG (their true labels kept
   aside), two real photos that scikit-learn ships, and a few corrupt files of every kind the job
   knows; trains the demo digits classifier (seconds) and stages it where ``demo.yaml`` expects it;
3. runs the ``demo`` DAG through Airflow (``airflow dags test``, local backend: a real Spark
   standalone master and worker that the DAG starts and stops);
4. reads the published output and prints: images, errors by type, accuracy against the true labels,
   images/s, and where the output is.

Everything it starts is stopped at the end; a second run works the same way (the S3 server is new
each time, the Airflow home under ``.demo/`` is reused).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from emr_inference_tools.airflow_env import REPO_ROOT, airflow_env
from emr_inference_tools.local_s3 import LocalS3, start_local_s3

DEMO_DIR = REPO_ROOT / ".demo"
DAG_ID = "demo"
IMAGES_BUCKET, PREDICTIONS_BUCKET, MODELS_BUCKET = "demo-images", "demo-predictions", "demo-models"
MODEL_PREFIX = "digits"  # demo.yaml: s3://demo-models/digits/digits-cnn-*
PHOTOS = ("china.jpg", "flower.jpg")  # scikit-learn's sample images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=int, default=400, help="digits and bad inputs together (default 400)"
    )
    parser.add_argument(
        "--bad-fraction", type=float, default=0.03, help="share of corrupt inputs (default 0.03)"
    )
    parser.add_argument(
        "--partition-date", default="2026-11-22", help="the date partition to process"
    )
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def seed_demo(
    s3: LocalS3,
    partition_dates: list[str],
    images: int,
    bad_fraction: float,
    model_dir: Path = DEMO_DIR / "model",
) -> dict[str, int | None]:
    """Create the demo buckets, stage the demo model where ``demo.yaml`` expects it and upload the
    demo images of every date in ``partition_dates``; returns ``{uri: true label or None}``.

    Also used by ``make airflow`` (:mod:`emr_inference_tools.demo.run_airflow`) and the REST API
    tests.
    """
    from emr_inference_tools.demo.images import demo_objects, upload_objects
    from emr_inference_tools.demo.models import train_digits_classifier, upload_model

    client = s3.client()
    existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
    for bucket in {IMAGES_BUCKET, PREDICTIONS_BUCKET, MODELS_BUCKET} - existing:
        client.create_bucket(Bucket=bucket)

    log("training the demo digits classifier (a few seconds)")
    shutil.rmtree(model_dir, ignore_errors=True)
    model = train_digits_classifier(model_dir)
    upload_model(client, model, MODELS_BUCKET, MODEL_PREFIX)

    objects = demo_objects(images, bad_fraction=bad_fraction)
    truth: dict[str, int | None] = {}
    for partition_date in partition_dates:
        prefix = f"images/dt={partition_date}/"
        uris = upload_objects(client, IMAGES_BUCKET, prefix, objects)
        truth.update(
            (uri, obj.label) for uri, obj in zip(uris, objects, strict=True) if obj.body is not None
        )
        truth.update(upload_photos(client, prefix))
        uploaded = sum(obj.body is not None for obj in objects) + len(PHOTOS)
        log(f"uploaded {uploaded} objects to s3://{IMAGES_BUCKET}/{prefix}")
    return truth


def upload_photos(client, prefix: str) -> dict[str, None]:
    """The real photos scikit-learn ships, re-encoded as JPEG (no true digit label)."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    from emr_inference_tools.demo.images import encode

    uris: dict[str, None] = {}
    for name in PHOTOS:
        body = encode(Image.fromarray(load_sample_image(name)), "JPEG")
        key = f"{prefix}photo-{name}"
        client.put_object(Bucket=IMAGES_BUCKET, Key=key, Body=body)
        uris[f"s3://{IMAGES_BUCKET}/{key}"] = None
    return uris


def run_pipeline(env: dict[str, str], partition_date: str) -> float:
    """``airflow dags test demo`` with the partition date; returns its wall seconds."""
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    log_file = DEMO_DIR / "dags-test.log"
    log(f"running the '{DAG_ID}' DAG through Airflow (log: {log_file.relative_to(REPO_ROOT)})")
    started = time.monotonic()
    conf = json.dumps({"partition_date": partition_date})
    with log_file.open("w") as out:
        result = subprocess.run(
            [*airflow, "dags", "test", DAG_ID, "--conf", conf],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"[demo] the DAG run failed (exit {result.returncode}):\n{tail}")
    return seconds


def download_output(s3: LocalS3, output_prefix: str, dest: Path) -> tuple[dict, list[dict]]:
    """Copy the published output to ``dest`` (the S3 server is in memory); returns the run
    summary and every published row."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    client = s3.client()
    listing = client.get_paginator("list_objects_v2").paginate(
        Bucket=PREDICTIONS_BUCKET, Prefix=output_prefix
    )
    for page in listing:
        for item in page.get("Contents", []):
            name = item["Key"][len(output_prefix) :]
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            client.download_file(PREDICTIONS_BUCKET, item["Key"], str(dest / name))
    summary = json.loads((dest / "_run_summary.json").read_text())
    rows = [
        json.loads(line)
        for part in sorted(dest.glob("*.jsonl"))
        for line in part.read_text().splitlines()
        if line
    ]
    return summary, rows


def report(
    summary: dict, rows: list[dict], truth: dict, output_uri: str, local_copy: Path, seconds: float
) -> str:
    """The text the demo ends with."""
    errors = Counter(row["error"]["type"] for row in rows if row["error"])
    labelled = [row for row in rows if not row["error"] and truth.get(row["key"]) is not None]
    correct = sum(int(row["top_k"][0]["label"]) == truth[row["key"]] for row in labelled)
    photos = [row for row in rows if "/photo-" in row["key"] and not row["error"]]
    lines = [
        "",
        "Demo run complete",
        f"  images in manifest   {summary.get('rows', len(rows))}",
        f"  predictions          {len(rows) - sum(errors.values())}",
        f"  errors               {sum(errors.values())}"
        + (f"  ({', '.join(f'{k}: {v}' for k, v in sorted(errors.items()))})" if errors else ""),
        f"  top-1 accuracy       {correct / max(len(labelled), 1):.1%} "
        f"on {len(labelled)} labelled digits",
        f"  job throughput       {summary.get('images_per_second') or 0:.1f} images/s",
        f"  whole DAG run        {seconds:.0f} s (cluster start and stop included)",
    ]
    for row in photos:
        best = row["top_k"][0]
        lines.append(
            f"  photo {row['key'].rsplit('/', 1)[-1]:<16} -> digit {best['label']} "
            f"(p={best['probability']:.2f}; a digits model has no better answer)"
        )
    lines += [
        f"  published to         {output_uri}  (part-*.jsonl, _run_summary.json, _SUCCESS)",
        f"  local copy           {local_copy.relative_to(REPO_ROOT)}/",
        f"  run summary          {local_copy.relative_to(REPO_ROOT)}/_run_summary.json",
        f"  Airflow log          {DEMO_DIR.relative_to(REPO_ROOT)}/dags-test.log",
        "The local S3 server kept its data in memory and is stopped now: the local copy stays.",
        "`make airflow` runs the same pipeline in the Airflow UI.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    DEMO_DIR.mkdir(exist_ok=True)
    log("starting the local S3 server (moto) on 127.0.0.1")
    s3 = start_local_s3()
    try:
        truth = seed_demo(s3, [args.partition_date], args.images, args.bad_fraction)
        env = airflow_env(s3.endpoint_url, home=DEMO_DIR / "airflow")
        seconds = run_pipeline(env, args.partition_date)
        output_prefix = f"predictions/dt={args.partition_date}/"
        local_copy = DEMO_DIR / "output" / f"dt={args.partition_date}"
        summary, rows = download_output(s3, output_prefix, local_copy)
        output_uri = f"s3://{PREDICTIONS_BUCKET}/{output_prefix}"
        print(report(summary, rows, truth, output_uri, local_copy, seconds), flush=True)
    finally:
        s3.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
