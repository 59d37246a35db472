"""The original AWS blog's inference flow, re-implemented faithfully as the benchmark baseline.

Source: "Distributed Inference Using Apache MXNet and Apache Spark on Amazon EMR" (AWS Machine
Learning Blog, 2017), code in github.com/awslabs/deeplearning-emr, ``mxnet-spark/infer_main.py``,
``mxinfer.py`` and ``utils.py``. The flow, kept as it was:

* the driver lists every key (``list_objects_v2`` pages) into a Python list, pads the list with
  its first keys to a multiple of the batch size, and makes **one partition per batch**
  (``sc.parallelize(keys, numSlices=len(keys) // batch)``), with ``spark.executor.cores=1``;
* per partition, three chained ``mapPartitions`` with no overlap: **download all** keys
  (a ``multiprocessing.Pool`` of ``min(100, cpu_count)`` processes, a new boto3 client per object),
  then **decode all** (Pillow, RGB, resize to 224x224 with the Lanczos/"ANTIALIAS" filter, HWC to
  CHW, ``np.concatenate``), then **predict** the batch with an ``mx.mod.Module`` bound once per
  Python worker, returning top-5 strings;
* ``collect()`` of every prediction to the driver, which drops the padding and writes one output
  file, uploaded to S3.

Changes needed to run it today, none of which changes the flow: Python 3 (``list(filter(...))``;
the Python 2 ``__metaclass__`` singleton becomes the module-level "loaded once" flag it amounted
to), Pillow 10+ (``Image.ANTIALIAS`` is now ``Image.LANCZOS``), and the model files come from
``s3://`` URIs (downloaded once per worker) instead of ``mx.test_utils.download`` over HTTP.

Run with ``spark-submit bench/blog_flow.py --bucket B --prefix P --sym_url s3://... ...``.
"""

from __future__ import annotations

import argparse
import logging
from collections import namedtuple
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark import RDD

log = logging.getLogger("blog_flow")

Batch = namedtuple("Batch", ["data"])


def get_args(argv: list[str] | None = None) -> dict:
    """The blog's arguments (names kept), model locations as s3:// URIs."""
    parser = argparse.ArgumentParser(description="Batch Inference using MXNet and Spark (2017)")
    parser.add_argument("--bucket", required=True, help="bucket holding the input images")
    parser.add_argument("--prefix", default="", help="key prefix of the input images")
    parser.add_argument("--extension", default=".jpg", help="only keys ending so (blog: .png)")
    parser.add_argument("--sym_url", required=True, help="s3:// URI of the symbol JSON")
    parser.add_argument("--param_url", required=True, help="s3:// URI of the params")
    parser.add_argument("--label_url", required=True, help="s3:// URI of the labels (synset)")
    parser.add_argument("--batch", type=int, default=32, help="images per partition and forward")
    parser.add_argument("--output_s3_bucket", required=True, help="bucket of the output file")
    parser.add_argument("--output_s3_key", default="mxinfer_output", help="key of the output file")
    return vars(parser.parse_args(argv))


def get_s3client():
    """A boto3 S3 client from the environment (the blog created one per call)."""
    import boto3

    return boto3.client("s3")


def fetch_s3_keys(bucket: str, prefix: str, s3_client) -> list[str]:
    """Every key under ``prefix``, listed page by page into one list on the driver."""
    all_keys: list[str] = []
    token = ""
    while True:
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        objects = s3_client.list_objects_v2(**kwargs)
        all_keys.extend(item["Key"] for item in objects.get("Contents", []))
        token = objects.get("NextContinuationToken", "")
        if not objects["IsTruncated"]:
            break
    log.info("fetched %d keys from s3 bucket: %s and prefix: %s", len(all_keys), bucket, prefix)
    return all_keys


def pad_keys(keys: list[str], batch: int) -> tuple[list[str], int]:
    """The blog's padding: repeat the first keys up to a multiple of ``batch`` (reduced to the key
    count when there are fewer keys); returns the padded list and the batch size."""
    n_keys = len(keys)
    if n_keys < batch:
        batch = n_keys
    n_partitions = n_keys // batch
    if n_partitions * batch != n_keys:
        keys = keys + keys[: batch - (n_keys - n_partitions * batch)]
    return keys, batch


def download_object(key: str, bucket: str) -> bytearray | None:
    """Download one object into memory, with a new client (as the blog did)."""
    s3_obj = get_s3client().get_object(Bucket=bucket, Key=key)
    if s3_obj["ResponseMetadata"]["HTTPStatusCode"] == 200:
        return bytearray(s3_obj["Body"].read())
    return None


def download_objects(bucket: str, list_of_keys) -> list:
    """Download a partition's keys with a process pool of ``min(100, cpu_count)``."""
    import multiprocessing
    from functools import partial

    num_threads_to_use = min(100, multiprocessing.cpu_count())
    with multiprocessing.Pool(num_threads_to_use) as pool:
        return pool.map(partial(download_object, bucket=bucket), list(list_of_keys))


