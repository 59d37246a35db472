"""The backends a pipeline may name, and the one place that maps a name to its implementation.

Adding a backend is its package (``emr_inference/<name>/``, with a ``backend.py`` defining
``BACKEND``, an object implementing :class:`emr_inference.backend.Backend`) plus one line here.
Backends are imported when first asked for, so parsing a DAG imports only its own backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emr_inference.backend import Backend

#: backend name -> the module whose ``BACKEND`` implements it.
REGISTERED: Mapping[str, str] = {
    "emr": "emr_inference.emr.backend",
    "local": "emr_inference.local.backend",
}


class UnknownBackendError(ValueError):
    """A pipeline or request names a backend that is not registered."""


def check_backend_name(name: str) -> str:
    """``name`` when it is registered; :class:`UnknownBackendError` listing the known ones."""
    if name not in REGISTERED:
        known = ", ".join(sorted(REGISTERED))
        raise UnknownBackendError(f"unknown backend {name!r} (known: {known})")
    return name


def backend_named(name: str) -> Backend:
    """The registered backend called ``name``."""
    backend: Backend = importlib.import_module(REGISTERED[check_backend_name(name)]).BACKEND
    return backend
