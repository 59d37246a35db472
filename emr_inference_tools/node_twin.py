"""The node twin: the job's Python environment built here exactly as an EMR node builds it.

An EMR release's nodes run their own CPython (emr-7.2.0: 3.9; emr-7.13.0: 3.11) with packages
EMR's applications installed (emr-7.2.0's MXNet and numpy) and Amazon Linux's ``python3-*`` RPMs,
and our bootstrap action (``include/bootstrap/install_job_deps.sh``) makes the job's virtualenv
over that interpreter from the release's hash-pinned requirements (``requirements-emr.txt``,
``requirements-emr-7.13.0.txt``) and the staged wheelhouse. The twin is that, here:

1. ``usr/``: a copy of a CPython of the release's version (``NODE_PYTHON``, else found on PATH or
   in pyenv), a real prefix that stands for the node's ``/usr/bin/python3``, with the release's
   application and system packages installed the way an RPM installs them (``INSTALLER`` = rpm,
   no ``RECORD``: pip cannot remove them);
2. ``wheelhouse/``: the wheels ``stage_job_artifacts`` would stage for the nodes
   (:func:`emr_inference.emr.wheelhouse.download_wheels`);
3. ``venv/``: made by the bootstrap script itself, ``--base-python usr/bin/python3 --wheelhouse
   wheelhouse/`` with no package index;
4. Spark of the release's version (pip's ``pyspark`` distribution, shared by every twin of that
   version) whose ``spark-submit`` and ``spark-class`` the local backend uses instead of its own
   (``EMR_INFERENCE_LOCAL_SPARK_HOME``); Spark puts its own ``pyspark.zip`` on the Python path of
   the driver and the workers, as on EMR.

A twin lives in ``build/node-twin/<release>-<key>/``; the key hashes what decides it (the release's
row, the requirements file, the bootstrap script, the base interpreter's version), so a changed pin
builds a new twin and an unchanged one is reused (``twin.json`` is written last).

``python -m emr_inference_tools.node_twin [--release emr-7.2.0] [--requirements FILE]`` builds it
and prints
what it holds; ``--check-imports`` also imports every module of the job's zip on it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from batch_inference.environment import BASE_PACKAGES, RUNTIME_PACKAGES
from emr_inference.artifacts import bootstrap_files
from emr_inference.emr.releases import DEFAULT_RELEASE, EmrRelease, supported_release
from emr_inference.emr.wheelhouse import download_wheels
from emr_inference.local.cluster import SPARK_HOME_ENV
from emr_inference.pins import pinned_versions

from emr_inference_tools.airflow_env import REPO_ROOT

TWIN_ROOT = REPO_ROOT / "build" / "node-twin"
BOOTSTRAP = REPO_ROOT / "include" / "bootstrap" / "install_job_deps.sh"
NODE_PYTHON_ENV = "NODE_PYTHON"
#: Changes to how a twin is built (this module) that must rebuild existing twins.
RECIPE = "1"
MANIFEST = "twin.json"

Log = Callable[[str], None]


class NodeTwinError(RuntimeError):
    """The twin cannot be built: the message says what is missing and how to get it."""


@dataclass(frozen=True)
class NodeTwin:
    """A built twin: where its interpreters and Spark are, and the versions it was checked at."""

    release: EmrRelease
    root: Path
    spark_home: Path
    versions: Mapping[str, str]

    @property
    def system_python(self) -> Path:
        """The node's ``/usr/bin/python3`` stand-in (never changed by the bootstrap)."""
        return self.root / "usr" / "bin" / "python3"

    @property
    def python(self) -> Path:
        """The job's interpreter, the virtualenv the bootstrap made (the step's PYSPARK_PYTHON)."""
        return self.root / "venv" / "bin" / "python3"

    @property
    def spark_submit(self) -> Path:
        """``spark-submit`` of the release's Spark version."""
        return self.spark_home / "bin" / "spark-submit"

    def spark_env(self) -> dict[str, str]:
        """What makes Spark's driver and Python workers (and the local backend) run on the twin."""
        return {
            "PYSPARK_PYTHON": str(self.python),
            "PYSPARK_DRIVER_PYTHON": str(self.python),
            SPARK_HOME_ENV: str(self.spark_home),
        }

    @property
    def requirements(self) -> Path:
        """The release's bootstrap requirements (what a twin is built from by default)."""
        return release_requirements(self.release)

    def describe(self) -> str:
        """``emr-7.2.0 node twin: Python 3.9.18, Spark 3.5.1, mxnet 1.9.1, ...``."""
        packages = ", ".join(f"{name} {version}" for name, version in self.versions.items())
        return f"{self.release.label} node twin: {packages}"


