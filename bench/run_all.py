"""Run every benchmark once on this machine and print one table of figures measured in this run.

    python -m bench.run_all            # full counts (~26 min on 2 cores, and ~7 for 10)
    python -m bench.run_all --quick    # small counts, a smoke test (~3 min)
    python -m bench.run_all --only int8   # one benchmark (repeatable)

1. bare model: ResNet-18 (224 px, fp32, random weights) forwards at the job's batch size and
   thread layout (``local[2]``: two Python workers, ``spark.task.cpus`` = 1 MXNet thread each);
2. our job end to end: ``spark-submit --master local[2]`` over ~500x375 JPEGs in moto's S3 behind
   a proxy adding 20 ms per request;
   2b. the same job on cores of its own, with the S3 emulator and the proxy pinned to another core
   (as on EMR, where S3 costs the nodes no CPU), against the bare model on those cores;
3. the 2017 AWS blog's flow (:mod:`bench.blog_flow`) on the same images, model, latency, master;
   3b. our job and the blog's flow again at 100 ms per request;
4. driver peak RSS of our job for a small and a large manifest (tiny model, tiny images);
5. ``stage_manifest``'s listing + manifest writing for many keys;
6. DAG file parse time;
7. int8 (``precision: int8``): the bare int8 model against the bare fp32 model on the same cores,
   the job in int8 against both, and top-1 agreement and accuracy of int8 against fp32 on the
   demo's digits CNN trained here (held-out digits). The table's title names the CPU and its
   flags: int8 speed depends on VNNI;
8. backfills (:mod:`bench.backfill`): a 7-date backfill of the demo pipeline on the local backend
   as 7 one-date runs against one range run (wall time, clusters started, images), and the run
   plan's modelled EMR cost of a 30- and a 90-day backfill of ``cifar10_resnet18`` both ways.
   Self-contained (its own S3 server and data): ``--only backfill`` skips the shared set-up;
9. the image path stage by stage (:mod:`bench.image_path`): CPU ms per image of the S3 GET, decode,
   to RGB, resize, normalise, batching and the copy into the model's input, the job's path before
   issue #12 against now, on the same photos in the same run;
10. engines (:mod:`bench.engines`): ``--engine rdd`` and ``--engine predict_batch_udf`` on the
   same photos, model, latency and master, against the bare model, checking that their rows match;
   and the online predictor's cold start, latency and memory;
11. runtimes (:mod:`bench.runtimes`): ``--runtime onnxruntime`` and ``openvino`` against
   ``--runtime mxnet`` in fp32 and int8, bare forward and whole job on the same photos, and their
   top-1 agreement with MXNet fp32 on the trained digits.

Logs (one per spark-submit) stay in the work directory printed at the start.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.backfill import DAYS, IMAGES_PER_DAY, MODELLED_DAYS, measure_backfill, modelled_backfill
from bench.cpu_pinning import available_cpus, pin_process_tree, pinned
from bench.dag_parse import measure_parse
from bench.image_path import STAGES
from bench.image_path import measure as measure_image_path
from bench.int8 import cpu_description, decoded_photos, digits_agreement, quantized_files
from bench.latency_proxy import LatencyProxy
from bench.layout import (
    BATCH_SIZE,
    HIGH_LATENCY_SECONDS,
    LATENCY_SECONDS,
    MASTER,
    MODELS_BUCKET,
    OUTPUT_BUCKET,
    TASK_THREADS,
    WORKERS,
)
from bench.model_throughput import run_workers
from bench.preloaded_s3 import Dataset, start_preloaded_s3
from bench.spark_run import (
    SparkRun,
    job_seconds,
    metrics_parts,
    spark_env,
    spark_submit,
    steady_rate,
)
from emr_inference_tools.local_s3 import LocalS3

log = logging.getLogger("bench")

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does."""

    photos: int
    memory_small: int
    memory_large: int
    listing_keys: int
    model_seconds: float
    isolated_photos: int  # the first photos, for the job on cores of its own (benchmark 2b)
    backfill_images: int  # demo images per date of the backfill (benchmark 8)
    stage_photos: int  # the first photos, for the image path stage by stage (benchmark 9)


FULL = Sizes(
    photos=2000,
    memory_small=1000,
    memory_large=20000,
    listing_keys=100_000,
    model_seconds=20.0,
    isolated_photos=1000,
    backfill_images=40,
    stage_photos=512,
)
QUICK = Sizes(
    photos=128,
    memory_small=200,
    memory_large=1000,
    listing_keys=5000,
    model_seconds=5.0,
    isolated_photos=64,
    backfill_images=8,
    stage_photos=64,
)


