"""The ``local`` backend's operators: a Spark standalone cluster instead of EMR, same task shape.

``create_cluster`` -> :class:`LocalCreateClusterOperator`, ``submit_inference_step`` ->
:class:`LocalSubmitStepOperator`, ``wait_for_inference_step`` -> :class:`LocalStepSensor`,
``terminate_cluster`` -> :class:`LocalTerminateClusterOperator`. The processes and their state
are managed by :mod:`emr_inference.local.cluster`.

S3 endpoint and credentials come from the Airflow connection (``aws_conn_id``) and reach Spark
only through the environment of the processes (``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``,
...): never through arguments, Spark configuration or logs.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from emr_inference.dates import skip_unless_pending, step_overrun, step_timeout
from emr_inference.emr.sizing import executor_plan, omp_threads, spark_properties
from emr_inference.job_command import job_arguments, step_name
from emr_inference.local.cluster import (
    LocalCluster,
    LocalClusterError,
    cluster_id_for,
    log_tail,
    start_cluster,
    step_status,
    stop_cluster,
    stop_step,
    submit_step,
    submitted_step_name,
)
from emr_inference.operators.base import (
    DEFAULT_AWS_CONN_ID,
    RequestOperator,
    RunClusterTeardown,
    UsesRequest,
    request_template_fields,
)
from emr_inference.progress import log_progress
from emr_inference.s3 import S3Uri, s3_hook

if TYPE_CHECKING:  # the hook imports boto3: not when a DAG file is parsed
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from emr_inference.config import RequestDefaults

# as on EMR (operators.emr.REUSABLE_STEP_STATES): a retried submit reuses such a step
REUSABLE_STEP_STATES = ("RUNNING", "COMPLETED")


def emulated_cluster_conf(request: RequestDefaults) -> dict[str, str]:
    """The EMR step's spark-defaults for a local run, executors scaled to the local workers.

    Everything but the executor count is what EMR gets (:func:`spark_properties`): executor cores,
    heap, overhead, ``spark.executor.pyspark.memory`` (so the Python workers' address-space limit
    is the one they would have on EMR), task CPUs, threads and the pipeline's ``spark_defaults``.
    ``spark.executor.instances`` and ``spark.cores.max`` become what the local workers hold.
    """
    plan = executor_plan(request)
    local = request.local
    if plan.executor_cores > local.worker_cores:
        raise LocalClusterError(
            f"local.worker_cores: {local.worker_cores} cannot hold one executor of "
            f"spark.executor.cores {plan.executor_cores}"
        )
    per_worker = local.worker_cores // plan.executor_cores
    executors = max(1, min(plan.instances, per_worker * local.workers))
    return {
        **spark_properties(request),
        "spark.executor.instances": str(executors),
        "spark.cores.max": str(executors * plan.executor_cores),
    }


def aws_env(aws_conn_id: str | None) -> dict[str, str]:
    """Environment variables that give boto3 in Spark the connection's credentials and endpoint."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=aws_conn_id)
    credentials = hook.get_credentials()  # also masks the secret in task logs
    env = {
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
    }
    if credentials.token:
        env["AWS_SESSION_TOKEN"] = credentials.token
    if region := hook.conn_config.region_name:
        env["AWS_DEFAULT_REGION"] = region
    if endpoint := hook.conn_config.get_service_endpoint_url(service_name="s3"):
        env["AWS_ENDPOINT_URL_S3"] = endpoint
    return env


