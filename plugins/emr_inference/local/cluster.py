"""The ``local`` backend: a real Spark standalone cluster on loopback, the local twin of EMR.

A cluster is a master and N workers started with pyspark's ``bin/spark-class`` as detached
processes (their own session, so they outlive the Airflow task that started them), and a step is a
detached ``spark-submit --master spark://...`` run through a small shell wrapper that records its
exit code. Everything a cluster owns lives in its state dir,
``<EMR_INFERENCE_LOCAL_STATE or $AIRFLOW_HOME/local_clusters>/<cluster id>/``: ``cluster.json``
(ports, processes), logs, the steps' command lines, driver logs and exit codes.

Every process we start carries ``EMR_INFERENCE_LOCAL_CLUSTER=<cluster id>`` in its environment,
and so do all their descendants (executors, PySpark daemons and workers, which leave the worker's
process group): :func:`stop_cluster` kills the recorded process groups and every process carrying
the tag, then checks that none is left.

A cluster records the DAG run it belongs to (``dag_id``, ``run_id``: the sweeper reads them) and
runs a watchdog (:mod:`emr_inference.local.watchdog`) that stops it after ``idle_timeout`` seconds
without a running step, as EMR's idle timeout does. A cluster started again with the same id (a
cleared run) keeps its state dir: its steps continue the numbering of the steps already on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

STATE_ENV = "EMR_INFERENCE_LOCAL_STATE"
CLUSTER_TAG_ENV = "EMR_INFERENCE_LOCAL_CLUSTER"
#: The Spark distribution clusters and steps run instead of pyspark's own
#: (``emr_inference_tools.node_twin``).
SPARK_HOME_ENV = "EMR_INFERENCE_LOCAL_SPARK_HOME"
STATE_FILE = "cluster.json"
#: How often a watchdog looks at its cluster (at most; a short idle timeout polls faster).
WATCHDOG_POLL_SECONDS = 5.0


class LocalClusterError(RuntimeError):
    """The local cluster could not be started, used or stopped."""


def state_base() -> Path:
    """Where local clusters keep their state: ``$EMR_INFERENCE_LOCAL_STATE`` or
    ``$AIRFLOW_HOME/local_clusters`` (``~/airflow/local_clusters`` without AIRFLOW_HOME)."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    home = os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow"
    return Path(home) / "local_clusters"


def cluster_id_for(dag_id: str, run_id: str) -> str:
    """The cluster id of a DAG run: the same on every retry, so create is idempotent."""
    return "local-" + hashlib.sha256(f"{dag_id}\0{run_id}".encode()).hexdigest()[:16]


def spark_class() -> Path:
    """``bin/spark-class`` of ``$EMR_INFERENCE_LOCAL_SPARK_HOME`` (a node twin's Spark, of the EMR
    release's version), else of the pip-installed pyspark beside this interpreter."""
    if os.environ.get(SPARK_HOME_ENV):
        return Path(os.environ[SPARK_HOME_ENV]) / "bin" / "spark-class"
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.origin:
        raise LocalClusterError("pyspark is not installed: the local backend needs it")
    return Path(spec.origin).parent / "bin" / "spark-class"