@dataclass
class Row:
    """One line of the result table."""

    name: str
    value: str
    target: str = ""
    verdict: str = ""


def describe_peak(run: SparkRun) -> str:
    """``"338 MiB (java 258 + python 78 + …)"``: the driver's peak RSS and its parts then."""
    parts = " + ".join(
        f"{name} {rss / 2**20:.0f}"
        for name, rss in sorted(run.driver_peak_parts.items(), key=lambda item: -item[1])
    )
    return f"{run.driver_peak_rss / 2**20:.0f} MiB ({parts})"


def check(ok: bool) -> str:
    """``met`` or ``MISSED``."""
    return "met" if ok else "MISSED"


def int8_ceiling_row(bare_int8: float, image_path_ms: float) -> Row:
    """Benchmark 7's ceiling of job int8 / bare int8 on the same cores: a job whose only work
    beside the int8 forward is its image path (GET, decode, resize, normalise: benchmark 9's CPU
    ms per image) reaches ``forward / (forward + image path)``, whatever else it saves."""
    forward_ms = 1000.0 / bare_int8
    ceiling = forward_ms / (forward_ms + image_path_ms)
    return Row(
        f"  pinned: ceiling of job int8 / bare int8: int8 forward {forward_ms:.1f} ms + image "
        f"path {image_path_ms:.2f} CPU-ms per image (9) on one core",
        f"{ceiling:.2f}",
    )


