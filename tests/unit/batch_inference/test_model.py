"""Model loading (verification, cache, labels), padding of short batches, softmax and top-k."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from batch_inference import model as model_module
from batch_inference.batching import chunked, top_k
from batch_inference.config import ModelSpec
from batch_inference.errors import ModelLoadError
from batch_inference.model import bind_model, load_model, sha256_hex
from batch_inference.runtime import softmax

from tests.support.tiny_model import reference_logits, tiny_model_files

SIZE = 8


@pytest.mark.parametrize("softmax_output", [False, True], ids=["logits", "SoftmaxOutput"])
def test_short_batches_are_padded_and_the_padding_dropped(softmax_output):
    symbol, params, labels, weights = tiny_model_files(4, SIZE, softmax_output)
    spec = ModelSpec("tiny", "s3://b/s", "s3://b/p", "s3://b/l")
    model = bind_model(spec, symbol, params, labels, batch_size=4, image_size=SIZE)
    assert model.outputs_probabilities is softmax_output
    batch = np.random.default_rng(1).normal(size=(3, 3, SIZE, SIZE)).astype(np.float32)
    probabilities = model.predict(batch)
    assert probabilities.shape == (3, 4)
    np.testing.assert_allclose(probabilities, softmax(reference_logits(weights, batch)), atol=1e-5)
    with pytest.raises(ValueError, match="batch of 5 images for a model bound to 4"):
        model.predict(np.zeros((5, 3, SIZE, SIZE), dtype=np.float32))


def test_chunked_keeps_every_item_once_with_a_short_last_chunk():
    assert list(chunked(map(str, range(7)), 3)) == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert list(chunked([], 3)) == []


def test_top_k_is_sorted_labelled_and_capped_at_the_class_count():
    labels = ["a", "b", "c"]
    assert top_k(np.array([0.2, 0.5, 0.3]), labels, 2) == [
        {"label": "b", "index": 1, "probability": 0.5},
        {"label": "c", "index": 2, "probability": 0.3},
    ]
    assert [entry["index"] for entry in top_k(np.array([0.4, 0.2, 0.4]), labels, 5)] == [0, 2, 1]


def test_softmax_rows_sum_to_one_even_for_large_logits():
    probabilities = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(probabilities, [[0.5, 0.5, 0.0]])


def test_softmax_is_taken_per_row_in_float64():
    """Each row on its own scale (a row of small logits beside one of large logits loses
    nothing), and float64 out of float32 logits."""
    third = np.log(3.0)
    logits = np.array([[0.0, third], [1000.0, 1000.0 + third], [-5.0, -5.0]], dtype=np.float32)
    probabilities = softmax(logits)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities, [[0.25, 0.75], [0.25, 0.75], [0.5, 0.5]], atol=1e-4)


class CountingClient:
    """An S3 client stand-in serving fixed objects and counting downloads."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects, self.calls = objects, 0

    def get_object(self, Bucket, Key):  # noqa: N803 - boto3's parameter names
        import io

        self.calls += 1
        return {"Body": io.BytesIO(self.objects[f"s3://{Bucket}/{Key}"])}


@pytest.fixture
def tiny_files():
    symbol, params, labels, _ = tiny_model_files(image_size=SIZE)
    objects = {
        "s3://m/symbol.json": symbol.encode(),
        "s3://m/model.params": params,
        "s3://m/labels.txt": "".join(f"{label}\n" for label in labels).encode(),
    }
    model_module._CACHE.clear()
    yield objects
    model_module._CACHE.clear()


def spec_for(objects: dict[str, bytes], **overrides) -> ModelSpec:
    fields = dict(
        name="tiny",
        symbol_uri="s3://m/symbol.json",
        params_uri="s3://m/model.params",
        labels_uri="s3://m/labels.txt",
        symbol_sha256=sha256_hex(objects["s3://m/symbol.json"]),
        params_sha256=sha256_hex(objects["s3://m/model.params"]),
        labels_sha256=sha256_hex(objects["s3://m/labels.txt"]),
    )
    return ModelSpec(**{**fields, **overrides})


def test_a_model_is_downloaded_once_per_worker_process(tiny_files):
    client = CountingClient(tiny_files)
    first = load_model(client, spec_for(tiny_files), batch_size=2, image_size=SIZE)
    second = load_model(client, spec_for(tiny_files), batch_size=2, image_size=SIZE)
    assert first is second and client.calls == 3
    assert first.labels == ["class-0", "class-1", "class-2", "class-3"]


