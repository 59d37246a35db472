"""`make airflow` (emr_inference_tools/demo/run_airflow.py) for real: it comes up, its banner is
right, and
Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from emr_inference_tools.airflow_env import ADMIN_USER, REPO_ROOT, simple_auth_passwords_file
from emr_inference_tools.demo.run_airflow import seeded_dates
from emr_inference_tools.local_s3 import LocalS3, free_port
from emr_inference_tools.process_group import reap_group

pytestmark = pytest.mark.slow


def _wait_for_line(log: Path, text: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert process.poll() is None, f"run_airflow exited early:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no {text!r} in {timeout}s:\n{log.read_text()[-4000:]}"
        time.sleep(1)


def test_make_airflow_serves_the_api_and_ctrl_c_stops_everything(tmp_path: Path):
    home, log = tmp_path / "home", tmp_path / "run_airflow.log"
    api_port, s3_port = free_port(), free_port()
    command = [sys.executable, "-m", "emr_inference_tools.demo.run_airflow"]
    args = ["--home", str(home), "--port", str(api_port), "--s3-port", str(s3_port)]
    args += ["--seed-days", "1", "--images", "10"]
    with open(log, "wb") as output:
        # Its own session, like a shell job: the test sends "Ctrl-C" to it alone.
        process = subprocess.Popen(
            command + args, cwd=REPO_ROOT, stdout=output, stderr=output, start_new_session=True
        )
    try:
        _wait_for_line(log, "Airflow is up.", process, timeout=240)
        started = psutil.Process(process.pid).children(recursive=True)
        password_file = simple_auth_passwords_file(home)
        assert str(password_file) in log.read_text()
        password = json.loads(password_file.read_text())[ADMIN_USER]
        token = requests.post(
            f"http://127.0.0.1:{api_port}/auth/token",
            json={"username": ADMIN_USER, "password": password},
            timeout=30,
        )
        assert token.status_code == 201, token.text
        # The demo model and yesterday's demo images are there to be processed.
        s3 = LocalS3(f"http://127.0.0.1:{s3_port}").client()
        (yesterday,) = seeded_dates(1)
        images = s3.list_objects_v2(Bucket="demo-images", Prefix=f"images/dt={yesterday}/")
        assert images["KeyCount"] >= 10
        assert s3.list_objects_v2(Bucket="demo-models", Prefix="digits/")["KeyCount"] == 3

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0
    finally:
        reap_group(process, timeout=0)

    assert "Stopped Airflow and the local S3 server." in log.read_text()
    left = [child for child in started if child.is_running() and child.status() != "zombie"]
    assert left == [], [child.cmdline() for child in left]