class Bench:
    """State shared by the benchmarks of one run: work dir, S3 server, models, job zip."""

    def __init__(self, sizes: Sizes, workdir: Path) -> None:
        self.sizes, self.workdir = sizes, workdir
        self.rows: list[Row] = []
        self._s3: LocalS3 | None = None
        self.photos = Dataset("photo", "photos", "images/", sizes.photos)
        self.small = Dataset("tiny", "memory", "small/", sizes.memory_small)
        self.large = Dataset("tiny", "memory", "large/", sizes.memory_large)
        self.listing = Dataset("tiny", "listing", "keys/", sizes.listing_keys)
        # Figures of benchmarks 1-2 that 3 and 3b compare with (set by bench_throughput).
        self.photos_manifest = ""
        self.bare_rate = self.startup_seconds = self.ours_seconds = self.emulator_ceiling = 0.0
        # CPU ms per image of the whole image path now (set by bench_image_path, for benchmark 7)
        self.image_path_ms = 0.0

    # -- set-up ------------------------------------------------------------------------------

    def start(self) -> None:
        """Export the models, start the preloaded S3 server, stage models and the job zip."""
        from batch_inference.package import ENTRY_POINT, build_job_zip

        from emr_inference_tools.demo.models import (
            export_resnet18,
            train_digits_classifier,
            upload_model,
        )

        self.resnet = export_resnet18(self.workdir / "resnet18")
        self.digits = train_digits_classifier(self.workdir / "digits", epochs=1)
        # main.py beside the zip, as staged for EMR: the driver then imports the package from the
        # zip too (not from spark_jobs/ next to the checkout's main.py), one snapshot of the code.
        self.job_zip = build_job_zip(self.workdir / "batch_inference.zip")
        self.entry_point = Path(shutil.copy(ENTRY_POINT, self.workdir / ENTRY_POINT.name))
        self._s3 = start_preloaded_s3([self.photos, self.small, self.large, self.listing])
        os.environ.update(self.s3.env)  # the manifest writer (S3Hook) in this process
        client = self.s3.client()
        for bucket in (MODELS_BUCKET, OUTPUT_BUCKET):
            client.create_bucket(Bucket=bucket)
        self.resnet_args = upload_model(client, self.resnet, MODELS_BUCKET, "resnet18")
        self.digits_args = upload_model(client, self.digits, MODELS_BUCKET, "digits")

    def stop(self) -> None:
        """Stop the S3 server."""
        if self._s3 is not None:
            self._s3.stop()

    @property
    def s3(self) -> LocalS3:
        """The S3 server :meth:`start` started."""
        if self._s3 is None:
            raise RuntimeError("the S3 server is not started (Bench.start)")
        return self._s3

    def s3_pid(self) -> int:
        """The process id of the S3 server :meth:`start` started."""
        if self.s3.process is None:
            raise RuntimeError("the S3 server is not a process of this run")
        return self.s3.process.pid

    # -- helpers -----------------------------------------------------------------------------

    def manifest(self, dataset: Dataset, name: str, limit: int | None = None) -> str:
        """Write the manifest of ``dataset`` (its first ``limit`` keys) with the Airflow side's
        code; returns its URI."""
        from emr_inference.manifest import matching_keys, write_manifest
        from emr_inference.s3 import S3Uri, s3_hook

        hook = s3_hook(None)
        source = S3Uri.parse(dataset.uri, "source")
        dest = S3Uri.parse(f"s3://{OUTPUT_BUCKET}/manifests/{name}/", "dest")
        keys = matching_keys(hook, source, [".jpg", ".png"], limit)
        return write_manifest(hook, source, keys, dest, 10_000).manifest_uri

    def run_job(
        self,
        name: str,
        manifest_uri: str,
        model: dict,
        endpoint: str,
        master: str = MASTER,
        sample_memory: bool = False,
        extra: tuple[str, ...] = (),
    ) -> SparkRun:
        """Our job through ``spark-submit``; S3 at ``endpoint``. The driver's RSS is sampled
        (every 0.1 s) only with ``sample_memory``: the sampling costs CPU the job would miss."""

        from emr_inference.job_command import model_arguments

        app = [
            str(self.entry_point),
            f"--manifest={manifest_uri}",
            f"--output=s3://{OUTPUT_BUCKET}/{name}/",
            f"--run-id=bench-{name}",
            f"--batch-size={BATCH_SIZE}",
            *model_arguments(model),
            *extra,
        ]
        env = spark_env({**self.s3.env, "AWS_ENDPOINT_URL_S3": endpoint})
        log_path, interval = self.workdir / f"{name}.log", 0.1 if sample_memory else None
        return spark_submit(
            app, env, log_path, master, py_files=[self.job_zip], sample_interval=interval
        )

    def task_seconds(self, name: str) -> float:
        """From the first partition's start to the last part written (as the run summary's
        ``job_seconds``): the job without its driver's set-up."""
        return job_seconds(
            list(metrics_parts(self.s3.client(), OUTPUT_BUCKET, f"{name}/_metrics/"))
        )

    def job_profile(self, name: str) -> dict[str, float]:
        """Sums of the job's metrics parts (download / decode / inference / wall seconds)."""
        totals: dict[str, float] = {}
        for part, _ in metrics_parts(self.s3.client(), OUTPUT_BUCKET, f"{name}/_metrics/"):
            for field, value in part.items():
                if field.endswith("_seconds") or field in ("rows", "errors"):
                    totals[field] = totals.get(field, 0.0) + value
        return totals

    def spark_startup(self, master: str = MASTER) -> float:
        """Seconds of a no-op ``spark-submit`` (JVM, SparkContext, one Python worker per core)."""
        script = self.workdir / "noop.py"
        script.write_text(
            "from pyspark import SparkContext\n"
            "sc = SparkContext()\n"
            "sc.parallelize(range(sc.defaultParallelism), sc.defaultParallelism).count()\n"
            "sc.stop()\n"
        )
        log_path = self.workdir / f"noop-{''.join(filter(str.isalnum, master))}.log"
        return spark_submit([str(script)], spark_env({}), log_path, master).wall_seconds

    # -- the benchmarks ----------------------------------------------------------------------

    def bench_throughput(self) -> None:
        """Benchmarks 1 and 2: the bare model, then our job end to end."""
        sizes = self.sizes
        model = (self.resnet.symbol_path, self.resnet.params_path)
        bare = run_workers(*model, WORKERS, TASK_THREADS, BATCH_SIZE, seconds=sizes.model_seconds)
        # The alternative layout (one worker using every core) for the thread recommendation.
        cores = WORKERS * TASK_THREADS
        fused = run_workers(*model, 1, cores, BATCH_SIZE, seconds=sizes.model_seconds)
        startup = self.spark_startup()
        self.photos_manifest = self.manifest(self.photos, "photos")
        n = sizes.photos
        with LatencyProxy(self.s3.endpoint_url, LATENCY_SECONDS) as proxy:
            s3_cpu_before = self.s3_side_cpu_seconds()
            ours = self.run_job("ours", self.photos_manifest, self.resnet_args, proxy.endpoint_url)
            s3_cpu = self.s3_side_cpu_seconds() - s3_cpu_before
        self.bare_rate, self.startup_seconds, self.ours_seconds = bare, startup, ours.wall_seconds
        s3_share = s3_cpu / (ours.wall_seconds * (os.cpu_count() or 1))
        steady = n / max(ours.wall_seconds - startup, 1e-9)
        profile = self.job_profile("ours")
        # What no job could reach here, from this run's figures: its forwards alone take
        # n * cores / bare core-seconds, and the emulator took s3_cpu of the same cores.
        emulator_ceiling = 1 / (1 + s3_cpu * bare / (n * cores))
        self.emulator_ceiling = emulator_ceiling
        self.rows += [
            Row(
                f"1 bare ResNet-18, job layout: {WORKERS} procs x {TASK_THREADS} thread, "
                f"batch {BATCH_SIZE}",
                f"{bare:.1f} img/s",
            ),
            Row(f"  bare, 1 proc x {cores} threads", f"{fused:.1f} img/s"),
            Row("  spark-submit no-op start-up", f"{startup:.1f} s"),
            Row(
                f"2 our job, {n} JPEGs, +{LATENCY_SECONDS * 1000:.0f} ms/request, end to end",
                f"{n / ours.wall_seconds:.1f} img/s ({ours.wall_seconds:.0f} s)",
            ),  # fmt: skip
            Row("  ratio (2)/(1), end to end", f"{n / ours.wall_seconds / bare:.2f}"),
            Row(
                "  ratio (2)/(1), start-up excluded",
                f"{steady / bare:.2f}",
                ">= 0.90",
                check(steady / bare >= 0.90),
            ),  # fmt: skip
            Row(
                "  CPU of the S3 emulator + latency proxy during (2) (real S3 costs none)",
                f"{s3_cpu:.0f} core-s = {s3_share:.0%} of the machine",
            ),
            Row(
                "  ceiling of (2)/(1) for a job with no overhead, the emulator's CPU alone",
                f"{emulator_ceiling:.2f}",
            ),
            Row(
                "  job task seconds: download / decode / inference / task wall",
                " / ".join(
                    f"{profile.get(k, 0):.0f}"
                    for k in (
                        "download_seconds",
                        "decode_seconds",
                        "inference_seconds",
                        "wall_seconds",
                    )
                ),
            ),  # fmt: skip
        ]

    def bench_blog(self) -> None:
        """Benchmark 3: the blog's flow on the same images, model, latency and master as (2)."""
        if not self.ours_seconds:
            raise RuntimeError("benchmark 3 compares with benchmark 2, which did not run")
        n = self.sizes.photos
        with LatencyProxy(self.s3.endpoint_url, LATENCY_SECONDS) as proxy:
            blog = self.run_blog(proxy.endpoint_url, "blog")
        ratio = blog.wall_seconds / self.ours_seconds
        # A job with no overhead at all would still pay Spark's start-up, then run at the bare rate
        # less what the S3 emulator takes of the same cores (benchmark 2's ceiling).
        best_possible_seconds = self.startup_seconds + n / (self.bare_rate * self.emulator_ceiling)
        self.rows += [
            Row(
                "3 2017 blog flow, same images/model/latency, end to end",
                f"{n / blog.wall_seconds:.1f} img/s ({blog.wall_seconds:.0f} s)",
            ),  # fmt: skip
            Row("  ratio ours / blog", f"{ratio:.2f}", ">= 2.0", check(ratio >= 2.0)),
            Row(
                "  ceiling of ours / blog: no-op start-up, then the bare rate x the (2)/(1) "
                "ceiling, over the blog",
                f"{blog.wall_seconds / best_possible_seconds:.2f}",
            ),
        ]

    @contextmanager
    def s3_pinned_away(self) -> Iterator[tuple[set[int], str]]:
        """The S3 emulator and a latency proxy on the last CPU, for a job on the others: yields
        ``(job_cpus, proxy endpoint)``; the emulator gets every CPU back afterwards."""
        cpus = sorted(available_cpus())
        s3_cpus, job_cpus = {cpus[-1]}, set(cpus[:-1])
        pin_process_tree(self.s3_pid(), s3_cpus)
        try:
            with pinned(s3_cpus):  # the proxy's threads inherit this affinity
                proxy = LatencyProxy(self.s3.endpoint_url, LATENCY_SECONDS).start()
            try:
                yield job_cpus, proxy.endpoint_url
            finally:
                proxy.stop()
        finally:
            pin_process_tree(self.s3_pid(), set(cpus))

    def bench_isolated(self) -> None:
        """Benchmark 2b: our job on cores of its own, the S3 emulator and proxy on another one.

        On EMR, S3 costs the nodes no CPU; here this layout measures what the job itself loses
        against the bare model on the same cores (decoding, boto3, Spark, prefetch threads).
        """
        if len(available_cpus()) < 2:
            self.rows.append(Row("2b our job on cores of its own", "skipped: needs 2 CPUs"))
            return
        n = self.sizes.isolated_photos
        manifest_uri = self.manifest(self.photos, "isolated", limit=n)
        model = (self.resnet.symbol_path, self.resnet.params_path)
        with self.s3_pinned_away() as (job_cpus, endpoint), pinned(job_cpus):
            master = f"local[{len(job_cpus)}]"
            bare = run_workers(
                *model, len(job_cpus), TASK_THREADS, BATCH_SIZE, seconds=self.sizes.model_seconds
            )
            startup = self.spark_startup(master)
            ours = self.run_job("isolated", manifest_uri, self.resnet_args, endpoint, master)
        steady = n / max(ours.wall_seconds - startup, 1e-9)
        self.rows += [
            Row(
                f"2b our job on cores of its own (`{master}`), S3 emulator + proxy pinned to "
                f"another core, {n} JPEGs, +{LATENCY_SECONDS * 1000:.0f} ms/request",
                f"{n / ours.wall_seconds:.1f} img/s ({ours.wall_seconds:.0f} s)",
            ),
            Row(
                f"  bare on the same cores, {len(job_cpus)} x {TASK_THREADS} thread",
                f"{bare:.1f} img/s",
            ),
            Row(f"  spark-submit no-op start-up, `{master}`", f"{startup:.1f} s"),
            Row("  ratio (2b)/bare, start-up excluded", f"{steady / bare:.2f}"),
        ]

    def bench_high_latency(self) -> None:
        """Benchmark 3b: our job and the blog's flow again with a slower S3 (more per request)."""
        if not self.photos_manifest:
            raise RuntimeError("benchmark 3b reuses benchmark 2's manifest, which was not written")
        n = self.sizes.photos
        latency_ms = HIGH_LATENCY_SECONDS * 1000
        with LatencyProxy(self.s3.endpoint_url, HIGH_LATENCY_SECONDS) as proxy:
            ours = self.run_job(
                "ours-slow-s3", self.photos_manifest, self.resnet_args, proxy.endpoint_url
            )
            blog = self.run_blog(proxy.endpoint_url, "blog-slow-s3")
        self.rows += [
            Row(
                f"3b at +{latency_ms:.0f} ms/request: our job / blog flow, end to end",
                f"{n / ours.wall_seconds:.1f} / {n / blog.wall_seconds:.1f} img/s",
            ),
            Row(
                f"  ratio ours / blog at +{latency_ms:.0f} ms",
                f"{blog.wall_seconds / ours.wall_seconds:.2f}",
            ),
        ]

    def s3_side_cpu_seconds(self) -> float:
        """CPU seconds used so far by the S3 emulator (its process tree) and by this process,
        whose only busy threads while a job runs are the latency proxy's."""
        import psutil

        server = psutil.Process(self.s3_pid())
        processes = [server, *server.children(recursive=True), psutil.Process()]
        return sum(sum(p.cpu_times()[:2]) for p in processes)

    def run_blog(self, endpoint: str, name: str) -> SparkRun:
        """The blog's flow through ``spark-submit`` (same master and S3 endpoint); ``name``
        names its log and output."""
        model = self.resnet_args
        app = [
            str(REPO_ROOT / "bench" / "blog_flow.py"),
            f"--bucket={self.photos.bucket}",
            f"--prefix={self.photos.prefix}",
            "--extension=.jpg",
            f"--sym_url={model['symbol']}",
            f"--param_url={model['params']}",
            f"--label_url={model['labels']}",
            f"--batch={BATCH_SIZE}",
            f"--output_s3_bucket={OUTPUT_BUCKET}",
            f"--output_s3_key={name}/predictions.txt",
        ]
        env = spark_env(
            {**self.s3.env, "AWS_ENDPOINT_URL_S3": endpoint, "PYTHONPATH": str(REPO_ROOT)}
        )
        return spark_submit(app, env, self.workdir / f"{name}.log", MASTER)

    def bench_memory(self) -> None:
        """Benchmark 4: driver peak RSS, small vs large manifest (tiny model and images)."""
        runs = {}
        for dataset in (self.small, self.large):
            name = f"memory-{dataset.count}"
            manifest_uri = self.manifest(dataset, name)
            runs[dataset.count] = self.run_job(
                name, manifest_uri, self.digits_args, self.s3.endpoint_url, sample_memory=True
            )
        small, large = runs[self.small.count], runs[self.large.count]
        growth = (large.driver_peak_rss / small.driver_peak_rss - 1) * 100
        self.rows += [
            Row(
                f"4 driver peak RSS (JVM + Python), {self.small.count} images",
                describe_peak(small),
            ),  # fmt: skip
            Row(f"  driver peak RSS, {self.large.count} images", describe_peak(large)),
            Row("  growth", f"{growth:+.1f} %", "< 10 %", check(growth < 10)),
        ]

    def bench_listing(self) -> None:
        """Benchmark 5: ``stage_manifest``'s listing + manifest writing vs a bare listing."""
        client = self.s3.client()
        client.list_objects_v2(Bucket=self.listing.bucket, MaxKeys=1)  # warm up both sides
        started = time.perf_counter()
        listed = sum(
            page.get("KeyCount", 0)
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=self.listing.bucket, Prefix=self.listing.prefix
            )
        )
        bare = listed / (time.perf_counter() - started)
        started = time.perf_counter()
        self.manifest(self.listing, "listing")
        ours = self.listing.count / (time.perf_counter() - started)
        self.rows += [
            Row(f"5 bare list_objects_v2, {listed} keys (moto)", f"{bare:.0f} keys/s"),
            Row("  stage_manifest listing + shards + manifest.json", f"{ours:.0f} keys/s"),
            Row("  ratio stage_manifest / bare listing", f"{ours / bare:.2f}"),
        ]

    def bench_parse(self) -> None:
        """Benchmark 6: DAG file parse time."""
        times = measure_parse()
        for name, seconds in times.file_seconds.items():
            self.rows.append(
                Row(
                    f"6 import dags/{name} (fresh process, airflow preloaded)",
                    f"{seconds:.3f} s",
                    "< 0.5 s",
                    check(seconds < 0.5),
                )
            )
        self.rows += [
            Row(f"  DagBag of dags/ ({times.dags} DAGs)", f"{times.dagbag_seconds:.3f} s"),
            Row(
                "  (airflow import itself, paid once per process)",
                f"{times.airflow_import_seconds:.2f} s",
            ),  # fmt: skip
        ]

    # -- output ------------------------------------------------------------------------------

    def table(self) -> str:
        """The result table as Markdown."""
        lines = ["| benchmark | result | target | |", "|---|---|---|---|"]
        lines += [f"| {r.name} | {r.value} | {r.target} | {r.verdict} |" for r in self.rows]
        return "\n".join(lines)

    def bench_int8(self) -> None:
        """Benchmark 7: int8 against fp32 (bare, job) and int8's agreement on a trained model."""
        sizes, resnet = self.sizes, self.resnet
        calibration = decoded_photos(64, resnet.preprocess())
        int8_files = quantized_files(
            resnet.symbol_path, resnet.params_path, calibration, self.workdir / "resnet18-int8"
        )
        fp32_files = (resnet.symbol_path, resnet.params_path)
        seconds = sizes.model_seconds
        bare_fp32 = run_workers(*fp32_files, WORKERS, TASK_THREADS, BATCH_SIZE, seconds=seconds)
        bare_int8 = run_workers(*int8_files, WORKERS, TASK_THREADS, BATCH_SIZE, seconds=seconds)
        n = self.sizes.photos
        self.photos_manifest = self.photos_manifest or self.manifest(self.photos, "photos")
        # random weights: int8 may disagree with fp32 here; agreement is measured on digits below
        extra = (
            "--precision=int8",
            f"--int8-cache=s3://{OUTPUT_BUCKET}/int8-cache/",
            "--int8-min-agreement=0",
            "--calibration-images=64",
            "--agreement-images=64",
        )
        with LatencyProxy(self.s3.endpoint_url, LATENCY_SECONDS) as proxy:
            job = self.run_job(
                "int8", self.photos_manifest, self.resnet_args, proxy.endpoint_url, extra=extra
            )
        tasks = n / self.task_seconds("int8")
        self.rows += [
            Row("7 bare int8 / bare fp32, job layout (ResNet-18)", f"{bare_int8 / bare_fp32:.2f}x "
                f"({bare_int8:.1f} vs {bare_fp32:.1f} img/s)"),
            Row(f"  our job in int8, {n} JPEGs, +{LATENCY_SECONDS * 1000:.0f} ms/request",
                f"{tasks:.1f} img/s in its tasks ({job.wall_seconds:.0f} s end to end, quantizing "
                "and the agreement check included)"),
            Row("  job int8 (tasks) / bare fp32", f"{tasks / bare_fp32:.2f}"),
            Row("  job int8 (tasks) / bare int8", f"{tasks / bare_int8:.2f}"),
        ]  # fmt: skip
        if len(available_cpus()) >= 2:
            self.int8_pinned(int8_files, fp32_files, extra)
        digits = digits_agreement(self.workdir)
        self.rows += [
            Row(f"  digits CNN trained here, {digits['images']} held-out digits: top-1 agreement",
                f"{digits['agreement']:.1%} (accuracy fp32 {digits['fp32_accuracy']:.1%}, "
                f"int8 {digits['int8_accuracy']:.1%})"),
        ]  # fmt: skip

    def bench_backfill(self) -> None:
        """Benchmark 8: a demo backfill as one run per date against one range run (measured),
        and the plan's modelled EMR cost of longer backfills both ways."""
        from emr_inference.plan import format_plan

        per_date_images = self.sizes.backfill_images
        ranged, per_date = measure_backfill(per_date_images, self.workdir)
        for way in (per_date, ranged):
            self.rows.append(
                Row(
                    f"8 demo backfill, {DAYS} dates x {per_date_images} images, local backend: "
                    f"{way.runs} {'range run' if way.runs == 1 else 'one-date runs'}",
                    f"{way.wall_seconds:.0f} s wall, {way.clusters} cluster(s) started, "
                    f"{way.images} images",
                )
            )
        self.rows.append(
            Row(
                f"  ratio wall {per_date.runs} runs / 1 range run",
                f"{per_date.wall_seconds / ranged.wall_seconds:.2f}",
            )
        )
        for days in MODELLED_DAYS:
            plan = modelled_backfill(days, IMAGES_PER_DAY)
            log.info("modelled %d-day backfill:\n%s", days, format_plan(plan))
            nodes = " + ".join(f"{g.count} x {g.instance_type}" for g in plan.shape.nodes)
            self.rows.append(
                Row(
                    f"  EMR plan's cluster ({days} days)",
                    f"{nodes}, {plan.shape.task_slots} tasks, {plan.images_per_second:g} img/s, "
                    f"${plan.shape.hourly_usd:.2f}/h",
                )
            )
            for label, scenario in (
                ("range run", plan.range_run),
                ("run per date", plan.run_per_date),
            ):
                self.rows.append(
                    Row(
                        f"  EMR plan, cifar10_resnet18, {days} days x {IMAGES_PER_DAY:,} "
                        f"images: {label}",
                        f"{scenario.clusters} cluster(s), {scenario.cluster_hours:.1f} "
                        f"cluster-h, ${scenario.cost_usd:,.2f}",
                    )
                )

    def bench_image_path(self) -> None:
        """Benchmark 9: CPU ms per image of each stage of the image path, before and now."""
        client, bucket = self.s3.client(), self.photos.bucket
        keys = [self.photos.key(index) for index in range(self.sizes.stage_photos)]

        def get(key: str) -> bytes:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()

        get(keys[0])  # the client's connection and endpoint set-up are not a GET's cost
        spec = self.resnet.preprocess()
        before, now, draft = measure_image_path(get, keys, spec, BATCH_SIZE)
        old, new = before.per_image_ms(), now.per_image_ms()
        self.image_path_ms = new["total"]
        size = spec.image_size
        self.rows.append(
            Row(
                f"9 image path, {len(keys)} JPEGs ~500x375 -> {size}x{size}, CPU ms per image: "
                "before #12 / now",
                f"{old['total']:.2f} / {new['total']:.2f} ({old['total'] / new['total']:.2f}x)",
            )
        )
        self.rows += [Row(f"  {stage}", f"{old[stage]:.3f} / {new[stage]:.3f}") for stage in STAGES]
        self.rows.append(
            Row(
                f"  not taken: JPEG draft to {size // 2} px, decode + resize (pixels move)",
                f"{draft['ms']:.2f} ms vs {new['decode'] + new['resize']:.2f}; pixels differ "
                f"by up to {draft['max_abs']:.0f}/255 (mean {draft['mean_abs']:.1f})",
            )
        )

    def int8_pinned(
        self, int8_files: tuple[Path, Path], fp32_files: tuple[Path, Path], extra: tuple[str, ...]
    ) -> None:
        """Benchmark 7, the job's goals: int8 job and both bare models on the same cores, the S3
        emulator and the proxy pinned to another core (as on EMR, where S3 costs no node CPU).

        The goals are read on the job's steady partitions (:func:`steady_rate`: those after the
        worker's first, which alone imports MXNet and loads the model); every photo is used so that
        one task slot gets two partitions."""
        n, seconds = self.sizes.photos, self.sizes.model_seconds
        self.photos_manifest = self.photos_manifest or self.manifest(self.photos, "photos")
        with self.s3_pinned_away() as (job_cpus, endpoint), pinned(job_cpus):
            workers, master = len(job_cpus), f"local[{len(job_cpus)}]"
            bare_fp32 = run_workers(*fp32_files, workers, TASK_THREADS, BATCH_SIZE, seconds=seconds)
            bare_int8 = run_workers(*int8_files, workers, TASK_THREADS, BATCH_SIZE, seconds=seconds)
            self.run_job(
                "int8-pinned", self.photos_manifest, self.resnet_args, endpoint, master, extra=extra
            )
        parts = list(metrics_parts(self.s3.client(), OUTPUT_BUCKET, "int8-pinned/_metrics/"))
        tasks, steady = n / job_seconds(parts), steady_rate(parts)
        self.rows += [
            Row(f"  pinned: S3 emulator + proxy on another core, `{master}`, {n} JPEGs: bare int8 "
                "/ bare fp32 on the job's cores", f"{bare_int8 / bare_fp32:.2f}x "
                f"({bare_int8:.1f} vs {bare_fp32:.1f} img/s)"),
            Row(f"  pinned: our job in int8, {len(parts)} partitions", f"{tasks:.1f} img/s in its "
                f"tasks ({tasks / bare_fp32:.2f} of bare fp32, {tasks / bare_int8:.2f} of bare "
                "int8, the worker's MXNet import and model load included)"),
            Row("  pinned: our job in int8, steady (partitions after the worker's first)",
                f"{steady:.1f} img/s"),
            Row("  pinned: job int8 (steady) / bare fp32", f"{steady / bare_fp32:.2f}", ">= 2.0",
                check(steady / bare_fp32 >= 2.0)),
            Row("  pinned: job int8 (steady) / bare int8", f"{steady / bare_int8:.2f}", ">= 0.85",
                check(steady / bare_int8 >= 0.85)),
        ]  # fmt: skip
        if self.image_path_ms:
            self.rows.append(int8_ceiling_row(bare_int8, self.image_path_ms))

    def bench_engines(self) -> None:
        """Benchmark 10: the two engines side by side (:mod:`bench.engines`)."""
        from bench.engines import compare_engines

        self.rows += [Row(name, value) for name, value in compare_engines(self)]

    def bench_runtimes(self) -> None:
        """Benchmark 11: the model runtimes side by side (:mod:`bench.runtimes`)."""
        from bench.runtimes import compare_runtimes

        self.rows += [Row(name, value) for name, value in compare_runtimes(self)]


