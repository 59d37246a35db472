#!/usr/bin/env bash
# EMR bootstrap action: the Spark job's own Python environment on every node.
#
# Usage: install_job_deps.sh --python JOB_PYTHON --requirements REQUIREMENTS
#                            [--base-python BASE_PYTHON] [--wheelhouse WHEELHOUSE] [PIP ARGS...]
#   --python        the job's interpreter, <venv>/bin/python3 (cluster.python; the step's
#                   PYSPARK_PYTHON): the virtualenv is created there
#   --requirements  the hashed requirements file (requirements-emr.txt): s3:// URI or local path
#   --base-python   the node's system interpreter (cluster.base_python; the release's: emr-7.2.0
#                   /usr/bin/python3, where EMR's MXNet application installed mxnet and numpy,
#                   emr-7.13.0 /usr/bin/python3.11)
#   --wheelhouse    a folder of the pinned wheels (s3:// prefix or local path): install from it
#                   with no package index, for nodes without PyPI
#   PIP ARGS        passed to `pip install` (e.g. --index-url for a private mirror)
#
# Why a virtualenv: on Amazon Linux 2023 the system Python's packages (urllib3, six,
# python-dateutil, jmespath, ...) belong to RPMs. pip cannot uninstall them ("Cannot uninstall X
# ... RECORD file not found ... installed by rpm"), so installing other versions into
# /usr/bin/python3 fails the bootstrap and the cluster. The virtualenv is made with
# --system-site-packages: it still imports EMR's mxnet and numpy, while our pins land in (and win
# in) the virtualenv, and no system package is touched. A missing pip is bootstrapped into the
# virtualenv (ensurepip, else a pip wheel from the wheelhouse, else the python3-pip RPM).
#
# Every package is pinned and hash-checked (--require-hashes, --only-binary): a tampered or
# unexpected artifact fails the bootstrap, and with it the cluster, instead of running the job.
set -euo pipefail

usage() {
    echo "usage: $0 --python JOB_PYTHON --requirements REQUIREMENTS [--base-python PATH]" \
        "[--wheelhouse DIR_OR_S3_PREFIX] [PIP ARGS...]" >&2
    exit 2
}

job_python="" requirements_source="" base_python="/usr/bin/python3" wheelhouse_source=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) job_python="${2:-}"; shift 2 || usage ;;
        --requirements) requirements_source="${2:-}"; shift 2 || usage ;;
        --base-python) base_python="${2:-}"; shift 2 || usage ;;
        --wheelhouse) wheelhouse_source="${2:-}"; shift 2 || usage ;;
        *) break ;;
    esac
done
[[ -n "$job_python" && -n "$requirements_source" ]] || usage
[[ "$job_python" == /*/bin/python* ]] || { echo "--python must be <venv>/bin/python3" >&2; exit 2; }
venv="$(dirname "$(dirname "$job_python")")"

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

fetch() {  # fetch SOURCE DEST: an s3:// object or prefix (AWS CLI on EMR nodes) or a local path
    if [[ "$1" == s3://*/ ]]; then
        aws s3 cp --only-show-errors --recursive "$1" "$2"
    elif [[ "$1" == s3://* ]]; then
        aws s3 cp --only-show-errors "$1" "$2"
    elif [[ -d "$1" ]]; then
        cp -R "$1/." "$2"
    else
        cp "$1" "$2"
    fi
}

requirements="$workdir/requirements.txt"
fetch "$requirements_source" "$requirements"
source_args=()
if [[ -n "$wheelhouse_source" ]]; then
    mkdir -p "$workdir/wheels"
    fetch "${wheelhouse_source%/}/" "$workdir/wheels"
    source_args=(--no-index --find-links "$workdir/wheels")
fi

sudo=()
parent="$(dirname "$venv")"
mkdir -p "$parent" 2>/dev/null || sudo mkdir -p "$parent"
if [[ ! -w "$parent" ]]; then
    sudo=(sudo)
fi

echo "Creating the job's virtualenv $venv from $base_python (system site-packages visible)"
if ! "${sudo[@]}" "$base_python" -m venv --system-site-packages "$venv" 2>"$workdir/venv.err"; then
    cat "$workdir/venv.err" >&2
    echo "venv with pip failed (no ensurepip?): creating it without pip" >&2
    "${sudo[@]}" "$base_python" -m venv --system-site-packages --without-pip "$venv"
fi
if ! "$job_python" -m pip --version >/dev/null 2>&1; then
    pip_wheel="$(find "$workdir/wheels" -maxdepth 1 -name 'pip-*.whl' 2>/dev/null | head -n 1)"
    if [[ -n "$pip_wheel" ]]; then
        echo "Installing pip into $venv from the wheelhouse"
        "${sudo[@]}" "$job_python" "$pip_wheel/pip" install --quiet --no-index "$pip_wheel"
    else
        echo "No pip for $job_python: installing the python3-pip RPM"
        sudo dnf install -y -q python3-pip
    fi
fi

echo "Installing job dependencies into $venv from $requirements_source"
# Not --quiet: when the pins conflict, pip names the conflict ("botocore X depends on urllib3<1.27")
# only at its normal verbosity, and this log is where an operator looks.
"${sudo[@]}" "$job_python" -m pip install --progress-bar off --disable-pip-version-check --no-input \
    --require-hashes --only-binary=:all: "${source_args[@]}" -r "$requirements" "$@"
# The job's packages must import; its model runtime is EMR's mxnet (emr-7.2.0) or the pinned
# onnxruntime (emr-7.13.0): at least one of them.
"$job_python" -c '
import importlib, boto3, numpy, PIL
runtimes = []
for name in ("mxnet", "onnxruntime"):
    try:
        runtimes.append(f"{name} {importlib.import_module(name).__version__}")
    except ImportError:
        pass
if not runtimes:
    raise SystemExit("job environment: neither mxnet nor onnxruntime imports")
print("job environment:", ", ".join(runtimes), "numpy", numpy.__version__,
      "pillow", PIL.__version__, "boto3", boto3.__version__)'