def release_requirements(release: EmrRelease) -> Path:
    """The hash-pinned requirements file the bootstrap installs on ``release``'s nodes."""
    return bootstrap_files(release.label)["bootstrap_requirements"]


def reported(release: EmrRelease) -> dict[str, str]:
    """distribution -> module of what a twin of ``release`` reports: the runtimes its nodes run
    and the job's other packages."""
    runtimes = {
        name: module
        for runtime in release.runtimes
        for name, module in RUNTIME_PACKAGES[runtime].items()
    }
    return {**runtimes, **BASE_PACKAGES}


def find_node_python(version: str, override_env: str | None = NODE_PYTHON_ENV) -> Path:
    """A CPython ``version`` (``3.9``): ``$NODE_PYTHON`` (``override_env``), else ``python3.9`` on
    PATH, else the newest pyenv ``3.9.*``; :class:`NodeTwinError` saying how to get one when
    there is none."""
    if override_env and os.environ.get(override_env):
        candidates = [Path(os.environ[override_env])]
    else:
        on_path = shutil.which(f"python{version}")
        pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
        installs = sorted(
            pyenv_root.glob(f"{version}.*"),
            key=lambda p: [int(n) if n.isdigit() else 0 for n in p.name.split(".")],
        )
        candidates = [Path(on_path)] if on_path else []
        candidates += [path / "bin" / f"python{version}" for path in reversed(installs)]
    for candidate in candidates:
        if candidate.exists() and interpreter_version(candidate)[:2] == version.split("."):
            return candidate
    tried = ", ".join(map(str, candidates)) or "nothing on PATH or in pyenv"
    raise NodeTwinError(
        f"no CPython {version} for the node twin (tried: {tried}): the EMR nodes run Python "
        f"{version} and the job is tested on it. Install one (`pyenv install {version}`, or your "
        f"OS's python{version} package) or point {NODE_PYTHON_ENV}=/path/to/python{version} at one"
    )


def interpreter_version(python: Path) -> list[str]:
    """``['3', '9', '18']`` for a CPython 3.9.18; ``[]`` when ``python`` does not run."""
    code = "import platform; print(platform.python_version())"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return result.stdout.strip().split(".") if result.returncode == 0 else []


def twin_key(release: EmrRelease, requirements: str, base_version: str) -> str:
    """What decides a twin, hashed: a twin is rebuilt exactly when one of them changes."""
    decided_by = {
        "recipe": RECIPE,
        "release": [release.label, release.python, release.spark],
        "application_packages": dict(release.application_packages),
        "system_packages": dict(release.system_packages),
        "requirements": requirements,
        "bootstrap": BOOTSTRAP.read_text(),
        "base_python": base_version,
    }
    return hashlib.sha256(json.dumps(decided_by, sort_keys=True).encode()).hexdigest()[:16]


def expected_versions(release: EmrRelease, requirements: str) -> dict[str, str]:
    """What the job's interpreter must report: the release's application packages and the pins
    the node's Python installs (markers evaluated for it)."""
    pins = pinned_versions(requirements, release.python)
    wanted = {**pins, **release.application_packages}
    return {name: wanted[name] for name in reported(release)}


def copy_interpreter(python: Path, prefix: Path) -> Path:
    """A copy of ``python``'s installation at ``prefix`` (its binary and standard library, an
    empty site-packages): a system interpreter whose site-packages the twin may fill."""
    code = "import os, sys; print(os.path.dirname(os.__file__)); print(os.path.realpath("
    code += "getattr(sys, '_base_executable', sys.executable)))"
    stdlib, binary = subprocess.check_output([str(python), "-c", code], text=True).split()
    ignored = ["site-packages", "test", "tests", "__pycache__", "idlelib", "tkinter", "turtledemo"]
    target = prefix / "lib" / Path(stdlib).name
    shutil.copytree(stdlib, target, ignore=shutil.ignore_patterns(*ignored), symlinks=True)
    (target / "site-packages").mkdir()
    (prefix / "bin").mkdir(parents=True)
    copy = prefix / "bin" / "python3"
    shutil.copy2(binary, copy)
    return copy


def site_packages(python: Path) -> Path:
    """The ``purelib`` folder of ``python``."""
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return Path(subprocess.check_output([str(python), "-c", code], text=True).strip())


