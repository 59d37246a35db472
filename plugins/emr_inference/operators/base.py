"""What the pipeline's operators share: the resolved request, the AWS connection, the run's cluster.

In the Amazon provider's style: the template fields are merged by :func:`request_template_fields`
(as the provider's ``aws_template_fields``, which cannot be imported here: it brings boto3 into
every DAG file parse), and the S3 hook is a property (:attr:`RequestOperator.s3`).

* :class:`UsesRequest`: ``self.request`` (the resolved request's JSON form, a template field: an
  XComArg until the task runs) and ``self.run_request``, the same request typed
  (:class:`~emr_inference.resolved.ResolvedRequest`, read once per task).
* :class:`RequestOperator`: a ``BaseOperator`` with the request and ``aws_conn_id``; the EMR
  operators extend the provider's operators instead and mix in :class:`UsesRequest`.
* :class:`RunClusterTeardown`: how both backends' ``terminate_cluster`` find the run's cluster:
  ``create_cluster``'s id, else looked up by the DAG run (``dag_id``, ``run_id`` from the task's
  context, never from the request, which a failed ``validate_request`` never produced).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context

from emr_inference.resolved import ResolvedRequest

if TYPE_CHECKING:  # the hook imports boto3: not when a DAG file is parsed
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

DEFAULT_AWS_CONN_ID = "aws_default"


def request_template_fields(*fields: str) -> tuple[str, ...]:
    """``fields`` plus ``request`` and ``aws_conn_id``, sorted (the provider's convention)."""
    return tuple(sorted({"aws_conn_id", "request", *fields}))


class UsesRequest:
    """An operator that reads the resolved request (``request``: its JSON form, an XCom)."""

    request: Any

    @cached_property
    def run_request(self) -> ResolvedRequest:
        """The request, typed (valid once the task runs: its template fields are rendered)."""
        return ResolvedRequest.of(self.request)


class RequestOperator(UsesRequest, BaseOperator):
    """A pipeline operator: the resolved request and the AWS connection its S3 calls use.

    :param request: the resolved request (``validate_request``'s XCom, or a date's request from
        ``stage_manifest``)
    :param aws_conn_id: the Airflow AWS connection (credentials, region, endpoint)
    """

    template_fields: Sequence[str] = request_template_fields()

    def __init__(
        self, *, request: Any, aws_conn_id: str | None = DEFAULT_AWS_CONN_ID, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.request = request
        self.aws_conn_id = aws_conn_id

    @cached_property
    def s3(self) -> S3Hook:
        """An S3 hook of ``aws_conn_id`` whose uploads carry the request's encryption (its
        ``extra_args``: for writes only; S3Hook.download_file refuses them)."""
        from emr_inference.s3 import s3_hook

        return s3_hook(self.aws_conn_id, self.run_request.sse.model_dump())


class RunClusterTeardown:
    """Both backends' ``terminate_cluster``: which cluster is the run's (see the module doc)."""

    cluster_id: Any

    def run_cluster_id(self, context: Context) -> str | None:
        """``create_cluster``'s id, else the run's cluster looked up by its DAG run, else None."""
        if self.cluster_id:
            return self.cluster_id
        return self.find_run_cluster(context["dag"].dag_id, context["run_id"])

    def find_run_cluster(self, dag_id: str, run_id: str) -> str | None:
        """The backend's lookup of a DAG run's live cluster."""
        raise NotImplementedError