def spark_submit() -> Path:
    """pyspark's ``bin/spark-submit``."""
    return spark_class().with_name("spark-submit")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ProcessRecord:
    """A process we started: pid plus its start time, so a reused pid is never killed."""

    name: str
    pid: int
    create_time: float

    def process(self) -> psutil.Process | None:
        """The live process, or None when it has exited (or the pid was reused)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) < 0.01 and proc.is_running():
                return proc if proc.status() != psutil.STATUS_ZOMBIE else None
        except psutil.Error:
            pass
        return None


@dataclass
class LocalCluster:
    """A local cluster's state (``cluster.json`` in its state dir)."""

    cluster_id: str
    state_dir: str
    master_port: int = 0
    master_webui_port: int = 0
    worker_memory: str = "2g"
    processes: list[ProcessRecord] = field(default_factory=list)
    dag_id: str = ""
    run_id: str = ""

    @property
    def master_url(self) -> str:
        """``spark://127.0.0.1:<port>``."""
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def path(self) -> Path:
        """The state dir."""
        return Path(self.state_dir)

    @contextlib.contextmanager
    def locked(self) -> Iterator[LocalCluster]:
        """Hold the cluster's state lock (``cluster.lock``) and yield its state as on disk now:
        the dates of a range run submit their steps to one cluster at once."""
        with (self.path / "cluster.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield LocalCluster.load(self.cluster_id, self.path.parent)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def save(self) -> None:
        """Write ``cluster.json`` (atomically)."""
        tmp = self.path / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(self.path / STATE_FILE)

    @classmethod
    def load(cls, cluster_id: str, base: Path | None = None) -> LocalCluster:
        """Read the state of ``cluster_id`` (under ``base``, default :func:`state_base`);
        :class:`LocalClusterError` if there is none."""
        path = (base or state_base()) / cluster_id / STATE_FILE
        if not path.exists():
            raise LocalClusterError(f"cluster_id: no local cluster {cluster_id!r} ({path} missing)")
        data = json.loads(path.read_text())
        data["processes"] = [ProcessRecord(**p) for p in data["processes"]]
        return cls(**data)

    def process_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of every process of this cluster: tagged, loopback only."""
        return {
            **os.environ,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.path / "logs"),
            "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
            "SPARK_HOME": str(spark_class().parent.parent),
            CLUSTER_TAG_ENV: self.cluster_id,
            **(extra or {}),
        }

    def launch(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> ProcessRecord:
        """Start ``command`` detached (own session) with its output in ``logs/<name>.log``."""
        log_path = self.path / "logs" / f"{name}.log"
        with log_path.open("ab") as log_file:
            proc = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=self.path,
                start_new_session=True,
            )
        record = ProcessRecord(name, proc.pid, psutil.Process(proc.pid).create_time())
        self.processes.append(record)
        self.save()
        return record

    def master_status(self) -> dict | None:
        """The master's JSON status (``/json/``), or None while it does not answer."""
        url = f"http://127.0.0.1:{self.master_webui_port}/json/"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response)
        except OSError:
            return None

    def is_running(self) -> bool:
        """Whether the master and every worker are alive and the workers are registered."""
        daemons = [p for p in self.processes if p.name == "master" or p.name.startswith("worker")]
        if not daemons or any(p.process() is None for p in daemons):
            return False
        status = self.master_status()
        if not status:
            return False
        return status.get("aliveworkers", 0) >= len(daemons) - 1

    def live_processes(self) -> list[ProcessRecord]:
        """The recorded processes that are still alive."""
        return [p for p in self.processes if p.process() is not None]

    def running_steps(self) -> list[str]:
        """Ids of the steps whose spark-submit is still alive."""
        return [p.name for p in self.live_processes() if p.name.startswith("step-")]


def recorded_clusters(base: Path | None = None) -> list[LocalCluster]:
    """Every cluster with a state dir under ``base`` (default :func:`state_base`), by id."""
    base = base or state_base()
    if not base.is_dir():
        return []
    clusters = []
    for state_file in sorted(base.glob(f"*/{STATE_FILE}")):
        with contextlib.suppress(LocalClusterError, ValueError, TypeError, KeyError):
            clusters.append(LocalCluster.load(state_file.parent.name, base))
    return clusters


def start_cluster(
    cluster_id: str,
    *,
    workers: int = 1,
    worker_cores: int = 2,
    worker_memory: str = "2g",
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    dag_id: str = "",
    run_id: str = "",
    idle_timeout: float | None = None,
) -> LocalCluster:
    """Start (or find running) the cluster ``cluster_id``: a master and ``workers`` workers.

    Idempotent: a running cluster with this id is returned as is; a broken one (a process died)
    is stopped and started afresh. ``env`` is added to every process's environment (the workers
    pass it on to their executors: S3 endpoint and credentials). ``dag_id``/``run_id`` name the
    DAG run the cluster belongs to; with ``idle_timeout`` (seconds) a watchdog stops the cluster
    once it has had no running step for that long.
    """
    try:
        existing = LocalCluster.load(cluster_id)
        if existing.is_running():
            # a retry after a crash between the workers' start and the watchdog's: adopt it too
            if idle_timeout:
                ensure_watchdog(existing, idle_timeout, existing.process_env(env))
            return existing
        stop_cluster(existing)
    except LocalClusterError:
        pass
    state_dir = state_base() / cluster_id
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(
        cluster_id, str(state_dir), free_port(), free_port(), worker_memory,
        dag_id=dag_id, run_id=run_id,
    )  # fmt: skip
    cluster.save()
    process_env = cluster.process_env(env)
    try:
        cluster.launch(
            "master",
            [str(spark_class()), "org.apache.spark.deploy.master.Master",
             "--host", "127.0.0.1", "--port", str(cluster.master_port),
             "--webui-port", str(cluster.master_webui_port)],
            process_env,
        )  # fmt: skip
        for index in range(workers):
            work_dir = state_dir / f"work-{index}"
            work_dir.mkdir(exist_ok=True)
            cluster.launch(
                f"worker-{index}",
                [str(spark_class()), "org.apache.spark.deploy.worker.Worker",
                 "--host", "127.0.0.1", "--port", "0", "--webui-port", str(free_port()),
                 "--cores", str(worker_cores), "--memory", worker_memory,
                 "--work-dir", str(work_dir), cluster.master_url],
                process_env,
            )  # fmt: skip
        _wait_for(cluster.is_running, timeout, f"{workers} worker(s) registered with the master")
        if idle_timeout:
            ensure_watchdog(cluster, idle_timeout, process_env)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def watchdog_command(
    cluster: LocalCluster, idle_timeout: float, poll: float | None = None
) -> list[str]:
    """The command line that guards ``cluster`` (:mod:`emr_inference.local.watchdog`, run as a
    script: it must not depend on ``emr_inference`` being importable by name)."""
    poll = poll if poll is not None else min(WATCHDOG_POLL_SECONDS, max(idle_timeout / 4, 0.5))
    script = Path(__file__).with_name("watchdog.py")
    return [sys.executable, str(script), cluster.state_dir, str(idle_timeout), str(poll)]


