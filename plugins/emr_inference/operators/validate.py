"""``validate_request``: turn the run's Params into the resolved request (the first task)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from emr_inference.config import ConfigError, PipelineConfig
from emr_inference.request import resolve_request


class ValidateRequestOperator(BaseOperator):
    """Resolve Params + pipeline config + the run's dates into the resolved request (XCom).

    An invalid request fails the task without retries, with a message naming the bad field; a
    ``conf`` key that is not a request field (which Airflow 3.3 lets through at trigger time) is
    refused before anything else, naming the closest field.

    :param config: the pipeline config as a JSON-compatible dict (``PipelineConfig.model_dump``).
    """

    ui_color = "#e8f7e4"

    def __init__(self, *, config: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = dict(config)

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
        if request.dry_run:
            self.log.info("dry_run: this run plans %d date(s) and stops", request.run_dates)
        return request.as_json()
