"""The bootstrap's hash-pinned requirements file (``requirements-emr.txt``) as data.

A pin may carry an environment marker (``urllib3==1.26.20 ; python_version < "3.10"``): which pins
apply depends on the interpreter that installs them. ``pip download --python-version`` does not
evaluate markers for the target interpreter (it uses its own), so whoever prepares files for the
nodes on another Python (the wheelhouse) evaluates them here, for the nodes' version.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass

from packaging.markers import Marker
from packaging.requirements import Requirement


@dataclass(frozen=True)
class Pin:
    """One ``name==version [; marker]`` line and its ``--hash`` options."""

    name: str
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies_to(self, python_version: str, machine: str | None = None) -> bool:
        """Whether the pin is installed by a CPython ``python_version`` (``3.9``) on Linux."""
        if self.marker is None:
            return True
        major_minor = ".".join(python_version.split(".")[:2])
        full = python_version if python_version.count(".") == 2 else major_minor + ".0"
        environment = {
            "python_version": major_minor,
            "python_full_version": full,
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "platform_machine": machine or platform.machine(),
        }
        return self.marker.evaluate(environment)

    def line(self) -> str:
        """The pin as a requirements line without its marker: ``name==version --hash=...``."""
        return " ".join([f"{self.name}=={self.version}", *(f"--hash={h}" for h in self.hashes)])


def logical_lines(text: str) -> Iterator[str]:
    """The requirement lines of ``text``: continuations joined, comments and blanks dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip():
            yield line.strip()
    if pending.strip():
        yield pending.strip()


def parse_pins(text: str) -> list[Pin]:
    """Every pin of a hash-pinned requirements file; ``ValueError`` naming a line that is not
    ``name==version`` (with or without marker)."""
    pins = []
    for line in logical_lines(text):
        words = line.split()
        hashes = tuple(w.removeprefix("--hash=") for w in words if w.startswith("--hash="))
        spec = " ".join(w for w in words if not w.startswith("--hash="))
        requirement = Requirement(spec)
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise ValueError(f"requirements: {line[:80]!r} is not pinned with ==")
        pins.append(Pin(requirement.name, specifiers[0].version, requirement.marker, hashes))
    return pins


def pinned_versions(text: str, python_version: str) -> dict[str, str]:
    """``{lower-case name: version}`` of the pins a CPython ``python_version`` installs."""
    return {
        pin.name.lower(): pin.version for pin in parse_pins(text) if pin.applies_to(python_version)
    }


def requirements_for(text: str, python_version: str, machine: str | None = None) -> str:
    """The requirements file a CPython ``python_version`` installs, markers evaluated: one line a
    pin, hashes kept (what ``pip download --python-version`` needs to fetch the right wheels)."""
    lines = [pin.line() for pin in parse_pins(text) if pin.applies_to(python_version, machine)]
    return "\n".join(lines) + "\n"