def ensure_watchdog(cluster: LocalCluster, idle_timeout: float, env: Mapping[str, str]) -> None:
    """Start the cluster's idle watchdog unless one is alive (a cluster must never be left
    without one: nothing else stops it if its Airflow does not come back)."""
    if any(p.name == "watchdog" for p in cluster.live_processes()):
        return
    cluster.launch("watchdog", watchdog_command(cluster, idle_timeout), env)


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise LocalClusterError(f"timed out after {timeout:.0f}s waiting for {what}")


def submitted_step_name(cluster: LocalCluster, step_id: str) -> str | None:
    """The ``--name`` a step was submitted with (from its ``command.json``), if it has one."""
    path = cluster.path / "steps" / step_id / "command.json"
    try:
        command = json.loads(path.read_text())
        return command[command.index("--name") + 1]
    except (OSError, ValueError, IndexError):
        return None


def submit_step(
    cluster: LocalCluster,
    *,
    name: str,
    py_files: Path,
    entry_point: Path,
    arguments: Sequence[str],
    env: Mapping[str, str] | None = None,
    conf: Mapping[str, str] | None = None,
) -> str:
    """Launch ``spark-submit`` for the cluster, detached; return the step id.

    ``conf`` becomes ``--conf key=value`` options (an EMR pipeline's spark-defaults when the
    local backend emulates its cluster); without ``spark.executor.memory`` in it, an executor
    takes all of its worker's memory.

    The wrapper ``sh -c`` writes the exit code to ``steps/<id>/exit_code`` when spark-submit ends,
    the driver log goes to ``steps/<id>/driver.log``, the command line to
    ``steps/<id>/command.json``. Arguments are passed as a list (no shell
    parsing of their values); ``env`` carries credentials, never the command line.
    """
    with cluster.locked() as current:  # a step id and a process record per step, whoever else
        step_id = _start_step(current, name, py_files, entry_point, arguments, env, conf)
    cluster.processes[:] = current.processes
    return step_id


def _start_step(
    current: LocalCluster,
    name: str,
    py_files: Path,
    entry_point: Path,
    arguments: Sequence[str],
    env: Mapping[str, str] | None,
    conf: Mapping[str, str] | None,
) -> str:
    """Launch the step under the cluster's state lock; see :func:`submit_step`."""
    step_id = next_step_id(current)
    step_dir = current.path / "steps" / step_id
    step_dir.mkdir(parents=True, exist_ok=False)
    conf = {"spark.executor.memory": current.worker_memory, **(conf or {})}
    conf["spark.local.dir"] = str(step_dir / "tmp")
    command = [
        str(spark_submit()), "--master", current.master_url, "--name", name,
        *(option for key, value in conf.items() for option in ("--conf", f"{key}={value}")),
        "--py-files", str(py_files), str(entry_point), *arguments,
    ]  # fmt: skip
    wrapper = [
        "/bin/sh", "-c",
        '"$@" > driver.log 2>&1; echo $? > exit_code.tmp && mv exit_code.tmp exit_code',
        "step", *command,
    ]  # fmt: skip
    (step_dir / "command.json").write_text(json.dumps(command, indent=1))  # what the step ran
    log_path = step_dir / "driver.log"
    with log_path.open("ab"):
        pass
    proc = subprocess.Popen(
        wrapper,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=current.process_env(env),
        cwd=step_dir,
        start_new_session=True,
    )
    current.processes.append(
        ProcessRecord(step_id, proc.pid, psutil.Process(proc.pid).create_time())
    )
    current.save()
    return step_id


