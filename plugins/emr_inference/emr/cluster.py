"""EMR's side of a run's cluster through boto3: find it by its run tags, read its state, find and
cancel its steps (the operators in :mod:`emr_inference.emr.operators` use these)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from emr_inference.emr.job_flow import cluster_name

LIVE_CLUSTER_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]
ENDED_CLUSTER_STATES = ["TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS"]
REUSABLE_STEP_STATES = ["PENDING", "RUNNING", "COMPLETED"]


def _paginate(client: Any, method: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator(method).paginate(**kwargs):
        yield from page[key]


def find_run_cluster(client: Any, dag_id: str, run_id: str) -> str | None:
    """The id of a live cluster created for this DAG run (same name and run tags), if any."""
    wanted = {"dag_id": dag_id, "run_id": run_id}
    name = cluster_name(dag_id, run_id)
    clusters = _paginate(client, "list_clusters", "Clusters", ClusterStates=LIVE_CLUSTER_STATES)
    for summary in clusters:
        if summary["Name"] != name:
            continue
        cluster = client.describe_cluster(ClusterId=summary["Id"])["Cluster"]
        tags = {tag["Key"]: tag["Value"] for tag in cluster.get("Tags", [])}
        if all(tags.get(key) == value for key, value in wanted.items()):
            return summary["Id"]
    return None


def cluster_state(client: Any, cluster_id: str) -> str | None:
    """The cluster's state, or None when EMR does not know the id (gone long ago)."""
    try:
        return client.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "InvalidRequestException":
            return None
        raise


def cancel_step(client: Any, cluster_id: str, step_id: str) -> None:
    """Cancel a pending or running step, killing its process (``TERMINATE_PROCESS``)."""
    client.cancel_steps(
        ClusterId=cluster_id, StepIds=[step_id], StepCancellationOption="TERMINATE_PROCESS"
    )


def find_step(client: Any, cluster_id: str, name: str) -> str | None:
    """The id of a pending, running or completed step called ``name`` on the cluster, if any."""
    for step in _paginate(
        client, "list_steps", "Steps", ClusterId=cluster_id, StepStates=REUSABLE_STEP_STATES
    ):
        if step["Name"] == name:
            return step["Id"]
    return None
