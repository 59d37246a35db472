"""A partition whose S3 requests go through a proxy that answers SlowDown (503) and 500 errors.

Bounded faults are absorbed by the client's retries (tested through spark-submit in
``tests/integration/batch_inference/test_job_reliability.py``); these tests exhaust the
retries: a download becomes a ``download_failed`` row, an output write fails the partition
naming the object.
"""

from __future__ import annotations

import pytest
from batch_inference import s3io
from batch_inference.errors import DOWNLOAD_FAILED, OutputWriteError

from tests.support.fault_proxy import FaultPlan, FaultProxy, FaultRule
from tests.support.job import read_output, run_partition

RETRIES = 2  # s3io.MAX_ATTEMPTS (botocore counts retries): 8 back off for over a minute


@pytest.fixture
def through_proxy(s3_env, monkeypatch):
    """Point the job's clients at a fault proxy; yields a function that sets the plan's rules."""
    plan = FaultPlan([])
    monkeypatch.setattr(s3io, "MAX_ATTEMPTS", RETRIES)
    with FaultProxy(s3_env.endpoint_url, plan) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint_url)
        yield plan


def test_a_download_that_exhausts_its_retries_is_a_download_failed_row(setup, through_proxy):
    data, config = setup
    good = [uri for uri in data["uris"][:20] if data["objects"][uri].expected_error is None]
    doomed = {good[1], good[4]}
    through_proxy.rules = [
        FaultRule("GET", uri.split("/", 3)[3], failures=RETRIES + 1) for uri in doomed
    ] + [FaultRule("GET", "/images/", failures=1)]  # every other image: retried once
    metrics = run_partition(config, index=0, partitions=2)
    rows, _, _ = read_output(data["client"], config.output_uri)
    assert [row["key"] for row in rows] == data["uris"][:20]
    for row in rows:
        if row["key"] in doomed:
            assert row["error"]["type"] == DOWNLOAD_FAILED
            assert f"reached max retries: {RETRIES}" in row["error"]["message"]
        else:  # retried once after SlowDown, then classified (or its own error)
            assert (row["error"] or {}).get("type") == data["objects"][row["key"]].expected_error
    assert metrics["errors_by_type"][DOWNLOAD_FAILED] == len(doomed)
    assert through_proxy.injected["SlowDown"] >= 20 and through_proxy.injected["InternalError"]


def test_an_output_write_that_exhausts_its_retries_fails_the_partition(setup, through_proxy):
    _, config = setup
    through_proxy.rules = [FaultRule("PUT", "/run/output/", failures=RETRIES + 1)]
    with pytest.raises(
        OutputWriteError,
        match=r"cannot write s3://.*/run/output/part-00001\.jsonl: .*SlowDown.*reached max retries",
    ):
        run_partition(config, index=1, partitions=2)
