"""The bootstrap's pins as they were before the node twin: one urllib3 2 pin for every Python,
which botocore refuses on the nodes' 3.9 (the defect the twin's tests must keep catching)."""

from __future__ import annotations

from pathlib import Path

from emr_inference.emr.releases import EMR_7_2_0

from emr_inference_tools.node_twin import release_requirements

REQUIREMENTS = release_requirements(EMR_7_2_0)


def write_single_urllib3_2_pin(dest: Path) -> Path:
    """Write today's requirements-emr.txt with its 3.9 urllib3 pin removed and the 3.10+ one
    unmarked to ``dest``; returns ``dest``."""
    lines = REQUIREMENTS.read_text().replace(' ; python_version >= "3.10"', "").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("urllib3==1."))
    dest.write_text("\n".join(lines[:start] + lines[start + 2 :]) + "\n")
    assert "urllib3==2.6.3 \\" in dest.read_text() and "urllib3==1.26.20" not in dest.read_text()
    return dest
