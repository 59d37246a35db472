"""``make plan PIPELINE=name FROM=YYYY-MM-DD TO=YYYY-MM-DD``: what a run of those dates would do
and cost, from the command line, before anything runs.

The same request resolution, listing and plan as a ``dry_run`` (``validate_request``,
``stage_manifest``, ``plan_run``), without Airflow running and without writing anything: every
date's input is listed and counted (keys, bytes), each date gets its status (``pending``,
``empty``, or ``published`` for the same request by an earlier run), and the plan prints the
cluster, the modelled wall time, cluster-hours and cost of the range run and of one run per date
(:mod:`emr_inference.plan`). S3 is reached through the pipeline's Airflow connection
(``aws_conn_id``; ``AIRFLOW_CONN_<ID>`` in the environment, or the default AWS credentials).
Exit code 2 for an invalid request, with the message naming the field; 1 when S3 cannot be read
(no credentials, no endpoint), saying what to set.
"""

from __future__ import annotations

import argparse
import json
import sys

from emr_inference_tools.rehearse import pipeline_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", help="a pipeline name (include/pipelines/NAME.yaml) or a path")
    parser.add_argument("--from", dest="start", required=True, help="first date, YYYY-MM-DD")
    parser.add_argument("--to", dest="end", help="last date, YYYY-MM-DD (default: --from)")
    parser.add_argument(
        "--conf", default="{}", help="more Params as a JSON object, as a run's conf would give"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from emr_inference.config import ConfigError, load_pipeline
    from emr_inference.dates import model_identity, stage_date
    from emr_inference.plan import format_plan, plan_run
    from emr_inference.request import resolve_request
    from emr_inference.s3 import s3_hook

    args = parse_args(argv)
    try:
        config = load_pipeline(pipeline_path(args.pipeline))
        params = {
            "date_range": {"start": args.start, "end": args.end or args.start},
            **json.loads(args.conf),
        }
        request = resolve_request(
            config, params, dag_id=config.pipeline, run_id="plan", data_interval_end=None
        )
    except (ConfigError, ValueError) as error:
        print(f"Invalid request: {error}", file=sys.stderr)
        return 2
    from botocore.exceptions import BotoCoreError, ClientError

    hook = s3_hook(config.aws_conn_id, request.sse.model_dump())
    try:
        model = model_identity(hook, request)
        works = [
            stage_date(hook, date, write=False, model=model) for date in request.date_requests()
        ]
    except (BotoCoreError, ClientError) as error:
        print(
            f"Cannot read the pipeline's input through the Airflow connection "
            f"{config.aws_conn_id!r}: {error}. Set AIRFLOW_CONN_{config.aws_conn_id.upper()} "
            "(or AWS credentials) in this shell, or run `make plan` where Airflow runs "
            "(docker compose exec airflow-scheduler ...)",
            file=sys.stderr,
        )
        return 1
    plan = plan_run(request, works, max_active_runs=config.max_active_runs)
    print(format_plan(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
