"""The job zip is reproducible and the job code stays runnable on EMR's Python 3.9."""

from __future__ import annotations

import ast
import zipfile

from batch_inference.package import ENTRY_POINT, PACKAGE_DIR, build_job_zip, main, package_sources


def test_the_zip_is_byte_for_byte_reproducible(tmp_path):
    (PACKAGE_DIR / "__pycache__").mkdir(exist_ok=True)  # present after any import
    first = build_job_zip(tmp_path / "a" / "batch_inference.zip")
    second = build_job_zip(tmp_path / "b" / "batch_inference.zip")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        infos = archive.infolist()
    assert names == sorted(names)
    assert "batch_inference/cli.py" in names and "batch_inference/__init__.py" in names
    assert not [name for name in names if "__pycache__" in name or not name.endswith(".py")]
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}


def test_the_cli_writes_the_zip_and_main_py_beside_it(tmp_path, capsys):
    assert main(["--output", str(tmp_path / "build" / "batch_inference.zip")]) == 0
    assert (tmp_path / "build" / "main.py").read_bytes() == ENTRY_POINT.read_bytes()
    assert zipfile.ZipFile(tmp_path / "build" / "batch_inference.zip").testzip() is None
    assert "wrote" in capsys.readouterr().out


def test_job_sources_parse_as_python_3_9_and_postpone_annotations():
    # EMR 7.2 runs Python 3.9: no match statements or other newer syntax, and annotations such
    # as `str | None` must never be evaluated at run time. Every file of the zip, subpackages
    # included. A fast first check only: a 3.10+ standard-library name (enum.StrEnum) parses
    # fine; the import of every module on the node twin's 3.9 (test_node_twin.py) catches it.
    for path in [ENTRY_POINT, *package_sources()]:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
        if path.name not in ("__init__.py", "main.py"):
            assert "from __future__ import annotations" in source, path
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "zip":
                assert not any(k.arg == "strict" for k in node.keywords), path  # 3.10+