def read_image(img_bytes):
    """Decode one image to a ``(1, 3, 224, 224)`` uint8 array (no mean/std, as in the blog)."""
    import io

    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(bytearray(img_bytes))).convert("RGB")
    image = image.resize((224, 224), Image.Resampling.LANCZOS)
    img = np.swapaxes(np.asarray(image), 0, 2)
    img = np.swapaxes(img, 1, 2)
    return img[np.newaxis, :]


def load_images(images):
    """Decode a whole partition's images into one 4-D array."""
    import numpy as np

    return np.concatenate([read_image(image) for image in images])


class MXModel:
    """The model, downloaded and bound once per Python worker (the blog's singleton)."""

    model_loaded = False
    mod: Any = None  # an mxnet.mod.Module once loaded
    synsets: list[str] = []

    def __init__(self, sym_url: str, param_url: str, synset_url: str, batch_size: int) -> None:
        import mxnet as mx

        client = get_s3client()

        def fetch(uri: str) -> bytes:
            bucket, key = uri[len("s3://") :].split("/", 1)
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()

        MXModel.synsets = [line.strip() for line in fetch(synset_url).decode().splitlines()]
        sym = mx.sym.load_json(fetch(sym_url).decode())
        arg_params: dict[str, Any] = {}
        aux_params: dict[str, Any] = {}
        for name, value in mx.nd.load_frombuffer(fetch(param_url)).items():
            kind, bare = name.split(":", 1)
            (arg_params if kind == "arg" else aux_params)[bare] = value
        mod = mx.mod.Module(symbol=sym, label_names=None, context=mx.cpu())
        mod.bind(for_training=False, data_shapes=[("data", (batch_size, 3, 224, 224))])
        mod.set_params(arg_params, aux_params, allow_missing=True)
        MXModel.mod = mod
        MXModel.model_loaded = True


def predict(img_batch, args: dict) -> list[list[str]]:
    """Forward one partition's batch; top-5 ``probability=…, class=…`` strings per image."""
    import mxnet as mx
    import numpy as np

    if not MXModel.model_loaded:
        MXModel(args["sym_url"], args["param_url"], args["label_url"], args["batch"])
    MXModel.mod.forward(Batch([mx.nd.array(img_batch)]))
    batch_prob = MXModel.mod.get_outputs()[0].asnumpy()
    batch_top5 = []
    for prob in batch_prob:
        prob = np.squeeze(prob)
        best = np.argsort(prob)[::-1][:5]
        batch_top5.append([f"probability={prob[i]:f}, class={MXModel.synsets[i]}" for i in best])
    return batch_top5


def main(argv: list[str] | None = None) -> None:
    """The blog's driver program."""
    import os
    import tempfile

    import pyspark
    from pyspark import SparkConf

    logging.basicConfig(level=logging.INFO, format="%(asctime)s blog_flow %(message)s")
    args = get_args(argv)
    conf = SparkConf().setAppName("Distributed Inference using MXNet and Spark")
    conf.set("spark.executor.cores", "1")
    sc = pyspark.SparkContext(conf=conf)

    s3_client = get_s3client()
    keys = fetch_s3_keys(args["bucket"], args["prefix"], s3_client)
    keys = list(filter(lambda x: x.endswith(args["extension"]), keys))
    n_keys = len(keys)
    keys, args["batch"] = pad_keys(keys, args["batch"])
    n_partitions = len(keys) // args["batch"]
    log.info("number of keys:%d, n_partitions:%d", len(keys), n_partitions)

    bucket = args["bucket"]
    rdd: RDD[Any] = sc.parallelize(keys, numSlices=n_partitions)
    rdd = rdd.mapPartitions(lambda k: download_objects(bucket, k))
    rdd = rdd.mapPartitions(load_images)
    rdd = rdd.mapPartitions(lambda imgs: predict(imgs, args))
    output = rdd.collect()

    keys, output = keys[:n_keys], output[:n_keys]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "output.txt")
        with open(path, "w") as f:
            for key, prediction in zip(keys, output, strict=True):
                f.write(f"Key {key}: Prediction: {prediction}\n")
        s3_client.upload_file(path, args["output_s3_bucket"], args["output_s3_key"])
    log.info(
        "wrote %d predictions to s3://%s/%s",
        n_keys,
        args["output_s3_bucket"],
        args["output_s3_key"],
    )
    sc.stop()


if __name__ == "__main__":
    # Run through the importable module, as the blog imported mxinfer/utils: Spark then pickles
    # these functions by reference and a reused Python worker keeps its loaded MXModel.
    from bench.blog_flow import main as blog_main

    blog_main()
