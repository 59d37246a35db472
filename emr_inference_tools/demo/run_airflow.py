"""``make airflow``: this project's DAGs in a whole local Airflow 3, talking to a local S3.

Starts moto's S3 server on 127.0.0.1 (port 9090, ``--s3-port`` or ``DEMO_S3_PORT``), then
``airflow standalone`` (api-server, scheduler, dag-processor and triggerer; LocalExecutor, SQLite)
with the environment of :mod:`emr_inference_tools.airflow_env` (AIRFLOW_HOME ``.airflow/``,
``aws_default``
pointing at the local S3). Once Airflow reports healthy it prints the UI URL, where the admin
password is and example REST calls. Ctrl-C stops Airflow and the S3 server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from emr_inference_tools.airflow_env import (
    ADMIN_USER,
    DEFAULT_AIRFLOW_HOME,
    airflow_env,
    aws_connection,
    is_healthy,
    simple_auth_passwords_file,
)
from emr_inference_tools.demo.run_demo import seed_demo
from emr_inference_tools.local_s3 import start_local_s3
from emr_inference_tools.process_group import reap_group, signal_group

DEFAULT_S3_PORT = 9090
DEFAULT_API_PORT = 8080
STOP_TIMEOUT_SECONDS = 30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--s3-port",
        type=int,
        default=int(os.environ.get("DEMO_S3_PORT", DEFAULT_S3_PORT)),
        help="port of the local S3 server on 127.0.0.1 (env DEMO_S3_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("DEMO_AIRFLOW_PORT", DEFAULT_API_PORT)),
        help="port of the Airflow UI and REST API (env DEMO_AIRFLOW_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=DEFAULT_AIRFLOW_HOME,
        help="AIRFLOW_HOME: SQLite database, logs, generated password (default %(default)s)",
    )
    parser.add_argument(
        "--seed-days",
        type=int,
        default=3,
        help="demo image partitions to upload: the last N days before today (default %(default)s)",
    )
    parser.add_argument(
        "--images", type=int, default=100, help="demo images per partition (default %(default)s)"
    )
    return parser.parse_args(argv)


def seeded_dates(days: int, today: dt.date | None = None) -> list[str]:
    """The ``days`` partition dates before ``today`` (UTC), oldest first: what a nightly run and a
    short backfill of the demo DAG will look for."""
    today = today or dt.datetime.now(dt.UTC).date()
    return [(today - dt.timedelta(days=n)).isoformat() for n in range(days, 0, -1)]


def standalone_settings(port: int) -> dict[str, str]:
    """One API server worker on loopback ``port`` (tasks find its execution API there), few task
    slots: sized for a laptop."""
    base_url = f"http://127.0.0.1:{port}"
    return {
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
    }


def banner(base_url: str, s3_endpoint: str, password_file: Path, dates: list[str]) -> str:
    """What to tell the user once Airflow is up: UI, password, S3, seeded data, REST calls."""
    python = sys.executable
    return f"""
Airflow is up.
  UI and REST API  {base_url}   (user: {ADMIN_USER})
  admin password   in {password_file}
  local S3         {s3_endpoint}   (aws_default; AWS_ENDPOINT_URL_S3={s3_endpoint})
  demo images      s3://demo-images/images/dt=<date>/ for {", ".join(dates)}

Example REST calls:
  PASSWORD=$({python} -c "import json; print(json.load(open('{password_file}'))['{ADMIN_USER}'])")
  TOKEN=$(curl -s -X POST {base_url}/auth/token -H 'Content-Type: application/json' \\
    -d "{{\\"username\\": \\"{ADMIN_USER}\\", \\"password\\": \\"$PASSWORD\\"}}" \\
    | {python} -c "import json, sys; print(json.load(sys.stdin)['access_token'])")
  curl -s -H "Authorization: Bearer $TOKEN" {base_url}/api/v2/dags
  curl -s -X PATCH -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
    {base_url}/api/v2/dags/demo -d '{{"is_paused": false}}'
  curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
    {base_url}/api/v2/dags/demo/dagRuns \\
    -d '{{"logical_date": null, "conf": {{"partition_date": "{dates[-1]}"}}}}'

The command blocks of docs/OPERATIONS.md use these variables:
  export AIRFLOW_URL={base_url} AIRFLOW_HOME={password_file.parent}
  export AIRFLOW_CONN_AWS_DEFAULT='{aws_connection(s3_endpoint)}'

Press Ctrl-C to stop Airflow and the S3 server.
"""


def wait_until_healthy(base_url: str, process: subprocess.Popen, timeout: float = 300) -> bool:
    """Poll the health endpoint until every component is healthy; False if Airflow exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=5) as reply:
                if is_healthy(json.load(reply)):
                    return True
        except (OSError, ValueError):
            pass
        time.sleep(1)
    return False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings = standalone_settings(args.port)
    base_url = settings["AIRFLOW__API__BASE_URL"]
    # Ctrl-C and `kill` both stop everything (and an inherited "ignore SIGINT", as in a
    # background job, must not reach `airflow standalone`, which stops on SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    s3 = start_local_s3(args.s3_port)
    process: subprocess.Popen | None = None
    try:
        dates = seeded_dates(args.seed_days)
        seed_demo(s3, dates, args.images, bad_fraction=0.03)
        print(f"Local S3 (moto) on {s3.endpoint_url}; starting Airflow in {home} ...", flush=True)
        env = airflow_env(s3.endpoint_url, home=home, extra=settings)
        # Its own process group, so stopping it reaches every component and worker it forked.
        process = subprocess.Popen(["airflow", "standalone"], env=env, start_new_session=True)
        if wait_until_healthy(base_url, process):
            password_file = simple_auth_passwords_file(home)
            print(banner(base_url, s3.endpoint_url, password_file, dates), flush=True)
        else:
            print("Airflow did not become healthy; see its output above.", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if process is not None:
            # `airflow standalone` stops its components on SIGINT, as on a terminal's Ctrl-C.
            signal_group(process, signal.SIGINT)
            reap_group(process, STOP_TIMEOUT_SECONDS)
        s3.stop()
        print("Stopped Airflow and the local S3 server.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
