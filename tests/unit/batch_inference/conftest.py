"""Fixtures of the job's unit tests: a tiny model, a small manifest and a config, in moto S3; the
demo's digits CNN trained once for the driver-side gates' tests."""

from __future__ import annotations

import pytest
from batch_inference import model as model_module
from batch_inference.config import JobConfig, Preprocess

from emr_inference_tools.demo.images import demo_objects, upload_objects
from tests.support.job import write_manifest
from tests.support.tiny_model import upload_tiny_model

SIZE = 8


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """The demo digits CNN, trained here (3 epochs) and exported
    (emr_inference_tools.demo.models)."""
    from emr_inference_tools.demo.models import train_digits_classifier

    return train_digits_classifier(tmp_path_factory.mktemp("digits"), epochs=3)


@pytest.fixture
def setup(bucket, s3_env):
    """A tiny model and 40 digits (20% bad) in S3, and a config for 2 partitions."""
    client = s3_env.client()
    model = upload_tiny_model(client, bucket, "model", image_size=SIZE)
    objects = demo_objects(40, bad_fraction=0.2, size=SIZE)
    uris = upload_objects(client, bucket, "images", objects)
    manifest_uri = write_manifest(client, bucket, "run", uris, shard_size=6)
    config = JobConfig(
        manifest_uri=manifest_uri,
        output_uri=f"s3://{bucket}/run/output/",
        run_id="run-1",
        model=model,
        preprocess=Preprocess(image_size=SIZE),
        batch_size=3,
        top_k=2,
        prefetch_threads=3,
        prefetch_depth=2,
    )
    model_module._CACHE.clear()
    yield {"client": client, "uris": uris, "objects": dict(zip(uris, objects))}, config
    model_module._CACHE.clear()