def test_a_sha256_mismatch_names_the_file_and_both_digests(tiny_files):
    spec = spec_for(tiny_files, params_sha256="ab" * 32)
    with pytest.raises(ModelLoadError) as caught:
        load_model(CountingClient(tiny_files), spec, batch_size=2, image_size=SIZE)
    message = str(caught.value)
    assert "sha256 mismatch for --model-params s3://m/model.params" in message
    assert "ab" * 32 in message and sha256_hex(tiny_files["s3://m/model.params"]) in message


def test_labels_must_match_the_number_of_classes(tiny_files):
    tiny_files["s3://m/labels.txt"] = b"only\nthree\nlabels\n"
    spec = spec_for(tiny_files, labels_sha256=None)
    with pytest.raises(ModelLoadError, match="has 3 labels but the model outputs 4 classes"):
        load_model(CountingClient(tiny_files), spec, batch_size=2, image_size=SIZE)


def test_a_wrong_input_name_is_reported(tiny_files):
    spec = spec_for(tiny_files, input_name="image")
    with pytest.raises(ModelLoadError, match="--input-name 'image' is not an input"):
        load_model(CountingClient(tiny_files), spec, batch_size=2, image_size=SIZE)


def test_corrupt_params_are_a_model_load_error(tiny_files):
    tiny_files["s3://m/model.params"] = b"not an ndarray file"
    spec = spec_for(tiny_files, params_sha256=None)
    with pytest.raises(ModelLoadError, match="cannot load model 'tiny'"):
        load_model(CountingClient(tiny_files), spec, batch_size=2, image_size=SIZE)


@pytest.mark.slow
def test_omp_threads_are_set_before_mxnet_is_imported():
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from batch_inference.partition import process_partition\n"
        "from batch_inference.model import set_omp_threads\n"
        "assert 'mxnet' not in sys.modules, 'the job imports mxnet too early'\n"
        "assert set_omp_threads(3) == 3\n"
        "import mxnet\n"
        "print(os.environ['OMP_NUM_THREADS'], set_omp_threads(5))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
        env={"PYTHONPATH": str(Path(model_module.__file__).parents[1])},
    )  # fmt: skip
    assert result.stdout.split() == ["3", "3"]  # a later request cannot change a running engine


def test_params_missing_a_weight_of_the_symbol_are_named(tiny_files):
    import mxnet as mx

    symbol, params, labels, _ = tiny_model_files(image_size=SIZE)
    loaded = mx.nd.load_frombuffer(params)
    dropped = sorted(loaded)[0]
    del loaded[dropped]
    spec = ModelSpec("tiny", "s3://b/s", "s3://b/p", "s3://b/l")
    with pytest.raises(
        ModelLoadError, match=f"s3://b/p lacks 1 parameter.*{dropped.split(':')[-1]}"
    ):
        bind_model(spec, symbol, _ndarray_file(loaded), labels, batch_size=2, image_size=SIZE)


def _ndarray_file(arrays: dict) -> bytes:
    import tempfile

    import mxnet as mx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.params"
        mx.nd.save(str(path), arrays)
        return path.read_bytes()


def test_the_conversion_cache_key_names_the_pinned_converter():
    """A new onnx pin may convert differently: the cache key must change with it."""
    from batch_inference.convert import CONVERSION_SETTINGS
    from emr_inference.pins import pinned_versions

    text = (Path(__file__).parents[3] / "requirements-job.txt").read_text(encoding="utf-8")
    pins = pinned_versions(text, "3.11")
    assert CONVERSION_SETTINGS["onnx"] == pins["onnx"]
    assert CONVERSION_SETTINGS["mxnet"] == pins["mxnet"]


@pytest.mark.parametrize("softmax_output", [False, True], ids=["logits", "SoftmaxOutput"])
def test_the_converted_model_gives_mxnets_probabilities_whatever_its_head(softmax_output):
    """Gluon exports end in logits; classic Module-trained models in SoftmaxOutput, whose label
    input mxnet.onnx cannot export: both convert, and softmax is applied exactly once."""
    pytest.importorskip("onnxruntime", reason="emr-7.2.0 EMR nodes lack it")
    from batch_inference.config import ModelSpec
    from batch_inference.convert import export_onnx
    from batch_inference.runtime import bind_onnx

    symbol, params, labels, weights = tiny_model_files(softmax_output=softmax_output)
    spec = ModelSpec("tiny", "", "", "", runtime="onnxruntime")
    model = bind_onnx(spec, export_onnx(symbol, params, "data", 8), labels, 4, 8)
    batch = np.random.default_rng(1).random((3, 3, 8, 8), np.float32)
    assert model.outputs_probabilities == softmax_output
    np.testing.assert_allclose(
        model.predict(batch), softmax(reference_logits(weights, batch)), atol=1e-6
    )


#: the converted runtimes, each skipped where its package is missing (emr-7.2.0's nodes lack both)
CONVERTED_RUNTIMES = ["onnxruntime", "openvino"]


