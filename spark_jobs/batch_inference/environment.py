"""The driver's first check: does this interpreter have the job's packages, at the versions the
cluster was built with? A node whose bootstrap installed into another interpreter than
``PYSPARK_PYTHON`` fails here, with the missing package named, instead of in every task."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import platform
import re
import sys
from collections.abc import Sequence

from batch_inference.errors import JobFailed

#: distribution name -> module the job imports, whatever runs the model
BASE_PACKAGES = {"numpy": "numpy", "pillow": "PIL", "boto3": "boto3"}
#: what each ``--runtime`` needs besides
RUNTIME_PACKAGES = {
    "mxnet": {"mxnet": "mxnet"},
    "onnxruntime": {"onnxruntime": "onnxruntime"},
    "openvino": {"openvino": "openvino"},
}
#: every package a worker reports (the runtimes' too: what ran, and what was there)
JOB_PACKAGES = {name: module for p in RUNTIME_PACKAGES.values() for name, module in p.items()}
JOB_PACKAGES.update(BASE_PACKAGES)
#: what ``--engine predict_batch_udf`` needs besides (Spark's Arrow path)
UDF_PACKAGES = {"pandas": "pandas", "pyarrow": "pyarrow"}


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (its metadata, else its module's
    ``__version__``), or None when it cannot be imported."""
    module = JOB_PACKAGES.get(distribution, distribution)
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:  # e.g. installed without metadata
        return getattr(importlib.import_module(module), "__version__", "unknown")


@functools.lru_cache(maxsize=1)
def worker_environment() -> dict[str, str | None]:
    """This interpreter's Python version and the versions of the job's packages (None: missing),
    as a Python worker reports them in its metrics parts: what really ran, whatever the cluster
    was configured with."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for distribution in JOB_PACKAGES:
        found[distribution] = installed_version(distribution)
    return found


def same_release(have: str, wanted: str) -> bool:
    """``have`` is ``wanted`` or a build of it (``1.9.1``, ``1.9.1.post0``, ``1.9.1-amzn-0``), not
    another release (``1.9.10``)."""
    return have == wanted or re.match(re.escape(wanted) + r"[^0-9]", have) is not None


def check_environment(
    requirements: Sequence[str] = (), engine: str = "rdd", runtime: str = "mxnet"
) -> dict[str, str]:
    """Versions of the job's packages (and ``engine``'s and ``runtime``'s); :class:`JobFailed`
    naming every missing package and every ``NAME==VERSION`` of ``requirements`` that this
    interpreter does not have."""
    found: dict[str, str] = {}
    problems = []
    why = {name: f" (needed by --runtime {runtime})" for name in RUNTIME_PACKAGES[runtime]}
    if engine == "predict_batch_udf":
        why.update({name: " (needed by --engine predict_batch_udf)" for name in UDF_PACKAGES})
    for distribution in [*BASE_PACKAGES, *why]:
        version = installed_version(distribution)
        if version is None:
            problems.append(f"{distribution} is missing{why.get(distribution, '')}")
        else:
            found[distribution] = version
    for requirement in requirements:
        name, _, wanted = requirement.partition("==")
        have = found.get(name.lower()) or installed_version(name.lower())
        if have is not None and not same_release(have, wanted):
            problems.append(f"{name} is {have}, expected {wanted}")
    if problems:
        raise JobFailed(
            f"the job's interpreter {sys.executable} lacks what the job needs: "
            f"{'; '.join(problems)} (check the bootstrap action's log and cluster.python)"
        )
    return found