def next_step_id(cluster: LocalCluster) -> str:
    """``step-NNN`` after the highest step on disk: a cluster started again under the same id (a
    cleared run) keeps the earlier incarnation's step folders, logs included."""
    numbers = [
        int(path.name.removeprefix("step-"))
        for path in (cluster.path / "steps").glob("step-*")
        if path.name.removeprefix("step-").isdigit()
    ]
    return f"step-{max(numbers, default=0) + 1:03d}"


@dataclass(frozen=True)
class StepStatus:
    """``state`` is RUNNING, COMPLETED or FAILED; ``exit_code`` is set once it ended."""

    state: str
    exit_code: int | None
    log_path: Path


def step_status(cluster: LocalCluster, step_id: str) -> StepStatus:
    """The state of a step from its exit code file and its wrapper process."""
    step_dir = cluster.path / "steps" / step_id
    log_path = step_dir / "driver.log"
    exit_file = step_dir / "exit_code"
    if exit_file.exists():
        code = int(exit_file.read_text().strip())
        return StepStatus("COMPLETED" if code == 0 else "FAILED", code, log_path)
    record = next((p for p in cluster.processes if p.name == step_id), None)
    if record is None:
        raise LocalClusterError(f"step_id: no step {step_id!r} on cluster {cluster.cluster_id}")
    if record.process() is not None:
        return StepStatus("RUNNING", None, log_path)
    if exit_file.exists():  # it finished between the two checks
        return step_status(cluster, step_id)
    return StepStatus("FAILED", None, log_path)  # killed before it could record an exit code


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ("" if it does not exist)."""
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 64 * 1024))
        return b"\n".join(handle.read().splitlines()[-lines:]).decode(errors="replace")


def tagged_processes(cluster_id: str) -> list[psutil.Process]:
    """Every live process whose environment carries this cluster's tag."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.pid != os.getpid()
                and proc.environ().get(CLUSTER_TAG_ENV) == cluster_id
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def live_cluster_tags() -> set[str]:
    """The cluster tags carried by live processes (one pass over the process table)."""
    tags = set()
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if (
                tag := proc.environ().get(CLUSTER_TAG_ENV)
            ) and proc.status() != psutil.STATUS_ZOMBIE:
                tags.add(tag)
    return tags


def kill_processes(records: Sequence[ProcessRecord], timeout: float = 15) -> None:
    """SIGTERM the process groups and process trees of ``records``; SIGKILL what is left."""
    victims: dict[int, psutil.Process] = {}
    for record in records:
        if (proc := record.process()) is not None:
            # the tree is taken before any signal: orphans lose their parent link
            for member in [proc, *proc.children(recursive=True)]:
                victims[member.pid] = member
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for record in records:
            _signal_group(record.pid, sig)
        for proc in victims.values():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        _, alive = psutil.wait_procs(list(victims.values()), timeout=timeout)
        victims = {p.pid: p for p in alive}
        if not victims:
            return


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (start_new_session made each launch a leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_step(cluster: LocalCluster, step_id: str) -> None:
    """Kill a step's spark-submit, its driver and everything they started."""
    kill_processes([p for p in cluster.processes if p.name == step_id])


def stop_cluster(cluster: LocalCluster) -> None:
    """Stop every process of the cluster (steps first, then workers, then the master).

    Afterwards no process carrying the cluster's tag may be left (PySpark daemons leave their
    parent's process group, so the tag is what finds them); :class:`LocalClusterError` otherwise.
    The calling process is spared (the watchdog stops its own cluster).
    """
    order = sorted(
        (p for p in cluster.processes if p.pid != os.getpid()),
        key=lambda p: (p.name == "master", p.name.startswith("worker")),
    )
    kill_processes(order)
    leftovers = tagged_processes(cluster.cluster_id)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=10)
    if left := [p.pid for p in tagged_processes(cluster.cluster_id)]:
        raise LocalClusterError(f"cluster {cluster.cluster_id}: processes {left} survived SIGKILL")
