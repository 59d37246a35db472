"""The test-only fault hook is inert unless asked, strict about its spec, and precise in aim."""

from __future__ import annotations

import pytest
from batch_inference import faults


def test_nothing_happens_without_the_variable(monkeypatch):
    monkeypatch.delenv(faults.FAULT_ENV, raising=False)
    for point in (faults.AT_START, faults.AFTER_ROWS_PART):
        faults.inject(point, 0)


def test_fail_hits_partitions_from_k_at_their_start_only(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "fail:2")
    faults.inject(faults.AT_START, 1)
    faults.inject(faults.AFTER_ROWS_PART, 3)
    with pytest.raises(faults.InjectedFault, match=r"partition 3: injected failure \(.*=fail:2\)"):
        faults.inject(faults.AT_START, 3)


def test_exit_spares_other_partitions_and_points(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "exit:1")  # a hit would end this test process
    faults.inject(faults.AFTER_ROWS_PART, 0)
    faults.inject(faults.AT_START, 1)


@pytest.mark.parametrize("spec", ["crash:1", "exit", "fail:x"])
def test_a_bad_spec_names_the_variable(monkeypatch, spec):
    monkeypatch.setenv(faults.FAULT_ENV, spec)
    with pytest.raises(ValueError, match=f"{faults.FAULT_ENV} must be exit:K or fail:K"):
        faults.inject(faults.AT_START, 0)
