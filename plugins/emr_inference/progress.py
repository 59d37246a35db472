"""Progress lines for the step sensors: images done / total, rate and ETA."""

from __future__ import annotations

import datetime as dt


def describe_progress(done: int, total: int, elapsed_seconds: float) -> str:
    """``"1200/5000 images (24.0%), 40 images/s, ETA 0:01:35"`` (rate and ETA once known)."""
    percent = 100.0 * done / total if total else 100.0
    line = f"{done}/{total} images ({percent:.1f}%)"
    if done <= 0 or elapsed_seconds <= 0:
        return f"{line}, rate not known yet"
    rate = done / elapsed_seconds
    eta = dt.timedelta(seconds=round(max(total - done, 0) / rate))
    return f"{line}, {rate:.3g} images/s, ETA {eta}"
