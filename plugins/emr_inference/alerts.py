"""Alerts: a run's digest, published to the pipeline's SNS topic, and the lateness deadline.

* Every task records why it failed (:func:`record_failure`, the DAG's ``on_failure_callback``:
  an XCom ``failure_reason``), so the digest can name the failing task and its reason.
* ``report_dates`` (the run's last task, a teardown: it runs however the run went) builds the
  run's digest (:func:`run_digest`): the dates published, empty, already published, planned and
  failed, the failed tasks with their reasons, images and error rows, run time and modelled cost,
  the output and log locations and what became of the cluster. It is in ``report_dates``' XCom,
  and published (:func:`publish_digest`) when the run failed (``alerts.on_failure``) or succeeded
  (``alerts.on_success``).
* A run not finished ``alerts.late_after_minutes`` after it was queued gets one lateness alert:
  an Airflow deadline alert whose callback is the Amazon provider's ``SnsNotifier``, run by the
  triggerer (:func:`lateness_deadline`). Airflow drops the deadline of a run that finished.

Alerts never fail or delay a run: a notifier error is logged, not raised.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emr_inference.resolved import ResolvedRequest

log = logging.getLogger(__name__)

#: The XCom key under which a failed task records its reason.
FAILURE_KEY = "failure_reason"
#: The longest reason kept (an SNS message may be 256 KiB; a digest names a few of them).
MAX_REASON_CHARS = 500
#: SNS refuses a subject over 100 characters.
MAX_SUBJECT_CHARS = 100
#: What the digest says of a failed task whose reason was not recorded.
NO_REASON = "no reason recorded (marked failed by hand, or its process was killed)"
#: Task states that make a task worth naming in the digest.
FAILED_STATES = frozenset({"failed", "upstream_failed"})


def shorten(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` in at most ``limit`` characters: its start and its end (a failure's last lines,
    the log's, say the most), with `` … `` between them."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]} … {text[-(limit - head - 3) :]}"


#: Lines of a failure's message that say what went wrong (a driver log's ERROR line, a Python
#: exception), kept before the rest when a message quotes a log.
_ERROR_LINE = re.compile(r"\bERROR\b|\w+(Error|Exception): ")


def failure_reason(error: BaseException | None) -> str:
    """A failure in a line: the exception's first line, then the lines of the log it quotes
    that report errors (else that log's last two lines), shortened."""
    if error is None:
        return "failed"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    first, rest = (lines[0], lines[1:]) if lines else ("", [])
    errors = [line for line in rest if _ERROR_LINE.search(line)]
    return shorten(" | ".join([f"{type(error).__name__}: {first}", *(errors or rest[-2:])]))


def record_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every task: push the exception as ``failure_reason``."""
    try:
        reason = failure_reason(context.get("exception"))
        context["ti"].xcom_push(key=FAILURE_KEY, value=reason)
    except Exception:  # a callback must never hide the task's own failure
        log.exception("could not record the failure reason")


def task_label(key: str, mapped_tasks: set[str]) -> tuple[str, int | None]:
    """``(task_id, map_index)`` of a ``get_task_states`` key (``date.publish_results_2``)."""
    head, _, tail = key.rpartition("_")
    if head in mapped_tasks and tail.isdigit():
        return head, int(tail)
    return key, None


def _index(map_index: int | None) -> int:
    return -1 if map_index is None else map_index


def failed_tasks(
    states: Mapping[str, str | None],
    task_order: Sequence[str],
    mapped_tasks: set[str],
    dates: Sequence[str],
    reason_of: Any,
) -> list[dict[str, Any]]:
    """The failed tasks of a run, by date then in ``task_order``:
    ``{"task", "date", "state", "reason"}``.

    :param states: ``{task key: state}`` of the run (``RuntimeTaskInstance.get_task_states``)
    :param task_order: the DAG's task ids, in the order they run
    :param mapped_tasks: the task ids mapped per date (``date.*``)
    :param dates: the run's dates, in map-index order
    :param reason_of: ``(task_id, map_index) -> str | None``, the recorded reason
    """
    rank = {task_id: n for n, task_id in enumerate(task_order)}
    labelled = [
        (task_label(key, mapped_tasks), state)
        for key, state in states.items()
        if state in FAILED_STATES
    ]
    labelled.sort(key=lambda item: (_index(item[0][1]), rank.get(item[0][0], len(rank))))
    found = []
    for (task_id, index), state in labelled:
        date = dates[index] if index is not None and index < len(dates) else None
        reason = "an upstream task failed" if state == "upstream_failed" else None
        if state == "failed":
            reason = reason_of(task_id, index) or NO_REASON
        found.append({"task": task_id, "date": date, "state": state, "reason": reason})
    return found


def cluster_outcome(create_state: str | None, terminate_state: str | None) -> str:
    """What became of the run's cluster, from ``create_cluster``'s and ``terminate_cluster``'s
    states (a failed ``create_cluster`` may have made one: the teardown looks for it)."""
    if create_state not in ("success", "failed"):
        return "none started (nothing to process, a dry run, or an earlier task failed)"
    if terminate_state == "success":
        return "stopped by terminate_cluster"
    return (
        f"terminate_cluster is {terminate_state or 'not run'}: the cluster may still be running "
        "(the sweeper and the idle timeout stop it; docs/OPERATIONS.md, 'Cluster left over')"
    )


def run_digest(
    *,
    context: Mapping[str, Any],
    report: Mapping[str, list[str]],
    summaries: Mapping[str, Mapping[str, Any]],
    requests: Sequence[ResolvedRequest],
    tasks: list[dict[str, Any]],
    plan: Mapping[str, Any] | None,
    cluster: str,
) -> dict[str, Any]:
    """The run's digest (JSON): what a person needs to act on a night's run."""
    dag_run = context["dag_run"]
    started = getattr(dag_run, "start_date", None)
    now = dt.datetime.now(dt.UTC)
    first = requests[0] if requests else None
    range_run = (plan or {}).get("range_run") or {}
    failed = bool(report.get("failed")) or any(t["state"] == "failed" for t in tasks)
    return {
        "pipeline": first.pipeline if first else context["dag"].dag_id,
        "dag_id": context["dag"].dag_id,
        "run_id": context["run_id"],
        "backend": first.backend if first else None,
        "outcome": "failed" if failed else "success",
        "dates": {name: list(dates) for name, dates in report.items()},
        "failed_tasks": tasks,
        "images": sum(int(s.get("rows", 0)) for s in summaries.values()),
        "error_rows": sum(int(s.get("errors", 0)) for s in summaries.values()),
        "run_seconds": round((now - started).total_seconds()) if started else None,
        "modelled": {
            "cluster_hours": range_run.get("cluster_hours"),
            "cost_usd": range_run.get("cost_usd"),
        },
        "outputs": {r.partition_date: r.output_uri.uri for r in requests},
        "logs": log_locations(context, first),
        "cluster": cluster,
    }


def log_locations(context: Mapping[str, Any], request: ResolvedRequest | None) -> dict[str, str]:
    """Where the run's logs are: Airflow's task logs, and the cluster's (EMR's ``log_uri``; none
    without a request: the run failed before its dates were listed)."""
    dag_id, run_id = context["dag"].dag_id, context["run_id"]
    found = {"airflow": f"task logs of dag_id={dag_id}/run_id={run_id} (UI: the run's Logs)"}
    if request is not None and request.backend == "emr" and request.cluster.log_uri:
        found["cluster"] = request.cluster.log_uri
    return found


def _dates_span(digest: Mapping[str, Any]) -> str:
    dates = sorted(digest["outputs"])
    if not dates:
        return "no date"
    return dates[0] if len(dates) == 1 else f"{dates[0]}..{dates[-1]}"


def digest_message(digest: Mapping[str, Any]) -> tuple[str, str]:
    """``(subject, message)`` of a digest, as a person reads them."""
    dates = digest["dates"]
    failed, processed = dates.get("failed", []), len(dates.get("published", []))
    headline = digest["outcome"]
    if failed:
        headline += f": {len(failed)} of {len(failed) + processed} dates not published"
    subject = f"{digest['pipeline']} {_dates_span(digest)}: {headline}"[:MAX_SUBJECT_CHARS]
    lines = [
        subject,
        f"run {digest['run_id']} of {digest['dag_id']} ({digest['backend']} backend)",
        "dates: " + "; ".join(f"{name} {', '.join(ds) or '-'}" for name, ds in dates.items()),
    ]
    for task in digest["failed_tasks"]:
        where = f" ({task['date']})" if task["date"] else ""
        lines.append(f"  {task['task']}{where} {task['state']}: {task['reason']}")
    modelled = digest["modelled"]
    cost = "n/a" if modelled["cost_usd"] is None else f"${modelled['cost_usd']:,.2f}"
    lines += [
        f"images: {digest['images']} rows published, {digest['error_rows']} of them error rows",
        f"run time: {digest['run_seconds']} s; modelled: {modelled['cluster_hours']} "
        f"cluster-hours, {cost}",
        "outputs: " + "; ".join(f"{d} {uri}" for d, uri in sorted(digest["outputs"].items())),
        "logs: " + "; ".join(f"{k}: {v}" for k, v in digest["logs"].items()),
        f"cluster: {digest['cluster']}",
    ]
    return subject, "\n".join(lines)


def should_publish(alerts: Mapping[str, Any] | None, outcome: str) -> bool:
    """Whether ``alerts`` asks for a digest of a run that ended ``outcome``."""
    if not alerts:
        return False
    return bool(alerts["on_failure"] if outcome == "failed" else alerts["on_success"])


def publish_digest(digest: Mapping[str, Any], topic_arn: str, aws_conn_id: str | None) -> bool:
    """Publish the digest to ``topic_arn`` with the provider's ``SnsNotifier``; False (and a log
    line) when that fails: an alert never fails the run."""
    from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

    subject, message = digest_message(digest)
    notifier = SnsNotifier(
        aws_conn_id=aws_conn_id, target_arn=topic_arn, subject=subject, message=message
    )
    try:
        notifier.notify({})  # not rendered: a digest may quote {{ partition_date }} templates
    except Exception as error:
        log.warning("could not publish the run's digest to %s: %s", topic_arn, error)
        return False
    log.info("published the run's digest to %s: %s", topic_arn, subject)
    return True


SNS_NOTIFIER = "airflow.providers.amazon.aws.notifications.sns.SnsNotifier"
LATENESS_SUBJECT = "{{ dag_run.dag_id[:60] }}: a run is late"
LATENESS_MESSAGE = (
    "{{ dag_run.dag_id }}: run {{ dag_run.dag_run_id }} (queued {{ dag_run.queued_at }}, "
    "conf {{ dag_run.conf }}) has not finished by {{ deadline.deadline_time }}, "
    "{minutes} minutes after it was queued. Its state: {{ dag_run.state }}."
)


def lateness_deadline(alerts: Mapping[str, Any] | None, aws_conn_id: str | None) -> Any:
    """The DAG's deadline alert for ``alerts.late_after_minutes`` (None without one): the
    provider's ``SnsNotifier`` run by the triggerer, with the run's details templated in."""
    if not alerts or not alerts.get("late_after_minutes"):
        return None
    # airflow.sdk's __init__.pyi (task-sdk 1.3.2) leaves out these names, which it exports
    from airflow.sdk import (  # type: ignore[attr-defined]
        AsyncCallback,
        DeadlineAlert,
        DeadlineReference,
    )

    minutes = int(alerts["late_after_minutes"])
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=dt.timedelta(minutes=minutes),
        callback=AsyncCallback(
            SNS_NOTIFIER,  # a path: the provider (and botocore) is not imported at parse time
            kwargs={
                "aws_conn_id": aws_conn_id,
                "target_arn": alerts["sns_topic_arn"],
                "subject": LATENESS_SUBJECT,
                "message": LATENESS_MESSAGE.replace("{minutes}", str(minutes)),
            },
        ),
        name="late",
    )
