"""``validate_request``: turn the run's Params into the resolved request (the first task)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from emr_inference.config import ConfigError, PipelineConfig
from emr_inference.ownership import foreign_objects, read_summary
from emr_inference.request import resolve_request
from emr_inference.resolved import ResolvedRequest
from emr_inference.s3 import s3_hook


class ValidateRequestOperator(BaseOperator):
    """Resolve Params + pipeline config + the run's dates into the resolved request (XCom).

    An invalid request fails the task without retries, with a message naming the bad field; a
    ``conf`` key that is not a request field (which Airflow 3.3 lets through at trigger time) is
    refused before anything else, naming the closest field. Then each date's ``output_uri`` is
    listed: one that holds objects a publication of that date does not own (another date's
    output, foreign files: publishing there would delete or shadow them) fails the run here,
    before any cluster (:mod:`emr_inference.ownership`).

    :param config: the pipeline config as a JSON-compatible dict (``PipelineConfig.model_dump``).
    :param aws_conn_id: the connection that lists the output prefixes.
    """

    ui_color = "#e8f7e4"

    def __init__(
        self, *, config: Mapping[str, Any], aws_conn_id: str | None = "aws_default", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.config = dict(config)
        self.aws_conn_id = aws_conn_id

    def execute(self, context) -> dict[str, Any]:
        config = PipelineConfig.model_validate(self.config)
        try:
            request = resolve_request(
                config,
                context["params"],
                dag_id=self.dag_id,
                run_id=context["run_id"],
                data_interval_end=context.get("data_interval_end"),
                partition_key=context.get("partition_key"),
            )
        except ConfigError as error:
            message = f"Invalid request for pipeline {config.pipeline}:\n{error}"
            raise AirflowFailException(message) from None
        for date in request.dates or ():
            self.log.info(
                "Resolved request: partition %s, input %s -> output %s, model %s, backend %s",
                date.partition_date,
                date.manifest_uri or date.input_uri,
                date.output_uri,
                request.model.name,
                request.backend,
            )
        self.check_outputs_owned(config.pipeline, request)
        if request.dry_run:
            self.log.info("dry_run: this run plans %d date(s) and stops", request.run_dates)
        return request.as_json()

    def check_outputs_owned(self, pipeline: str, request: ResolvedRequest) -> None:
        """Fail (unretried) naming ``output_uri`` when a date's output prefix holds objects its
        publication does not own, or cannot be listed."""
        from botocore.exceptions import BotoCoreError, ClientError

        hook = s3_hook(self.aws_conn_id)
        for date in request.dates or ():
            output = date.output_uri
            try:
                count, examples = foreign_objects(hook, output, read_summary(hook, output))
            except (ClientError, BotoCoreError) as error:
                raise AirflowFailException(
                    f"Invalid request for pipeline {pipeline}:\noutput_uri: cannot list "
                    f"{output.uri} ({date.partition_date}) with connection "
                    f"{self.aws_conn_id!r}: {error}"
                ) from None
            if count:
                raise AirflowFailException(
                    f"Invalid request for pipeline {pipeline}:\noutput_uri: {output.uri} "
                    f"({date.partition_date}) holds {count} object(s) that a publication of this "
                    f"date does not own, e.g. {', '.join(examples)}: publishing there would "
                    "delete or shadow them. Publish each date to a prefix of its own "
                    "(output_uri with {{ partition_date }}), or move those objects"
                )
            self.log.info(
                "output_uri %s (%s) holds only what its publication owns",
                output.uri,
                date.partition_date,
            )
