"""A run of the trained demo digits CNN for the driver-side gates (int8, conversion): its model and
held-out digits in S3, a manifest of them, and the job's config for them."""

from __future__ import annotations

from typing import Any

from batch_inference.config import JobConfig, ModelSpec
from batch_inference.manifest import Manifest, read_manifest

from emr_inference_tools.demo.images import demo_objects, upload_objects
from emr_inference_tools.demo.models import ExportedModel, upload_model
from tests.support.job import write_manifest


def digits_run(
    client, bucket: str, digits: ExportedModel, images: int, model: dict[str, Any], **config: Any
) -> tuple[JobConfig, Manifest]:
    """Upload ``digits`` and ``images`` held-out digits (2 % bad) to ``bucket``; the config (its
    ``model`` fields and ``config`` fields added) and the manifest of a run over them."""
    uploaded = upload_model(client, digits, bucket, "model")
    uris = upload_objects(client, bucket, "images", demo_objects(images, bad_fraction=0.02))
    manifest_uri = write_manifest(client, bucket, "run", uris, shard_size=64)
    job = JobConfig(
        manifest_uri=manifest_uri,
        output_uri=f"s3://{bucket}/run/output/",
        run_id="run-1",
        model=ModelSpec(
            name=uploaded["name"],
            symbol_uri=uploaded["symbol"],
            params_uri=uploaded["params"],
            labels_uri=uploaded["labels"],
            params_sha256=uploaded["params_sha256"],
            **model,
        ),
        preprocess=digits.preprocess(),
        batch_size=32,
        **config,
    )
    return job, read_manifest(client, manifest_uri)
