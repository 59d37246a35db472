"""The idle guard of a local cluster: the local twin of EMR's ``AutoTerminationPolicy``.

:func:`emr_inference.local.cluster.start_cluster` launches this module as one more detached,
tagged process of the cluster (``watchdog`` in ``cluster.json``), so :func:`stop_cluster` ends it
with the rest. It polls the cluster's state and, once no step has been running for
``idle_timeout`` seconds (counted from its start, or from the last time it saw a step running),
stops every other process of the cluster and exits; its log is ``logs/watchdog.log``. It also
exits when the master and workers are gone (someone else stopped the cluster) or the state dir
disappeared.

Run as a script: ``python watchdog.py STATE_DIR IDLE_TIMEOUT [POLL_SECONDS]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

PLUGINS_DIR = Path(__file__).resolve().parents[2]


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {message}", flush=True)


def guard(state_dir: Path, idle_timeout: float, poll: float) -> str:
    """Watch the cluster in ``state_dir`` until it is stopped (by us or anyone); say why."""
    from emr_inference.local.cluster import LocalCluster, LocalClusterError, stop_cluster

    last_busy = time.monotonic()
    while True:
        time.sleep(poll)
        try:
            cluster = LocalCluster.load(state_dir.name, state_dir.parent)
        except LocalClusterError:
            return "state dir gone"
        names = [p.name for p in cluster.live_processes()]
        if not any(name == "master" or name.startswith("worker") for name in names):
            return "master and workers are gone"
        if cluster.running_steps():
            last_busy = time.monotonic()
            continue
        idle = time.monotonic() - last_busy
        if idle >= idle_timeout:
            _log(f"cluster {cluster.cluster_id} (dag_id={cluster.dag_id!r}, "
                 f"run_id={cluster.run_id!r}) has had no running step for {idle:.0f}s "
                 f"(idle timeout {idle_timeout:g}s): stopping it")  # fmt: skip
            stop_cluster(cluster)
            return "stopped by the idle timeout"


def main(argv: list[str]) -> int:
    """Entry point: ``STATE_DIR IDLE_TIMEOUT [POLL_SECONDS]``."""
    from emr_inference.local.cluster import WATCHDOG_POLL_SECONDS

    state_dir, idle_timeout = Path(argv[0]), float(argv[1])
    poll = float(argv[2]) if len(argv) > 2 else WATCHDOG_POLL_SECONDS
    _log(f"watching {state_dir}: idle timeout {idle_timeout:g}s, poll {poll:g}s")
    _log(f"watchdog exits: {guard(state_dir, idle_timeout, poll)}")
    return 0


if __name__ == "__main__":
    sys.path[0] = str(PLUGINS_DIR)  # import emr_inference as a package, not this file's folder
    sys.exit(main(sys.argv[1:]))
