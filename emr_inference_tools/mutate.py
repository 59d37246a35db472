"""Mutation testing of the modules that carry the contract and the hot path (``make mutate``).

A thin wrapper around mutmut 3 (configured in pyproject's ``[tool.mutmut]``). mutmut names a
mutant after its file's path (``plugins/emr_inference/publish.py`` ->
``plugins.emr_inference.publish``), but the tests import the packages through pytest's
``pythonpath`` (``emr_inference.publish``), so every mutant would come out "no tests". This
wrapper strips the two source roots from mutmut's names before running it, then prints the
score per module and the surviving mutants.

Usage::

    .venv/bin/python -m emr_inference_tools.mutate                      # every configured module
    .venv/bin/python -m emr_inference_tools.mutate batch_inference.batching emr_inference.publish
    .venv/bin/python -m emr_inference_tools.mutate --report             # only the report of the
    last run
    .venv/bin/python -m emr_inference_tools.mutate --show NAME           # the diff of one mutant

Runs one test process at a time (``--max-children 1``): the machine is shared. Results are kept
in ``mutants/`` (git-ignored) and reused: mutmut re-runs only the mutants of functions that
changed, so after adding a test, delete ``mutants/`` (``--fresh``) to re-check every survivor.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

import mutmut.__main__ as mutmut_main
import mutmut.mutation.file_mutation as mutmut_file_mutation
import mutmut.utils.format_utils as mutmut_format
from mutmut.mutation.data import SourceFileMutationData
from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parents[1]
#: Folders on pytest's pythonpath that hold the packages; not part of a module's name.
SOURCE_ROOTS = ("plugins", "spark_jobs")
#: Outcomes that count as the tests detecting the mutant.
DETECTED = {"killed", "timeout", "segfault", "caught by type check"}

_mutant_name_from_path = mutmut_format.get_mutant_name


def mutant_name(relative_source_path: Path, function_name: str) -> str:
    """mutmut's mutant name, with the source root (``plugins.``, ``spark_jobs.``) removed, so
    that it matches the ``__module__`` the trampolines see at run time."""
    name = _mutant_name_from_path(relative_source_path, function_name)
    for root in SOURCE_ROOTS:
        if name.startswith(root + "."):
            return name[len(root) + 1 :]
    return name


def install_name_fix() -> None:
    """Make every mutmut module that imported ``get_mutant_name`` use :func:`mutant_name`."""
    for module in (mutmut_format, mutmut_main, mutmut_file_mutation):
        # the ignore: the loop types each module as ModuleType, which declares no such name
        module.get_mutant_name = mutant_name  # type: ignore[attr-defined]


def module_of(path: Path) -> str:
    """``batch_inference.batching`` for ``spark_jobs/batch_inference/batching.py``."""
    parts = list(path.with_suffix("").parts)
    if parts and parts[0] in SOURCE_ROOTS:
        parts = parts[1:]
    return ".".join(parts)


def collect_results() -> dict[str, dict[str, str]]:
    """Per module, every mutant's name and status from mutmut's ``mutants/*.meta`` files."""
    results: dict[str, dict[str, str]] = {}
    for path in mutmut_main.walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        results[module_of(Path(path))] = {
            name: status_by_exit_code[code] for name, code in data.exit_code_by_key.items()
        }
    return results


def undetected(results: dict[str, dict[str, str]], modules: list[str]) -> list[str]:
    """Names of the checked mutants the tests did not detect (in ``modules``, or in all)."""
    return [
        name
        for module, statuses in sorted(results.items())
        if not modules or module in modules
        for name, status in sorted(statuses.items())
        if status not in DETECTED and status != "not checked"
    ]


def sample_unchecked(
    results: dict[str, dict[str, str]], modules: list[str], fraction: float, seed: int
) -> list[str]:
    """A seeded random ``fraction`` (at least one) of each module's unchecked mutants."""
    rng = random.Random(seed)
    chosen = []
    for module, statuses in sorted(results.items()):
        if modules and module not in modules:
            continue
        unchecked = sorted(name for name, status in statuses.items() if status == "not checked")
        if unchecked:
            chosen += rng.sample(unchecked, max(1, math.ceil(fraction * len(unchecked))))
    return chosen


def report(results: dict[str, dict[str, str]], modules: list[str]) -> int:
    """Print the score per module and the survivors; return how many mutants were not detected.

    The score is detected / checked: a run stopped early leaves mutants "not checked", which are
    counted in ``mutants`` but not in the score (run again to check them).
    """
    undetected_total = 0
    print(
        f"\n{'module':40} {'mutants':>7} {'checked':>7} {'killed':>7} {'score':>7}  other outcomes"
    )
    survivors: list[str] = []
    for module, statuses in sorted(results.items()):
        if modules and module not in modules:
            continue
        counts = Counter(statuses.values())
        checked = sum(n for status, n in counts.items() if status != "not checked")
        detected = sum(n for status, n in counts.items() if status in DETECTED)
        score = f"{100 * detected / checked:.1f}%" if checked else "-"
        others = ", ".join(
            f"{n} {status}" for status, n in sorted(counts.items()) if status not in {"killed"}
        )
        print(f"{module:40} {len(statuses):7} {checked:7} {detected:7} {score:>7}  {others}")
        for name, status in sorted(statuses.items()):
            if status not in DETECTED and status != "not checked":
                survivors.append(f"  {status:10} {name}")
                undetected_total += 1
    if survivors:
        print(f"\nnot detected ({len(survivors)}); see one with --show NAME:")
        print("\n".join(survivors))
    return undetected_total


def run_mutmut(arguments: list[str]) -> int:
    """Run mutmut with one moto S3 server shared by every test session (one per mutant), instead
    of each session starting its own (see ``tests/conftest.py``); 0 on success."""
    sys.path.insert(0, str(ROOT))
    from emr_inference_tools.local_s3 import start_local_s3

    server = start_local_s3()
    os.environ["TEST_SHARED_S3_ENDPOINT"] = server.endpoint_url
    # mutmut's own timeout counts CPU time: a mutant that makes a test wait (a waiter polling for
    # a state moto never reaches) would sleep until pyproject's 900 s. A wall-clock limit per
    # test (pytest-timeout reads this before the ini file) fails such a test: a detected mutant.
    os.environ.setdefault("PYTEST_TIMEOUT", "60")
    parent = os.getpid()

    def on_sigterm(signum: int, frame: object) -> None:
        """Stop the S3 server on ``kill`` too (mutmut's forked workers just exit)."""
        if os.getpid() != parent:
            os._exit(128 + signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        mutmut_main.cli(arguments, standalone_mode=False)
    except SystemExit as exc:  # mutmut exits on a setup failure
        return int(exc.code or 0)
    finally:
        server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run mutmut on the configured modules (or the named ones) and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="dotted module names (default: all)")
    parser.add_argument("--report", action="store_true", help="report the last run only")
    parser.add_argument("--fresh", action="store_true", help="delete mutants/ first")
    parser.add_argument("--show", metavar="NAME", help="print the diff of one mutant")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="re-run only the mutants the last run did not detect (after adding tests)",
    )
    parser.add_argument(
        "--sample",
        type=float,
        metavar="FRACTION",
        help="check only this random fraction of each module's unchecked mutants (seeded, so a "
        "rerun picks the same ones); the score is then an estimate from that sample",
    )
    parser.add_argument("--seed", type=int, default=13, help="seed of --sample (13)")
    parser.add_argument("--max-children", type=int, default=1, help="test processes (1)")
    args = parser.parse_args(argv)
    install_name_fix()
    if args.show:
        mutmut_main.cli(["show", args.show], standalone_mode=False)
        return 0
    if args.fresh:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    if not args.report:
        patterns = [f"{module}.*" for module in args.modules]
        if args.survivors or args.sample:
            results = collect_results()
            patterns = undetected(results, args.modules) if args.survivors else []
            if args.sample:
                patterns += sample_unchecked(results, args.modules, args.sample, args.seed)
            if not patterns:
                print("nothing to run")
                return 0
        code = run_mutmut(["run", "--max-children", str(args.max_children), *patterns])
        if code:
            return code
    report(collect_results(), args.modules)
    return 0


if __name__ == "__main__":
    sys.exit(main())
