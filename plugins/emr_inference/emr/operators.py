"""The EMR backend: create the cluster, submit the step, wait for it, terminate the cluster.

Each operator extends the Amazon provider's operator and adds what a pipeline needs on top:

* :class:`EmrCreateClusterOperator`: builds the job flow from the request; idempotent on retry
  (a live cluster tagged with this run's ``dag_id``/``run_id`` is reused, not doubled).
* :class:`EmrSubmitStepOperator`: builds the spark-submit step; idempotent on retry (a pending,
  running or completed step of the same name on the cluster is reused); ``on_kill`` cancels it.
* :class:`EmrInferenceStepSensor`: logs images done / total, rate and ETA while the step runs;
  on failure raises with the step's FailureDetails (reason, message, log file); deferrable mode
  hands the waiting to :class:`EmrInferenceStepTrigger` and wakes up every ``progress_interval``
  seconds to log progress, and still honours the sensor's ``timeout``; ``on_kill`` cancels the
  step, and so does the trigger's ``on_kill`` when the task is killed while deferred.
* :class:`EmrTerminateClusterOperator`: the teardown; finds the run's cluster by its tags when
  ``create_cluster`` pushed no id; a no-op when no cluster exists or it has already ended.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.operators.emr import (
    EmrAddStepsOperator,
    EmrCreateJobFlowOperator,
    EmrTerminateJobFlowOperator,
)
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from emr_inference.dates import skip_unless_pending, step_overrun, step_timeout
from emr_inference.emr.cluster import (
    ENDED_CLUSTER_STATES,
    cancel_step,
    cluster_state,
    find_run_cluster,
    find_step,
)
from emr_inference.emr.job_flow import build_job_flow
from emr_inference.emr.steps import inference_step
from emr_inference.operators.base import RunClusterTeardown, UsesRequest
from emr_inference.progress import log_progress


class EmrInferenceStepTrigger(EmrStepSensorTrigger):
    """The provider's step trigger, plus: cancel the step when a user kills the deferred task.

    Airflow 3.3's triggerer calls ``on_kill`` only when a user acts on the deferred task (mark
    failed, mark success, clear); not when the trigger fires, times out, or moves to another
    triggerer on a restart. So a kill while deferred cancels the step, as the sensor's own
    ``on_kill`` does when it is killed on a worker.
    """

    async def on_kill(self) -> None:
        """Cancel the step (``CancelSteps ... TERMINATE_PROCESS``), off the event loop."""
        job_flow_id = self.serialized_fields["job_flow_id"]
        step_id = self.serialized_fields["step_id"]
        self.log.info("Task killed while deferred: cancelling step %s on %s", step_id, job_flow_id)
        await asyncio.to_thread(cancel_step, self.hook().conn, job_flow_id, step_id)


class EmrCreateClusterOperator(UsesRequest, EmrCreateJobFlowOperator):
    """Create this run's EMR cluster from the request; a retry reuses the cluster it created.

    :param request: the resolved request (``validate_request``'s XCom).
    :param artifacts: ``stage_job_artifacts``'s XCom (the bootstrap script's URI).
    """

    template_fields = (*EmrCreateJobFlowOperator.template_fields, "request", "artifacts")

    def __init__(self, *, request: Any, artifacts: Any, **kwargs: Any) -> None:
        kwargs.setdefault("emr_conn_id", None)  # everything comes from the pipeline config
        super().__init__(**kwargs)
        self.request = request
        self.artifacts = artifacts
        self._job_flow_id: str | None = None

    def execute(self, context) -> str | None:  # the provider's, whose job flow id may be None
        request = self.run_request
        existing = find_run_cluster(self.hook.conn, request.dag_id, request.run_id)
        if existing:
            self.log.info("Reusing cluster %s, created for this run by an earlier try", existing)
            self._job_flow_id = existing
            return existing
        self.job_flow_overrides = build_job_flow(request, self.artifacts)
        cluster = request.cluster
        self.log.info(
            "Creating EMR cluster %r: %s, master %s x%d, core %s x%d (%s)",
            self.job_flow_overrides["Name"],
            cluster.release_label,
            "/".join(cluster.master.instance_types),
            cluster.master.count,
            "/".join(cluster.core.instance_types),
            cluster.core.count,
            cluster.core.market,
        )
        return super().execute(context)


class EmrSubmitStepOperator(UsesRequest, EmrAddStepsOperator):
    """Add the inference step to the cluster; a retry reuses the step an earlier try added.

    :param request: the resolved request.
    :param artifacts: ``stage_job_artifacts``'s XCom (job zip and entry point URIs).
    :param manifest: ``stage_manifest``'s XCom (``manifest_uri``).
    :param cluster_id: ``create_cluster``'s XCom.
    """

    template_fields = (*EmrAddStepsOperator.template_fields, "request", "artifacts", "manifest")

    def __init__(
        self, *, request: Any, artifacts: Any, manifest: Any, cluster_id: Any, **kwargs: Any
    ) -> None:
        kwargs.update(wait_for_completion=False, deferrable=False)  # the sensor waits
        super().__init__(job_flow_id=cluster_id, **kwargs)
        self.request = request
        self.artifacts = artifacts
        self.manifest = manifest
        self._step_id: str | None = None

    # The ignore: this operator adds one step and pushes its id (the sensor's step_id), not the
    # provider's list of step ids.
    def execute(self, context) -> str:  # type: ignore[override]
        skip_unless_pending(self.run_request, self.manifest)
        step = inference_step(self.run_request, self.artifacts, self.manifest["manifest_uri"])
        assert self.job_flow_id is not None  # create_cluster's XCom (the provider allows a name)
        existing = find_step(self.hook.conn, self.job_flow_id, step["Name"])
        if existing:
            self.log.info("Reusing step %s, added by an earlier try", existing)
            self._step_id = existing
            return existing
        self.steps = [step]
        (step_id,) = super().execute(context)
        self._step_id = step_id
        self.log.info(
            "Added step %s: %s images from %s",
            step_id,
            self.manifest["total"],
            self.manifest["manifest_uri"],
        )
        return step_id

    def on_kill(self) -> None:
        """Cancel the step this task added or found (a killed task leaves no job running)."""
        if self._step_id and self.job_flow_id:
            self.log.info("Cancelling step %s on %s", self._step_id, self.job_flow_id)
            cancel_step(self.hook.conn, self.job_flow_id, self._step_id)


class EmrInferenceStepSensor(UsesRequest, EmrStepSensor):
    """Wait for the inference step, logging progress; fail with the step's failure details.

    :param request: the resolved request (where the job writes its output).
    :param manifest: ``stage_manifest``'s XCom (``total`` images).
    :param cluster_id: ``create_cluster``'s XCom.
    :param step_id: ``submit_inference_step``'s XCom.
    :param progress_interval: in deferrable mode, seconds between progress reports.
    """

    template_fields = (*EmrStepSensor.template_fields, "request", "manifest")

    def __init__(
        self,
        *,
        request: Any,
        manifest: Any,
        cluster_id: Any,
        step_id: Any,
        progress_interval: int = 300,
        **kwargs: Any,
    ) -> None:
        super().__init__(job_flow_id=cluster_id, step_id=step_id, **kwargs)
        self.request = request
        self.manifest = manifest
        self.progress_interval = progress_interval
        #: step_timeout_seconds: what the step may run from its own start (self.timeout becomes
        #: the whole wait, queueing behind the other dates' steps included)
        self.running_timeout = float(self.timeout)

    def poke(self, context) -> bool:
        response = self.get_emr_response(context)
        state = self.state_from_response(response)
        self.log.info("Step %s is %s", self.step_id, state)
        timeline = response["Step"]["Status"].get("Timeline", {})
        if state in ("RUNNING", *self.target_states):
            self._log_progress(timeline)
        if state == "RUNNING" and (overrun := self._overrun(timeline)):
            self.log.error("%s; cancelling it on %s", overrun, self.job_flow_id)
            cancel_step(self.hook.conn, self.job_flow_id, self.step_id)
            raise AirflowFailException(overrun)
        if state in self.target_states:
            return True
        if state in self.failed_states:
            raise AirflowException(self._failure_message(response, state))
        return False

    def execute(self, context) -> None:
        self.timeout = step_timeout(self.timeout, self.run_request)
        if not self.deferrable:
            super().execute(context)
        elif not self.poke(context):
            deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.timeout)
            self._defer(deadline.isoformat())

    def execute_complete(
        self, context, event: dict[str, Any] | None = None, deadline: str | None = None
    ) -> None:
        """Resume after the trigger; the step's state (not the event) decides what is next.

        The trigger also returns when it has polled ``progress_interval`` seconds' worth of
        times, so that this method can log progress and defer again, until the sensor's
        ``timeout`` (counted from the first poke, carried as ``deadline``) has passed.
        """
        if self.poke(context):
            return
        if deadline and dt.datetime.now(dt.UTC) >= dt.datetime.fromisoformat(deadline):
            raise AirflowSensorTimeout(
                f"Sensor has timed out: step {self.step_id} on {self.job_flow_id} is still "
                f"running after the sensor's timeout of {self.timeout} seconds"
            )
        self._defer(deadline)

    def _defer(self, deadline: str | None) -> None:
        attempts = max(1, math.ceil(self.progress_interval / self.poke_interval))
        self.defer(
            trigger=EmrInferenceStepTrigger(
                job_flow_id=self.job_flow_id,
                step_id=self.step_id,
                waiter_delay=int(self.poke_interval),
                waiter_max_attempts=attempts,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            kwargs={"deadline": deadline},
            timeout=dt.timedelta(seconds=attempts * self.poke_interval + 60),
        )

    def _overrun(self, timeline: Mapping[str, Any]) -> str | None:
        started = timeline.get("StartDateTime")
        running = (dt.datetime.now(dt.UTC) - started).total_seconds() if started else None
        return step_overrun(self.step_id, running, self.running_timeout)

    def _log_progress(self, timeline: Mapping[str, Any]) -> None:
        started = timeline.get("StartDateTime")
        elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds() if started else 0
        total = int(self.manifest["total"])
        log_progress(self.log, self.aws_conn_id, self.run_request, total, elapsed)

    def _failure_message(self, response: dict[str, Any], state: str) -> str:
        details = self.failure_message_from_response(response)
        if not details:
            reason = response["Step"]["Status"].get("StateChangeReason", {})
            cluster = self.hook.conn.describe_cluster(ClusterId=self.job_flow_id)["Cluster"]
            cluster_reason = cluster["Status"].get("StateChangeReason", {})
            details = (
                f"with no failure details; step reason {reason.get('Message', 'none')!r}, "
                f"cluster {cluster['Status']['State']}: {cluster_reason.get('Message', 'none')!r}"
            )
        return f"Inference step {self.step_id} on cluster {self.job_flow_id} {state} {details}"

    def on_kill(self) -> None:
        """Cancel the step (a killed task must not leave the job running)."""
        self.log.info("Cancelling step %s on %s", self.step_id, self.job_flow_id)
        cancel_step(self.hook.conn, self.job_flow_id, self.step_id)


class EmrTerminateClusterOperator(RunClusterTeardown, EmrTerminateJobFlowOperator):
    """Terminate this run's cluster (the teardown of ``create_cluster``); idempotent.

    Without a cluster id (``create_cluster`` failed after RunJobFlow, or pushed nothing) the
    run's live cluster is looked up by its DAG run's name and tags (:class:`RunClusterTeardown`,
    :func:`~emr_inference.emr.cluster.find_run_cluster`), so a cluster a failed create left behind
    is still terminated. A cluster that is already terminating, terminated, or unknown to EMR
    counts as done, so the teardown can retry safely.

    :param cluster_id: ``create_cluster``'s XCom; None when it pushed none.
    """

    def __init__(self, *, cluster_id: Any, **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", False)
        super().__init__(job_flow_id=cluster_id, **kwargs)

    @property
    def cluster_id(self) -> str | None:
        """``create_cluster``'s id (the provider's ``job_flow_id``)."""
        return self.job_flow_id

    def find_run_cluster(self, dag_id: str, run_id: str) -> str | None:
        """The run's live cluster, found by its name and run tags."""
        cluster_id = find_run_cluster(self.hook.conn, dag_id, run_id)
        if cluster_id:
            self.log.info("Found cluster %s of this run by its tags", cluster_id)
        return cluster_id

    def execute(self, context) -> None:
        job_flow_id = self.run_cluster_id(context)
        if not job_flow_id:
            self.log.info("No cluster was created for this run: nothing to terminate")
            return
        self.job_flow_id = job_flow_id
        state = cluster_state(self.hook.conn, self.job_flow_id)
        if state is None or state in ENDED_CLUSTER_STATES:
            self.log.info("Cluster %s is already %s: nothing to terminate", self.job_flow_id,
                          state or "gone")  # fmt: skip
            return
        super().execute(context)
