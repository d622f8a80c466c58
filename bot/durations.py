"""Durations as people write them in config and chat: ``90s``, ``5m``, ``1h``, ``30d``."""
from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")


class DurationError(ValueError):
    pass


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse ``90s``, ``5m``, ``1h30m``, ``30d``. Bare numbers are refused: a unit is required.
    A timedelta is already a duration (a model built from another model's values)."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise DurationError(f"{text!r} is not a duration (use 5m)")
    if isinstance(text, (int, float)):
        raise DurationError(f"{text!r} has no unit (use {text:g}s or {text:g}m)")
    s = text.strip().lower()
    if not _WHOLE.match(s):
        raise DurationError(f"{text!r} is not a duration (use 5m)")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(s))
    return timedelta(seconds=seconds)


def format_duration(td: timedelta | float | None) -> str:
    """Short human form: ``45s``, ``4m 10s``, ``2h 5m``, ``3d 4h``. None -> ``-``."""
    if td is None:
        return "-"
    total = td.total_seconds() if isinstance(td, timedelta) else float(td)
    if total < 0:
        return "-" + format_duration(-total)
    if total < 10:
        return f"{total:.1f}s".replace(".0s", "s")
    total = int(round(total))
    days, rem = divmod(total, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, seconds = divmod(rem, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    shown = [f"{n}{u}" for n, u in parts if n][:2]
    return " ".join(shown) or "0s"