#: Every benchmark, in the order they run (later ones reuse figures of earlier ones).
BENCHMARKS = [
    "bench_throughput", "bench_isolated", "bench_blog", "bench_high_latency", "bench_memory",
    "bench_listing", "bench_parse", "bench_image_path", "bench_int8", "bench_backfill",
    "bench_engines", "bench_runtimes",
]  # fmt: skip
#: Benchmarks that compare with the figures of bench_throughput (it runs first when they run).
NEED_THROUGHPUT = {"bench_isolated", "bench_blog", "bench_high_latency"}
#: Benchmarks that bring their own S3 server and data (no need for :meth:`Bench.start`).
SELF_CONTAINED = {"bench_backfill"}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the table; exit 1 if one failed (a missed target is not)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument(
        "--only",
        action="append",
        choices=[name.removeprefix("bench_") for name in BENCHMARKS],
        help="run only this benchmark (repeatable), e.g. --only int8",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.path[:0] = [str(REPO_ROOT / "spark_jobs"), str(REPO_ROOT / "plugins")]
    sizes = QUICK if args.quick else FULL
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    # The manifest writer imports Airflow in this process: keep it off the user's AIRFLOW_HOME.
    os.environ["AIRFLOW_HOME"] = str(workdir / "airflow-home")
    log.info("benchmark work directory (logs): %s; sizes: %s", workdir, sizes)
    started = time.perf_counter()
    bench = Bench(sizes, workdir)
    failed = 0
    try:
        chosen = {f"bench_{name}" for name in args.only} if args.only else set(BENCHMARKS)
        if chosen & NEED_THROUGHPUT:
            chosen.add("bench_throughput")  # they compare with its figures
        if chosen - SELF_CONTAINED:
            bench.start()
        for benchmark in [getattr(bench, name) for name in BENCHMARKS if name in chosen]:
            try:
                benchmark()
            except Exception as exc:  # report it in the table and go on with the others
                log.exception("%s failed", benchmark.__name__)
                bench.rows.append(Row(benchmark.__name__, f"FAILED: {exc}".splitlines()[0]))
                failed += 1
    finally:
        bench.stop()
    print(
        f"\n## Benchmarks ({'quick' if args.quick else 'full'}; {os.cpu_count()} CPUs: "
        f"{cpu_description()}; {time.perf_counter() - started:.0f} s in all)\n"
    )
    print(bench.table())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
