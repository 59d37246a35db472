#!/usr/bin/env bash
# EMR bootstrap action: install the Spark job's Python dependencies on every node.
#
# Usage: install_job_deps.sh REQUIREMENTS [PIP ARGS...]
#   REQUIREMENTS  a hashed requirements file (requirements-emr.txt): an s3:// URI (copied with the
#                 AWS CLI that EMR nodes ship) or a local path.
#   PIP ARGS      passed to `pip install` (e.g. --index-url for a private mirror).
# Environment:
#   JOB_PYTHON    the interpreter to install into (default /usr/bin/python3, the one EMR's PySpark
#                 uses). pip runs under sudo when that interpreter's site-packages is not writable.
#
# Every package is pinned and hash-checked (--require-hashes, --only-binary): a tampered or
# unexpected artifact fails the bootstrap, and with it the cluster, instead of running the job.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 REQUIREMENTS [PIP ARGS...] (REQUIREMENTS: s3:// URI or local path)" >&2
    exit 2
fi
requirements_source="$1"
shift
python="${JOB_PYTHON:-/usr/bin/python3}"

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
requirements="$workdir/requirements.txt"
if [[ "$requirements_source" == s3://* ]]; then
    aws s3 cp --only-show-errors "$requirements_source" "$requirements"
else
    cp "$requirements_source" "$requirements"
fi

site_packages="$("$python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
sudo=()
if [[ ! -w "$site_packages" ]]; then
    sudo=(sudo)
fi

echo "Installing job dependencies into $python ($site_packages) from $requirements_source"
"${sudo[@]}" "$python" -m pip install --quiet --disable-pip-version-check --no-input \
    --require-hashes --only-binary=:all: -r "$requirements" "$@"
"$python" -c 'import PIL, boto3; print("job dependencies: pillow", PIL.__version__, "boto3", boto3.__version__)'
