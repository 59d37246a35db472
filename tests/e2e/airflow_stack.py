"""A production-shaped Airflow 3 for end-to-end tests: real processes, PostgreSQL, REST API.

:func:`airflow_stack` starts, in a temporary directory:

* a throwaway PostgreSQL 15 cluster (``initdb`` + ``pg_ctl``, run as user ``postgres`` when we are
  root, unix socket inside the temp dir, loopback TCP on a free port, no fsync);
* ``airflow db migrate`` against it;
* ``airflow api-server``, ``airflow scheduler`` (LocalExecutor), ``airflow dag-processor`` and
  ``airflow triggerer``, each its own process group, all with the environment of
  :func:`emr_inference_tools.airflow_env.airflow_env` plus the stack's own settings (free ports,
  shared JWT
  secret, scheduled runs off so only what a test triggers runs);

and yields an :class:`AirflowStack`, a small client of the public REST API (``/api/v2``)
authenticated with a JWT from the simple auth manager (``POST /auth/token``). On exit every
process and the database are stopped and the directory is removed.

Typical use::

    with airflow_stack(dags_folder, s3_endpoint_url) as stack:
        run = stack.trigger("my_dag", conf={"x": 1}, logical_date="2026-11-22T00:00:00Z")
        assert stack.wait_for_run("my_dag", run["dag_run_id"])["state"] == "success"
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from emr_inference_tools.airflow_env import (
    ADMIN_USER,
    airflow_env,
    is_healthy,
    simple_auth_passwords_file,
)
from emr_inference_tools.local_s3 import free_port
from emr_inference_tools.process_group import reap_group, signal_group

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
LOG_TAIL_LINES = 80


class AirflowApiError(RuntimeError):
    """A non-2xx answer of the Airflow REST API; ``detail`` is the server's message."""

    def __init__(self, method: str, path: str, status: int, detail: Any):
        self.status = status
        self.detail = detail
        super().__init__(f"{method} {path} -> HTTP {status}: {detail}")


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _isoformat(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError(f"datetime {value!r} must be timezone-aware")
    return value.isoformat()


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1:``port``."""

    data_dir: Path
    port: int
    log_file: Path
    database: str = "airflow"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the Airflow database."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{self.database}"

    @staticmethod
    def _run_as_owner(args: list[str]) -> None:
        # PostgreSQL refuses to run as root; as root we run it as the `postgres` user.
        user = "postgres" if os.geteuid() == 0 else None
        done = subprocess.run(args, user=user, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    @classmethod
    def start(cls, root: Path, log_file: Path) -> Postgres:
        """initdb + pg_ctl start: data and unix socket under ``root``, log to ``log_file``."""
        server = cls(data_dir=root / "pgdata", port=free_port(), log_file=log_file)
        socket_dir = root / "pgsocket"
        socket_dir.mkdir()
        if os.geteuid() == 0:
            for directory in (root, socket_dir, log_file.parent):
                shutil.chown(directory, "postgres")
        options = (
            f"-p {server.port} -k {socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        cls._run_as_owner(
            ["initdb", "-D", str(server.data_dir), "-U", "postgres", "--auth=trust", "--no-sync"]
        )
        cls._run_as_owner(
            ["pg_ctl", "-D", str(server.data_dir), "-l", str(server.log_file), "-o", options]
            + ["-w", "-t", "60", "start"]
        )
        server._create_database()
        return server

    def _create_database(self) -> None:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            connection.close()

    def stop(self) -> None:
        """Fast shutdown (disconnects clients)."""
        self._run_as_owner(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])


@dataclass
class AirflowStack:
    """A running Airflow and a REST client for it. Build it with :func:`airflow_stack`."""

    root: Path
    env: dict[str, str]
    base_url: str
    password: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    token: str | None = None
    session: requests.Session = field(default_factory=requests.Session)

    # -- processes -------------------------------------------------------------------------

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def start_component(self, name: str) -> None:
        """Start ``airflow <name>`` in its own process group, output to ``logs/<name>.log``."""
        with open(self.logs_dir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                ["airflow", name],
                env=self.env,
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, timeout: float = 20.0) -> None:
        """Stop every component: SIGTERM all process groups, then wait (SIGKILL after timeout)."""
        self.session.close()  # no idle keep-alive connection for the api-server to wait on
        for process in self.processes.values():
            signal_group(process, signal.SIGTERM)
        for process in self.processes.values():
            reap_group(process, timeout)

    def log_tails(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of every process log, for failure reports."""
        return "\n".join(
            f"===== {path.name} (last {lines} lines) =====\n{_tail(path, lines)}"
            for path in sorted(self.logs_dir.glob("*.log"))
        )

    def wait_until_healthy(self, timeout: float) -> None:
        """Poll ``/api/v2/monitor/health`` until the database and every component is healthy."""
        deadline = time.monotonic() + timeout
        health: Any = "no answer"
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"airflow {name} exited with code {process.returncode}\n{self.log_tails()}"
                    )
            try:
                reply = self.session.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
                health = reply.json()
                if is_healthy(health):
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(
            f"Airflow not healthy within {timeout:.0f}s (last health: {health})\n{self.log_tails()}"
        )

    # -- REST API --------------------------------------------------------------------------

    def login(self) -> str:
        """Get a JWT from the simple auth manager (``POST /auth/token``) and use it from now on."""
        response = self.session.post(
            f"{self.base_url}/auth/token",
            json={"username": ADMIN_USER, "password": self.password},
            timeout=30,
        )
        if response.status_code != 201:
            raise AirflowApiError("POST", "/auth/token", response.status_code, response.text)
        self.token = response.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        return self.token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2<path>``; return the decoded JSON, raise :class:`AirflowApiError`."""
        url = f"{self.base_url}/api/v2{path}"
        response = self.session.request(method, url, timeout=30, **kwargs)
        if not response.ok:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise AirflowApiError(method, path, response.status_code, detail)
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 90.0) -> dict:
        """Wait until the dag-processor has serialized ``dag_id``; fail fast on import errors."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.api("GET", f"/dags/{dag_id}")
            except AirflowApiError as error:
                if error.status != 404:
                    raise
            import_errors = self.api("GET", "/importErrors")["import_errors"]
            if import_errors:
                raise RuntimeError(f"DAG files failed to import: {import_errors}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAG {dag_id!r} not parsed within {timeout:.0f}s")
            time.sleep(0.5)

    def unpause(self, dag_id: str) -> dict:
        """Unpause ``dag_id`` (runs of a paused DAG stay queued), after waiting for it to exist."""
        self.wait_for_dag(dag_id)
        return self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        logical_date: datetime | str | None = None,
        run_id: str | None = None,
    ) -> dict:
        """Unpause ``dag_id`` and trigger a manual run; returns the run (``dag_run_id``, ...)."""
        self.unpause(dag_id)
        body: dict[str, Any] = {"logical_date": _isoformat(logical_date), "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def get_run(self, dag_id: str, run_id: str) -> dict:
        """One DAG run."""
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``{task_id: state}`` of a run (mapped tasks: one entry per ``task_id[map_index]``)."""
        instances = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {
            ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]": ti[
                "state"
            ]
            for ti in instances["task_instances"]
        }

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300.0) -> dict:
        """Poll a run until it is ``success`` or ``failed`` and return it (timeout: task states)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(dag_id, run_id)
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {dag_id}/{run_id} still {run['state']} after {timeout:.0f}s; "
                    f"tasks: {self.task_states(dag_id, run_id)}"
                )
            time.sleep(1.0)

    def xcom(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        key: str = "return_value",
        map_index: int = -1,
    ) -> Any:
        """A task's XCom value, deserialized (a mapped task's: of instance ``map_index``)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        params = {"deserialize": "true", "map_index": str(map_index)}
        return self.api("GET", path, params=params)["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task attempt's log as text (one line per structured log event)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        content = self.api("GET", path, params={"full_content": "true"})["content"]
        return "\n".join(
            event.get("event", "") if isinstance(event, dict) else str(event) for event in content
        )

    def create_backfill(
        self,
        dag_id: str,
        from_date: datetime | str,
        to_date: datetime | str,
        conf: Mapping[str, Any] | None = None,
        max_active_runs: int = 1,
        reprocess_behavior: str = "none",
    ) -> dict:
        """Unpause ``dag_id`` and create a backfill (``POST /api/v2/backfills``); returns it."""
        self.unpause(dag_id)
        body = {
            "dag_id": dag_id,
            "from_date": _isoformat(from_date),
            "to_date": _isoformat(to_date),
            "dag_run_conf": dict(conf or {}),
            "max_active_runs": max_active_runs,
            "reprocess_behavior": reprocess_behavior,
        }
        return self.api("POST", "/backfills", json=body)

    def wait_for_backfill(self, backfill: Mapping[str, Any], timeout: float = 600.0) -> list[dict]:
        """Wait until ``backfill`` completes; return its runs (all terminal) by logical date."""
        deadline = time.monotonic() + timeout
        query = {
            "run_type": "backfill",
            "logical_date_gte": backfill["from_date"],
            "logical_date_lte": backfill["to_date"],
            "order_by": "logical_date",
            "limit": 100,
        }
        while True:
            done = self.api("GET", f"/backfills/{backfill['id']}")["completed_at"] is not None
            runs = self.api("GET", f"/dags/{backfill['dag_id']}/dagRuns", params=query)["dag_runs"]
            if done and all(run["state"] in TERMINAL_RUN_STATES for run in runs):
                return runs
            if time.monotonic() > deadline:
                states = {run["dag_run_id"]: run["state"] for run in runs}
                raise TimeoutError(f"backfill {backfill['id']} unfinished ({timeout}s): {states}")
            time.sleep(1.0)


def _stack_settings(root: Path, database_url: str, api_port: int) -> dict[str, str]:
    """Settings that make this stack production-shaped, isolated and quick on a small machine."""
    base_url = f"http://127.0.0.1:{api_port}"
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        # No async PostgreSQL driver (asyncpg) is pinned here; only the API's streaming
        # `dagRuns/{id}/wait` endpoint needs the async engine, and the harness polls instead.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": "",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        # Every component must sign/verify the same JWTs and API session cookies.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        # Log servers of the scheduler (LocalExecutor tasks) and the triggerer: free ports, so
        # several stacks (or a developer's Airflow) can run side by side.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        # Only runs a test asks for: no scheduled runs when a test unpauses a scheduled DAG.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
            simple_auth_passwords_file(root / "airflow-home")
        ),
    }


@contextmanager
def airflow_stack(
    dags_folder: Path,
    s3_endpoint_url: str,
    extra_env: Mapping[str, str] | None = None,
    startup_timeout: float = 180.0,
) -> Iterator[AirflowStack]:
    """Start a whole Airflow (PostgreSQL + four components) on ``dags_folder``; stop it on exit.

    ``s3_endpoint_url`` is what the ``aws_default`` connection and ``AWS_ENDPOINT_URL_S3`` point
    at; ``extra_env`` overrides any setting (e.g. ``AIRFLOW__CORE__PARALLELISM``).
    """
    root = Path(tempfile.mkdtemp(prefix="airflow-stack-"))
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        (root / "logs").mkdir()
        postgres = Postgres.start(root, log_file=root / "logs" / "postgres.log")
        cleanup.callback(postgres.stop)

        home = root / "airflow-home"
        home.mkdir()
        api_port = free_port()
        env = airflow_env(
            s3_endpoint_url,
            home=home,
            dags_folder=dags_folder,
            extra={**_stack_settings(root, postgres.url, api_port), **(extra_env or {})},
        )
        password = secrets.token_urlsafe(16)
        simple_auth_passwords_file(home).write_text(json.dumps({ADMIN_USER: password}) + "\n")
        stack = AirflowStack(
            root=root, env=env, base_url=f"http://127.0.0.1:{api_port}", password=password
        )
        cleanup.callback(stack.stop)

        with open(stack.logs_dir / "db-migrate.log", "wb") as log:
            command = ["airflow", "db", "migrate"]
            migrate = subprocess.run(command, env=env, cwd=root, stdout=log, stderr=log)
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed\n{stack.log_tails()}")
        for name in COMPONENTS:
            stack.start_component(name)
        stack.wait_until_healthy(startup_timeout)
        stack.login()
        yield stack