@pytest.mark.parametrize("runtime", CONVERTED_RUNTIMES)
@pytest.mark.parametrize("softmax_output", [False, True], ids=["logits", "SoftmaxOutput"])
def test_the_converted_model_takes_one_to_batch_size_images_of_any_float_type(
    runtime, softmax_output
):
    """A converted model is called like the MXNet one: from one image up to its batch size (not
    padded), float64 images too (the graph's input is float32), float64 probabilities out."""
    pytest.importorskip(runtime, reason="emr-7.2.0 EMR nodes lack it")
    from batch_inference.convert import export_onnx
    from batch_inference.runtime import bind_converted

    symbol, params, labels, weights = tiny_model_files(softmax_output=softmax_output)
    spec = ModelSpec("tiny", "", "", "", runtime=runtime)
    model = bind_converted(spec, export_onnx(symbol, params, "data", SIZE), labels, 4, SIZE)
    assert model.outputs_probabilities == softmax_output
    assert (model.labels, model.num_classes, model.batch_size, model.image_size) == (
        labels, 4, 4, SIZE,
    )  # fmt: skip
    rng = np.random.default_rng(2)
    for count in (1, 4):
        batch = rng.random((count, 3, SIZE, SIZE))  # float64
        probabilities = model.predict(batch)
        assert probabilities.dtype == np.float64 and probabilities.shape == (count, 4)
        np.testing.assert_allclose(
            probabilities, softmax(reference_logits(weights, batch)), atol=1e-6
        )
    for count in (0, 5):
        with pytest.raises(ValueError, match=f"batch of {count} images for a model bound to 4"):
            model.predict(np.zeros((count, 3, SIZE, SIZE), dtype=np.float32))


@pytest.mark.parametrize("runtime", CONVERTED_RUNTIMES)
def test_an_onnx_file_that_does_not_fit_the_job_is_refused_naming_why(runtime):
    """Not an ONNX file, another input name, another class count than the labels: each a
    :class:`ModelLoadError` naming the file, before any image is read."""
    pytest.importorskip(runtime, reason="emr-7.2.0 EMR nodes lack it")
    from batch_inference.convert import export_onnx
    from batch_inference.runtime import bind_converted

    symbol, params, labels, _ = tiny_model_files()
    onnx = export_onnx(symbol, params, "data", SIZE)
    spec = ModelSpec("tiny", None, None, "s3://m/l.txt", runtime=runtime, onnx_uri="s3://m/x")
    with pytest.raises(ModelLoadError, match=r"^cannot load the ONNX model s3://m/x: "):
        bind_converted(spec, b"not an ONNX file", labels, 4, SIZE)
    with pytest.raises(ModelLoadError) as wrong_input:
        bind_converted(replace(spec, input_name="image"), onnx, labels, 4, SIZE)
    assert str(wrong_input.value) == (
        "--input-name 'image' is not an input of the ONNX model s3://m/x (inputs: data)"
    )
    with pytest.raises(ModelLoadError) as wrong_labels:
        bind_converted(spec, onnx, labels[:3], 4, SIZE)
    assert str(wrong_labels.value) == (
        "--model-labels s3://m/l.txt has 3 labels but the ONNX model outputs 4 classes"
    )


@pytest.mark.parametrize("runtime", CONVERTED_RUNTIMES)
def test_a_converted_model_runs_on_the_jobs_threads_on_the_cpu(runtime, monkeypatch):
    """``--omp-threads`` (``OMP_NUM_THREADS``) bounds a converted runtime's threads as MXNet's;
    OpenVINO in fp32, one stream, threads not pinned (Spark's workers on a node would all pin
    the same first cores)."""
    pytest.importorskip(runtime, reason="emr-7.2.0 EMR nodes lack it")
    from batch_inference.convert import export_onnx
    from batch_inference.runtime import bind_converted

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    symbol, params, labels, _ = tiny_model_files()
    spec = ModelSpec("tiny", "", "", "", runtime=runtime)
    model = bind_converted(spec, export_onnx(symbol, params, "data", SIZE), labels, 4, SIZE)
    if runtime == "onnxruntime":
        options = model.session.get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
        assert model.session.get_providers() == ["CPUExecutionProvider"]
    else:
        import openvino as ov

        compiled = model.compiled
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
        assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
        assert compiled.get_property("NUM_STREAMS") == 1
        assert compiled.get_property("ENABLE_CPU_PINNING") is False
        assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]


def test_the_runtimes_thread_count_is_omp_num_threads(monkeypatch):
    from batch_inference.runtime import omp_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert omp_threads() == 3
    for unset in ("", "0"):  # 0: the runtime's default (every core)
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert omp_threads() == 0
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert omp_threads() == 0
