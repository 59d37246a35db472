"""One partition end to end in-process (no Spark) against the moto S3 server: rows, metrics,
bounded prefetch overlapping the model, failures that must stop the job, and resume."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import threading
import time

import boto3
import numpy as np
import PIL
import pytest
from batch_inference import partition as partition_module
from batch_inference.config import JobConfig, ModelSpec
from batch_inference.errors import ModelLoadError, OutputWriteError, WorkerLimitError

from tests.support.job import FINGERPRINT, read_output, run_partition


def test_a_partition_writes_one_row_per_key_and_its_metrics(setup):
    data, config = setup
    metrics = run_partition(config, index=1, partitions=2)
    rows, written_metrics, keys = read_output(data["client"], config.output_uri)
    assert keys == ["_metrics/part-00001.json", "part-00001.jsonl"]
    assert [row["key"] for row in rows] == data["uris"][20:40]  # manifest order, exactly once
    assert written_metrics == [metrics]
    expected_errors = [data["objects"][row["key"]].expected_error for row in rows]
    assert [row["error"] and row["error"]["type"] for row in rows] == expected_errors
    assert all(len(row["top_k"]) == (0 if row["error"] else 2) for row in rows)
    assert metrics["rows"] == 20 and (metrics["first_index"], metrics["end_index"]) == (20, 40)
    assert metrics["errors"] == sum(error is not None for error in expected_errors) > 0
    assert set(metrics) == {
        "partition", "rows", "predicted", "errors", "errors_by_type", "download_seconds",
        "decode_seconds", "inference_seconds", "wall_seconds", "first_index", "end_index",
        "fingerprint", "resumed", "worker_peak_rss_mb", "worker_peak_address_space_mb",
        "precision", "int8_top1_agreement", "worker_environment", "runtime",
        "conversion_top1_agreement", "engine",
    }  # fmt: skip
    assert (metrics["precision"], metrics["int8_top1_agreement"]) == ("fp32", None)
    assert (metrics["runtime"], metrics["engine"]) == ("mxnet", "rdd")
    # what this worker (this process) really runs, read here, not configured
    assert metrics["worker_environment"] == {
        "python": platform.python_version(),
        "mxnet": importlib.metadata.version("mxnet"),
        # None on the emr-7.2.0 node twin (MXNet only)
        "onnxruntime": importlib.util.find_spec("onnxruntime")
        and importlib.metadata.version("onnxruntime"),
        "openvino": importlib.util.find_spec("openvino") and importlib.metadata.version("openvino"),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "boto3": boto3.__version__,
    }
    # this process's own peaks (the test runs the partition in-process): a real measurement
    assert 0 < metrics["worker_peak_rss_mb"] < metrics["worker_peak_address_space_mb"]
    assert (metrics["fingerprint"], metrics["resumed"]) == (FINGERPRINT, False)
    json.dumps(metrics)  # plain JSON types only


def test_memory_peaks_read_linux_status(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t 2376704 kB\nVmHWM:\t 1024001 kB\n")
    assert partition_module.memory_peaks(str(status)) == (1001, 2321)  # kB -> MiB, rounded up
    assert partition_module.memory_peaks(str(tmp_path / "missing")) == (None, None)


@pytest.mark.slow
def test_prefetch_is_bounded_and_overlaps_the_model(setup, monkeypatch):
    data, config = setup
    config = JobConfig(**{**config.__dict__, "batch_size": 5})
    lock = threading.Lock()
    counts = {"started": 0, "done": 0}
    observed = []
    real_prepare, real_classify = partition_module.prepare, partition_module.classify_batch

    def prepare(*args):
        with lock:
            counts["started"] += 1
        result = real_prepare(*args)
        with lock:
            counts["done"] += 1
        return result

    def slow_classify(prepared, model, cfg, inputs):
        started_at_entry = counts["started"]
        time.sleep(0.25)  # a slow model: the next batches must be fetched meanwhile
        observed.append((started_at_entry, counts["done"]))
        return real_classify(prepared, model, cfg, inputs)

    monkeypatch.setattr(partition_module, "prepare", prepare)
    monkeypatch.setattr(partition_module, "classify_batch", slow_classify)
    run_partition(config, index=0, partitions=1)
    batch, depth, total = config.batch_size, config.prefetch_depth, len(data["uris"])
    assert len(observed) == -(-total // batch)
    for j, (started, done_after_model) in enumerate(observed):
        ahead = min(total, (j + 1 + depth) * batch)
        assert started <= ahead  # never more than `depth` batches beyond the current one
        assert done_after_model >= ahead  # ...and those were downloaded while the model ran


def test_an_unwritable_output_is_an_output_write_error(setup):
    _, config = setup
    config = JobConfig(**{**config.__dict__, "output_uri": "s3://no-such-bucket-here/out/"})
    with pytest.raises(OutputWriteError, match="cannot write s3://no-such-bucket-here/out/"):
        run_partition(config, index=0, partitions=4)


def test_a_missing_model_file_is_a_model_load_error(setup):
    _, config = setup
    spec = ModelSpec(**{**config.model.__dict__, "params_uri": config.model.params_uri + ".gone"})
    config = JobConfig(**{**config.__dict__, "model": spec})
    with pytest.raises(ModelLoadError, match=r"cannot download --model-params .*\.gone"):
        run_partition(config, index=0, partitions=2)


def count_prepares(monkeypatch) -> list[str]:
    """Record every key the partition downloads (the per-image work a resume must skip)."""
    keys: list[str] = []
    real_prepare = partition_module.prepare

    def prepare(client, key, spec, out):
        keys.append(key)
        return real_prepare(client, key, spec, out)

    monkeypatch.setattr(partition_module, "prepare", prepare)
    return keys


def test_a_completed_partition_is_resumed_without_any_work(setup, monkeypatch):
    data, config = setup
    first = run_partition(config, index=1, partitions=2)
    client, bucket = data["client"], config.output_uri.split("/")[2]
    before = {
        key: client.head_object(Bucket=bucket, Key=f"run/output/{key}")["LastModified"]
        for key in ("part-00001.jsonl", "_metrics/part-00001.json")
    }
    prepared = count_prepares(monkeypatch)

    def no_model(*args):
        raise AssertionError("a resumed partition must not load the model")

    monkeypatch.setattr(partition_module, "load_model", no_model)
    again = run_partition(config, index=1, partitions=2)
    assert again == {**first, "resumed": True}
    assert prepared == []
    for key, modified in before.items():
        assert (
            client.head_object(Bucket=bucket, Key=f"run/output/{key}")["LastModified"] == modified
        )


@pytest.mark.parametrize(
    "change",
    ["fingerprint", "partition count", "no-resume", "rows part of another run", "bad metrics"],
)
def test_a_partition_is_redone_unless_complete_for_this_run(setup, monkeypatch, change):
    data, config = setup
    run_partition(config, index=1, partitions=2)
    fingerprint, partitions = FINGERPRINT, 2
    bucket = config.output_uri.split("/")[2]
    if change == "fingerprint":
        fingerprint = "b" * 64
    elif change == "partition count":
        partitions = 3  # partition 1 of 3 covers [13, 26), not [20, 40)
    elif change == "no-resume":
        config = JobConfig(**{**config.__dict__, "resume": False})
    elif change == "rows part of another run":  # replaced by a run that died before its metrics
        data["client"].put_object(
            Bucket=bucket,
            Key="run/output/part-00001.jsonl",
            Body=b"",
            Metadata={"fingerprint": "c"},
        )
    else:
        data["client"].put_object(
            Bucket=bucket, Key="run/output/_metrics/part-00001.json", Body=b"{"
        )
    prepared = count_prepares(monkeypatch)
    metrics = run_partition(config, index=1, partitions=partitions, fingerprint=fingerprint)
    assert metrics["resumed"] is False and metrics["fingerprint"] == fingerprint
    assert len(prepared) == metrics["rows"] == metrics["end_index"] - metrics["first_index"]
    rows, _, _ = read_output(data["client"], config.output_uri)
    assert len(rows) == metrics["rows"]  # the rows part was replaced, not appended to


def test_a_decoder_bug_on_a_hostile_file_is_a_corrupt_image_row(monkeypatch):
    # Pillow raises more than ImageError's usual causes (IndexError, struct.error, ...) on some
    # hostile files; such an object must become a corrupt_image row, not fail the partition.
    import io

    from batch_inference.config import Preprocess
    from PIL import Image, ImageFile

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buffer, "PNG")
    monkeypatch.setattr(partition_module, "get_bytes", lambda client, uri: buffer.getvalue())

    def hostile_load(self):
        raise IndexError("tile cannot extend outside image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", hostile_load)
    prepared = partition_module.prepare(None, "s3://b/hostile.png", Preprocess(image_size=4))
    assert prepared.tensor is None
    assert prepared.error == {
        "type": "corrupt_image",
        "message": "IndexError: tile cannot extend outside image",
    }


def test_prefetch_submits_exactly_depth_batches_ahead_of_the_model(setup, monkeypatch):
    """The bound without timing: downloads are submitted synchronously, so when the model gets
    batch ``j`` exactly ``min(all, j + 1 + depth)`` batches have been submitted."""
    from concurrent.futures import ThreadPoolExecutor

    data, config = setup
    config = JobConfig(**{**config.__dict__, "batch_size": 4, "prefetch_depth": 2})
    submitted = []
    pools = []

    class CountingPool(ThreadPoolExecutor):
        """A thread pool that counts the keys submitted to it."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append((args, kwargs))

        def submit(self, *args, **kwargs):
            submitted.append(args[2])  # prepare(client, key, spec, out)
            return super().submit(*args, **kwargs)

    observed = []
    real_classify = partition_module.classify_batch

    def classify(prepared, model, cfg, inputs):
        observed.append((len(submitted), [item.key for item in prepared]))
        return real_classify(prepared, model, cfg, inputs)

    monkeypatch.setattr(partition_module, "ThreadPoolExecutor", CountingPool)
    monkeypatch.setattr(partition_module, "classify_batch", classify)
    metrics = run_partition(config, index=0, partitions=1)
    keys, batch, depth = data["uris"], config.batch_size, config.prefetch_depth
    assert metrics["rows"] == len(keys) == len(submitted)
    assert submitted == keys  # each key once, in manifest order
    assert [pool[0][0] for pool in pools] == [config.prefetch_threads]
    batches = -(-len(keys) // batch)
    for j, (count, batch_keys) in enumerate(observed):
        assert batch_keys == keys[j * batch : (j + 1) * batch]
        assert count == min(len(keys), (j + 1 + depth) * batch)
    assert len(observed) == batches


def test_an_empty_partition_writes_empty_parts_without_loading_the_model(setup, monkeypatch):
    data, config = setup

    def no_model(*args):
        raise AssertionError("a partition without keys must not load the model")

    monkeypatch.setattr(partition_module, "load_model", no_model)
    metrics = run_partition(config, index=0, partitions=50)  # 40 keys: partition 0 gets none
    assert (metrics["first_index"], metrics["end_index"], metrics["rows"]) == (0, 0, 0)
    rows, written, keys = read_output(data["client"], config.output_uri)
    assert rows == [] and written == [metrics]
    assert keys == ["_metrics/part-00000.json", "part-00000.jsonl"]


def test_every_row_names_the_model_and_the_run(setup):
    data, config = setup
    run_partition(config, index=0, partitions=1)
    rows, _, _ = read_output(data["client"], config.output_uri)
    assert {row["error"] is None for row in rows} == {True, False}  # predictions and errors
    assert {(row["model"], row["run_id"]) for row in rows} == {(config.model.name, config.run_id)}


def test_a_failed_download_spends_no_decode_time(monkeypatch):
    from batch_inference.config import Preprocess

    def unreachable(client, uri):
        raise ConnectionError("endpoint unreachable")

    monkeypatch.setattr(partition_module, "get_bytes", unreachable)
    prepared = partition_module.prepare(None, "s3://b/k.jpg", Preprocess(image_size=4))
    assert prepared.error == {
        "type": "download_failed",
        "message": "ConnectionError: endpoint unreachable",
    }
    assert prepared.decode_seconds == 0.0 and prepared.download_seconds >= 0.0


def test_timings_are_durations_within_the_partitions_wall_time(setup):
    _, config = setup
    started = time.perf_counter()
    metrics = run_partition(config, index=0, partitions=2)
    elapsed = time.perf_counter() - started
    assert 0 < metrics["wall_seconds"] <= elapsed + 0.001
    for stage in ("download", "decode", "inference"):
        assert metrics[f"{stage}_seconds"] >= 0
    assert metrics["inference_seconds"] <= metrics["wall_seconds"]


def test_the_start_fault_point_and_a_bad_output_uri_stop_the_partition(setup, monkeypatch):
    from batch_inference import faults

    _, config = setup
    monkeypatch.setenv(faults.FAULT_ENV, "fail:1")
    with pytest.raises(faults.InjectedFault, match="partition 1: injected failure"):
        run_partition(config, index=1, partitions=2)
    monkeypatch.delenv(faults.FAULT_ENV)
    bad = JobConfig(**{**config.__dict__, "output_uri": "file:///tmp/out/"})
    with pytest.raises(ValueError, match="--output must be an s3:// URI"):
        run_partition(bad, index=1, partitions=2)


def test_a_batch_of_only_bad_images_spends_no_model_time(setup):
    _, config = setup
    error = {"type": "corrupt_image", "message": "x"}
    bad = [partition_module.Prepared(f"s3://b/{i}.jpg", None, error, 0.0, 0.0) for i in range(3)]
    rows, seconds = partition_module.classify_batch(bad, model=None, config=config)
    assert seconds == 0.0 and [row["key"] for row in rows] == [item.key for item in bad]


def test_download_time_and_a_bad_manifest_key(monkeypatch):
    import io

    from batch_inference.config import Preprocess
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    monkeypatch.setattr(partition_module, "get_bytes", lambda client, uri: buffer.getvalue())
    started = time.perf_counter()
    prepared = partition_module.prepare(None, "s3://b/ok.png", Preprocess(image_size=4))
    elapsed = time.perf_counter() - started
    assert prepared.error is None
    assert 0 <= prepared.download_seconds <= elapsed and 0 <= prepared.decode_seconds <= elapsed
    bad = partition_module.prepare(None, "images/ok.png", Preprocess(image_size=4))
    assert bad.error["type"] == "download_failed"
    assert bad.error["message"].startswith("ValueError: manifest key must be an s3:// URI")


def test_batches_are_decoded_into_reused_arrays_and_mixed_batches_predict_the_same(
    setup, monkeypatch
):
    from batch_inference.images import decode_image

    data, config = setup
    arrays, mixed = set(), 0
    real_classify = partition_module.classify_batch

    def classify(prepared, model, cfg, inputs):
        nonlocal mixed
        arrays.add(id(inputs))
        rows, seconds = real_classify(prepared, model, cfg, inputs)
        # the same batch classified from tensors decoded on their own, stacked: the same rows
        for item in prepared:
            if item.tensor is not None:
                assert np.shares_memory(item.tensor, inputs)
                item.tensor = decode_image(data["objects"][item.key].body, cfg.preprocess)
        mixed += any(item.tensor is None for item in prepared)
        assert real_classify(prepared, model, cfg)[0] == rows
        return rows, seconds

    monkeypatch.setattr(partition_module, "classify_batch", classify)
    metrics = run_partition(config, index=0, partitions=1)
    assert metrics["rows"] == 40 and metrics["errors"] > 0 and mixed > 0
    # 14 batches through prefetch_depth + 1 arrays, allocated once per partition
    assert len(arrays) == config.prefetch_depth + 1


def test_a_download_that_runs_out_of_memory_says_so():
    """Under the Python worker's address-space limit a download fails with a MemoryError, which
    has no message of its own: the error names it."""
    from batch_inference.model import fetch_verified

    class OutOfMemory:
        def get_object(self, **kwargs):
            raise MemoryError

    with pytest.raises(
        ModelLoadError, match=r"cannot download --model-params s3://b/p: MemoryError"
    ):
        fetch_verified(OutOfMemory(), "s3://b/p", None, "--model-params")


def test_a_prefetch_thread_the_os_refuses_names_the_workers_limit(setup, monkeypatch):
    """Under a small address-space limit the OS refuses a thread's stack (``can't start new
    thread``, seen in the rehearsal of the old cifar settings): the partition fails with a
    systemic error that names the limit and ``prefetch_threads``, not a bare RuntimeError."""
    import resource
    import threading

    _, config = setup

    def refuse(*args, **kwargs):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading, "_start_new_thread", refuse)  # what Thread.start calls
    limits = {resource.RLIMIT_AS: (768 * 2**20, resource.RLIM_INFINITY)}
    monkeypatch.setattr(resource, "getrlimit", limits.__getitem__)  # only the address space
    with pytest.raises(WorkerLimitError) as caught:
        run_partition(config, index=0, partitions=1)
    message = str(caught.value)
    assert "cannot start prefetch thread (can't start new thread)" in message
    assert "address space is limited to 768 MiB" in message
    assert f"each of its {config.prefetch_threads} prefetch threads" in message
    assert message.endswith("lower prefetch_threads or raise the worker's memory (docs/SIZING.md)")


def test_a_thread_refused_without_an_address_space_limit_says_so(monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY,) * 2)
    error = partition_module.thread_limit_error(RuntimeError("can't start new thread"), 4)
    assert "address space is not limited, and each of its 4 prefetch threads" in str(error)


def test_another_runtime_error_of_the_pool_is_not_called_a_thread_limit(setup, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    _, config = setup

    class ShutDownPool(ThreadPoolExecutor):
        def submit(self, *args, **kwargs):
            raise RuntimeError("cannot schedule new futures after shutdown")

    monkeypatch.setattr(partition_module, "ThreadPoolExecutor", ShutDownPool)
    with pytest.raises(RuntimeError, match="after shutdown"):
        run_partition(config, index=0, partitions=1)
