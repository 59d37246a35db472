"""Build the job's ``--py-files`` zip reproducibly: same sources, same bytes.

``python -m batch_inference.package --output build/batch_inference.zip`` writes the zip and copies
the entry point ``main.py`` beside it. The Airflow side calls :func:`build_job_zip` and stages both
files; this module imports nothing heavy.
"""

from __future__ import annotations

import argparse
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ENTRY_POINT = PACKAGE_DIR.parent / "main.py"
"""The ``main.py`` that ``spark-submit`` runs (shipped beside the zip)."""

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest timestamp a zip entry can hold
_FILE_MODE = 0o644


def package_sources() -> list[Path]:
    """The package's ``.py`` files, sorted (no caches, no compiled files)."""
    return sorted(path for path in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in path.parts)


def build_job_zip(dest: str | Path) -> Path:
    """Write the ``batch_inference`` package to the zip ``dest``; returns its path.

    Entries are sorted, timestamps and permissions fixed, so the bytes depend only on the sources
    (content-addressed staging can use the file's hash).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in package_sources():
            name = f"{PACKAGE_DIR.name}/{path.relative_to(PACKAGE_DIR).as_posix()}"
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100000 | _FILE_MODE) << 16
            info.create_system = 3  # Unix, so external_attr holds the mode
            archive.writestr(info, path.read_bytes())
    tmp.replace(dest)
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: build the zip and copy ``main.py`` beside it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", default="build/batch_inference.zip", help="zip to write (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    archive = build_job_zip(args.output)
    entry_point = archive.parent / ENTRY_POINT.name
    shutil.copyfile(ENTRY_POINT, entry_point)
    print(f"wrote {archive} and {entry_point}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