def rpm_install(python: Path, base_python: Path, packages: Mapping[str, str]) -> None:
    """Install ``packages`` into ``python``'s site-packages as an RPM does: real wheels (pip of
    ``base_python``, no dependencies), then ``INSTALLER`` = rpm and no ``RECORD`` file."""
    if not packages:  # a release whose applications and RPMs add nothing to this interpreter
        return
    site = site_packages(python)
    specs = [f"{name}=={version}" for name, version in packages.items()]
    run(
        [str(base_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "--target", str(site), *specs],
        "installing the release's system packages",
    )  # fmt: skip
    for info in site.glob("*.dist-info"):
        (info / "INSTALLER").write_text("rpm\n")
        (info / "RECORD").unlink(missing_ok=True)


def install_spark(version: str, base_python: Path, log: Log) -> Path:
    """pip's ``pyspark`` ``version`` (Spark's distribution: jars, scripts, ``pyspark.zip``) in
    ``build/node-twin/spark-<version>/``, once; returns its Spark home."""
    home = TWIN_ROOT / f"spark-{version}"
    spark_home = home / "pyspark"
    if (home / ".complete").exists():
        return spark_home
    log(f"installing Spark {version} (pyspark {version} from the package index, once)")
    shutil.rmtree(home, ignore_errors=True)
    run(
        [str(base_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--target", str(home), f"pyspark=={version}"],
        f"installing pyspark {version}",
    )  # fmt: skip
    (home / ".complete").write_text(version + "\n")
    return spark_home


def run(command: list[str], what: str, env: Mapping[str, str] | None = None) -> str:
    """Run ``command``; :class:`NodeTwinError` with its output when it fails."""
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=1800
    )
    if result.returncode != 0:
        raise NodeTwinError(
            f"{what} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}"
        )
    return result.stdout


def job_versions(python: Path, packages: Mapping[str, str]) -> dict[str, str]:
    """The Python version and the versions of ``packages`` (distribution -> module) as
    ``python`` imports them: each module imported, its version read as a worker reports it
    (the distribution's metadata, else the module's ``__version__``; OpenVINO's ``__version__``
    carries its build, ``2026.4.1-22982-...``)."""
    code = (
        "import importlib, importlib.metadata as metadata, json, platform, sys\n"
        "found = {'python': platform.python_version()}\n"
        "for dist, module in json.loads(sys.argv[1]).items():\n"
        "    imported = importlib.import_module(module)\n"
        "    try:\n"
        "        found[dist] = metadata.version(dist)\n"
        "    except metadata.PackageNotFoundError:\n"
        "        found[dist] = imported.__version__\n"
        "print(json.dumps(found))\n"
    )
    return json.loads(run([str(python), "-c", code, json.dumps(packages)], "reading versions"))


def build_twin(
    release_label: str = DEFAULT_RELEASE,
    requirements: Path | None = None,
    *,
    log: Log = print,
    under: Path = TWIN_ROOT,
) -> NodeTwin:
    """The twin of ``release_label`` with ``requirements`` (default: the release's): built, or
    found already built, in a folder of ``under`` (Spark is always shared, in :data:`TWIN_ROOT`)."""
    release = supported_release(release_label)
    requirements = requirements or release_requirements(release)
    base_python = find_node_python(release.python)
    base_version = ".".join(interpreter_version(base_python))
    text = requirements.read_text()
    root = under / f"{release.label}-{twin_key(release, text, base_version)}"
    with build_lock():  # two builds at once (two rehearsals) would write the same folders
        spark_home = install_spark(release.spark, base_python, log)
        node = NodeTwin(release, root, spark_home, {})
        return _built_twin(node, requirements, base_python, base_version, log)


@contextlib.contextmanager
def build_lock(root: Path = TWIN_ROOT) -> Iterator[None]:
    """Hold ``root/.lock`` (default ``build/node-twin/.lock``, an exclusive ``flock``) while
    building."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _built_twin(
    twin: NodeTwin, requirements: Path, base_python: Path, base_version: str, log: Log
) -> NodeTwin:
    """``twin`` with its versions, built unless its ``twin.json`` says it already is."""
    release, root, spark_home, text = (
        twin.release,
        twin.root,
        twin.spark_home,
        requirements.read_text(),
    )
    if (root / MANIFEST).exists():
        versions = json.loads((root / MANIFEST).read_text())["versions"]
        return NodeTwin(release, root, spark_home, versions)
    log(f"building the {release.label} node twin in {root} from {base_python} ({base_version})")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    system_python = copy_interpreter(base_python, root / "usr")
    rpm_install(
        system_python,
        base_python,
        {**release.system_packages, **release.application_packages},
    )
    wheelhouse = root / "wheelhouse"
    wheels = download_wheels(requirements, wheelhouse, release.python)
    log(f"wheelhouse: {len(wheels)} wheels for Python {release.python}")
    bootstrap = run(
        ["bash", str(BOOTSTRAP), "--python", str(twin.python), "--base-python",
         str(system_python), "--requirements", str(requirements), "--wheelhouse", str(wheelhouse)],
        f"the bootstrap action ({BOOTSTRAP.name}) on the {release.label} twin",
        env={"PIP_INDEX_URL": "http://127.0.0.1:9/no-index-on-a-node"},
    )  # fmt: skip
    log(bootstrap.strip().splitlines()[-1])
    versions = check_versions(twin.python, release, text)
    (root / MANIFEST).write_text(json.dumps({"release": release.label, "versions": versions}))
    return NodeTwin(release, root, spark_home, versions)


def check_versions(python: Path, release: EmrRelease, requirements: str) -> dict[str, str]:
    """The versions ``python`` reports, :class:`NodeTwinError` if any is not the node's."""
    versions = job_versions(python, reported(release))
    expected = {"python": release.python, **expected_versions(release, requirements)}
    wrong = [
        f"{name} {versions.get(name)} (expected {wanted})"
        for name, wanted in expected.items()
        if not (versions.get(name) == wanted or versions.get(name, "").startswith(wanted + "."))
    ]
    if wrong:
        raise NodeTwinError(f"{python} is not a {release.label} node: {', '.join(wrong)}")
    return versions


def check_job_imports(twin: NodeTwin, archive: Path | None = None) -> list[str]:
    """Import every module of the job's zip (``archive``, default: built from the sources now;
    subpackages included) on the twin's interpreter, as Spark's driver and workers would (the zip
    on the path); returns the modules imported, or :class:`NodeTwinError` naming each module that
    fails and why."""
    from batch_inference.package import build_job_zip

    code = (
        "import importlib, json, sys, traceback, zipfile\n"
        "names = sorted(n[:-3].replace('/', '.').removesuffix('.__init__')\n"
        "               for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.endswith('.py'))\n"
        "failed = {}\n"
        "for name in names:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed[name] = traceback.format_exception_only(type(error), error)[-1].strip()\n"
        "print(json.dumps({'imported': names, 'failed': failed}))\n"
    )
    with tempfile.TemporaryDirectory(prefix="job-zip-") as folder:
        archive = archive or build_job_zip(Path(folder) / "batch_inference.zip")
        out = run(
            [str(twin.python), "-c", code, str(archive)],
            "importing the job's modules",
            env={"PYTHONPATH": str(archive)},
        )
    result = json.loads(out)
    if result["failed"]:
        lines = [f"  {name}: {why}" for name, why in result["failed"].items()]
        raise NodeTwinError(
            f"{len(result['failed'])} of {len(result['imported'])} job modules do not import on "
            f"the {twin.release.label} node's Python {twin.versions['python']}:\n"
            + "\n".join(lines)
        )
    return result["imported"]


def node_test_tools(twin: NodeTwin, requirements: Path) -> Path:
    """A folder of the test tools in ``requirements`` for the twin's Python (``--target``, no
    dependencies resolved: the file pins them all), beside the twin, never in it; built once per
    file. Put it on ``PYTHONPATH`` to run tests on the twin."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    folder = twin.root.parent / f"test-tools-{twin.release.python}-{digest}"
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    run(
        [str(twin.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "--target", str(folder), "-r", str(requirements)],
        f"installing the test tools of {requirements.name} for the twin",
    )  # fmt: skip
    (folder / ".complete").write_text(digest + "\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", default=DEFAULT_RELEASE, help="EMR release label")
    parser.add_argument(
        "--requirements", type=Path, default=None, help="default: the release's bootstrap pins"
    )
    parser.add_argument(
        "--check-imports", action="store_true", help="import every job module on the twin"
    )
    args = parser.parse_args(argv)
    try:
        twin = build_twin(args.release, args.requirements, log=lambda m: print(f"[twin] {m}"))
        print(f"[twin] {twin.describe()}")
        print(f"[twin] job interpreter {twin.python}; Spark {twin.spark_home}")
        if args.check_imports:
            print(f"[twin] {len(check_job_imports(twin))} job modules import on the twin")
    except (NodeTwinError, KeyError) as error:
        print(f"[twin] FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
