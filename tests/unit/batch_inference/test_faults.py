"""The test-only fault hook is inert unless asked, strict about its spec, and precise in aim."""

from __future__ import annotations

import pytest
from batch_inference import faults


class WorkerExit(BaseException):
    """Raised instead of ``os._exit`` so that a hit is observable and this process survives."""


@pytest.fixture
def exits(monkeypatch) -> list[int]:
    """The exit codes ``inject`` asked for; ``os._exit`` and ``logging.shutdown`` are faked and
    the Spark attempt number is 0 (a first attempt)."""
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise WorkerExit(code)

    monkeypatch.setattr(faults.os, "_exit", fake_exit)
    monkeypatch.setattr(faults.logging, "shutdown", lambda: None)
    monkeypatch.setattr(faults, "_attempt", lambda: 0)
    return codes


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_nothing_happens_without_the_variable(monkeypatch, exits, value):
    if value is None:
        monkeypatch.delenv(faults.FAULT_ENV, raising=False)
    else:
        monkeypatch.setenv(faults.FAULT_ENV, value)
    for point in (faults.AT_START, faults.AFTER_ROWS_PART):
        for partition in (0, 1, 7):
            assert faults.inject(point, partition) is None  # no exception, no exit
    assert exits == []


def test_fail_hits_partitions_from_k_at_their_start_only(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "fail:2")
    faults.inject(faults.AT_START, 1)
    faults.inject(faults.AFTER_ROWS_PART, 3)
    with pytest.raises(faults.InjectedFault, match=r"partition 3: injected failure \(.*=fail:2\)"):
        faults.inject(faults.AT_START, 3)


def test_exit_spares_other_partitions_and_points(monkeypatch, exits):
    monkeypatch.setenv(faults.FAULT_ENV, "exit:1")
    for partition in (0, 2):
        assert faults.inject(faults.AFTER_ROWS_PART, partition) is None
    assert faults.inject(faults.AT_START, 1) is None
    assert exits == []
    with pytest.raises(WorkerExit):  # the aimed point and partition: the worker dies ...
        faults.inject(faults.AFTER_ROWS_PART, 1)
    assert exits == [faults.EXIT_CODE]
    monkeypatch.setattr(faults, "_attempt", lambda: 1)
    assert faults.inject(faults.AFTER_ROWS_PART, 1) is None  # ... on its first attempt only
    assert exits == [faults.EXIT_CODE]


@pytest.mark.parametrize("spec", ["crash:1", "exit", "fail:x"])
def test_a_bad_spec_names_the_variable(monkeypatch, spec):
    monkeypatch.setenv(faults.FAULT_ENV, spec)
    with pytest.raises(ValueError, match=f"{faults.FAULT_ENV} must be exit:K or fail:K"):
        faults.inject(faults.AT_START, 0)