class LocalCreateClusterOperator(RequestOperator):
    """Start this run's local Spark cluster (the request's ``local``: workers, cores, memory,
    idle timeout of its watchdog).

    Returns the cluster id ``local-<hash of dag_id and run_id>``; a retry finds the running cluster.

    :param request: the resolved request
    :param artifacts: ``stage_job_artifacts``'s XCom; not used locally (no bootstrap action: the
        job's dependencies are this interpreter's), accepted so both backends share a signature
    :param aws_conn_id: the connection whose endpoint and credentials the executors get
    """

    def __init__(self, *, artifacts: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.artifacts = artifacts

    def execute(self, context: Context) -> str:
        request, shape = self.run_request, self.run_request.local
        cluster = start_cluster(
            cluster_id_for(request.dag_id, request.run_id),
            workers=shape.workers,
            worker_cores=shape.worker_cores,
            worker_memory=shape.worker_memory,
            env=aws_env(self.aws_conn_id),
            dag_id=request.dag_id,
            run_id=request.run_id,
            idle_timeout=shape.idle_timeout_seconds,
        )
        self.log.info(
            "Local cluster %s: master %s, state in %s",
            cluster.cluster_id,
            cluster.master_url,
            cluster.state_dir,
        )
        return cluster.cluster_id


class LocalSubmitStepOperator(RequestOperator):
    """Run the job with ``spark-submit`` on the local cluster, detached; returns the step id.

    The staged zip and ``main.py`` are downloaded into the cluster's state dir; the arguments are
    :func:`emr_inference.job_command.job_arguments`, as on EMR. A retry while the step of this date
    (same step name) is still running or has completed returns that step instead of starting a
    second one. A date that needs no step (``manifest["status"]`` not ``pending``) is skipped.
    """

    template_fields: Sequence[str] = request_template_fields("artifacts", "manifest", "cluster_id")

    def __init__(self, *, artifacts: Any, manifest: Any, cluster_id: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.artifacts = artifacts
        self.manifest = manifest
        self.cluster_id = cluster_id
        self._step: tuple[LocalCluster, str] | None = None

    def execute(self, context: Context) -> str:
        request = self.run_request
        skip_unless_pending(request, self.manifest)
        cluster = LocalCluster.load(self.cluster_id)
        name = step_name(request)
        for record in cluster.processes:
            if not record.name.startswith("step-"):
                continue
            if submitted_step_name(cluster, record.name) != name:
                continue
            state = step_status(cluster, record.name).state
            if state in REUSABLE_STEP_STATES:
                self.log.info("Step %s on %s is %s (an earlier try added it): not submitting "
                              "again", record.name, cluster.cluster_id, state)  # fmt: skip
                self._step = (cluster, record.name)
                return record.name
        hook = s3_hook(self.aws_conn_id)  # downloads: not the hook of the request's SSE writes
        py_files, entry_point = (
            self._download(hook, self.artifacts[name], cluster.path / "artifacts")
            for name in ("job_zip", "entry_point")
        )
        env, conf = aws_env(self.aws_conn_id), None
        if request.local.emulate_cluster:
            conf = emulated_cluster_conf(request)
            env["OMP_NUM_THREADS"] = str(omp_threads(request))  # EMR's spark-env export
            self.log.info("Emulating the EMR cluster's Spark settings: %s", conf)
        step_id = submit_step(
            cluster,
            name=name,
            py_files=py_files,
            entry_point=entry_point,
            arguments=job_arguments(request, self.manifest["manifest_uri"]),
            env=env,
            conf=conf,
        )
        self._step = (cluster, step_id)
        self.log.info("Submitted %s to %s; driver log %s", step_id, cluster.master_url,
                      step_status(cluster, step_id).log_path)  # fmt: skip
        return step_id

    @staticmethod
    def _download(hook: S3Hook, uri: str, folder: Path) -> Path:
        """Download a content-addressed artifact to ``folder/<sha256>/<name>`` (once).

        Into a folder of its own first, then renamed into place: the dates of a range run
        submit at once, and each may find the file missing (same bytes, whoever renames last).
        """
        source = S3Uri.parse(uri, "artifacts", prefix=False)
        digest, name = source.key.split("/")[-2:]
        path = folder / digest / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as download_dir:
                downloaded = hook.download_file(
                    source.key, source.bucket, download_dir, preserve_file_name=True,
                    use_autogenerated_subdir=False,
                )  # fmt: skip
                Path(downloaded).replace(path)
        return path

    def on_kill(self) -> None:
        """Kill the step this task submitted (or found), so a killed task leaves no job running."""
        if self._step:
            self.log.info("Killing step %s on %s", self._step[1], self._step[0].cluster_id)
            stop_step(*self._step)


class LocalStepSensor(UsesRequest, BaseSensorOperator):
    """Wait for a local step; log progress from the staged output; fail with the driver log tail.

    :param request: the resolved request
    :param manifest: ``stage_manifest``'s XCom (the total for progress)
    :param cluster_id: ``create_cluster``'s XCom
    :param step_id: ``submit_inference_step``'s XCom
    """

    template_fields: Sequence[str] = request_template_fields("manifest", "cluster_id", "step_id")

    def __init__(
        self,
        *,
        request: Any,
        manifest: Any,
        cluster_id: Any,
        step_id: Any,
        aws_conn_id: str | None = DEFAULT_AWS_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.request = request
        self.manifest = manifest
        self.cluster_id = cluster_id
        self.step_id = step_id
        self.aws_conn_id = aws_conn_id
        #: step_timeout_seconds, from the step's own start (see emr_inference.dates.step_overrun)
        self.running_timeout = float(self.timeout)

    def execute(self, context: Context) -> Any:
        self.timeout = step_timeout(self.timeout, self.run_request)
        return super().execute(context)

    def poke(self, context: Context) -> bool:
        cluster = LocalCluster.load(self.cluster_id)
        status = step_status(cluster, self.step_id)
        self._log_progress(cluster)
        if status.state == "RUNNING":
            record = next(p for p in cluster.processes if p.name == self.step_id)
            running = time.time() - record.create_time
            if overrun := step_overrun(self.step_id, running, self.running_timeout):
                self.log.error("%s; stopping it on %s", overrun, self.cluster_id)
                stop_step(cluster, self.step_id)
                raise AirflowFailException(overrun)
            return False
        if status.state == "COMPLETED":
            self.log.info("Step %s completed", self.step_id)
            return True
        ended = f"exit code {status.exit_code}" if status.exit_code is not None else "was killed"
        raise AirflowFailException(
            f"Step {self.step_id} on {self.cluster_id} failed ({ended}). Driver log "
            f"{status.log_path}, last lines:\n{log_tail(status.log_path)}"
        )

    def _log_progress(self, cluster: LocalCluster) -> None:
        record = next(p for p in cluster.processes if p.name == self.step_id)
        elapsed = time.time() - record.create_time
        total = int(self.manifest["total"])
        log_progress(self.log, self.aws_conn_id, self.run_request, total, elapsed)

    def on_kill(self) -> None:
        """Kill the step: a killed wait must not leave the job running."""
        self.log.info("Killing step %s on %s", self.step_id, self.cluster_id)
        try:
            stop_step(LocalCluster.load(self.cluster_id), self.step_id)
        except LocalClusterError as error:
            self.log.warning("Could not stop step %s: %s", self.step_id, error)


class LocalTerminateClusterOperator(RunClusterTeardown, BaseOperator):
    """Stop every process of the run's local cluster and check that none is left.

    Without a cluster id (``create_cluster`` pushed none, or failed) the id is derived from the
    DAG run, as ``create_cluster`` derives it (:class:`RunClusterTeardown`); a cluster that has
    no state any more is already gone, and one already stopped is stopped again at no cost
    (idempotent, so the teardown can retry).

    :param cluster_id: ``create_cluster``'s XCom; None when it pushed none
    """

    template_fields: Sequence[str] = ("cluster_id",)

    def __init__(self, *, cluster_id: Any, aws_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster_id = cluster_id
        self.aws_conn_id = aws_conn_id  # unused: stopping local processes needs no AWS

    def find_run_cluster(self, dag_id: str, run_id: str) -> str:
        """The run's cluster id, derived as ``create_cluster`` derives it (whether or not the
        cluster was ever started: :meth:`execute` finds out)."""
        return cluster_id_for(dag_id, run_id)

    def execute(self, context: Context) -> None:
        cluster_id = self.run_cluster_id(context)
        assert cluster_id is not None  # find_run_cluster always derives one
        try:
            cluster = LocalCluster.load(cluster_id)
        except LocalClusterError:
            self.log.info("No local cluster %s: nothing to stop", cluster_id)
            return
        stop_cluster(cluster)
        self.log.info("Stopped local cluster %s: no process left", cluster_id)
