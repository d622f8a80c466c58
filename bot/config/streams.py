"""Load-time checks of replication streams (``services[].replication``, or the ``lag:``
shorthand as one stream): problems that fail the load, and notes that do not.

A stream reads a lag-capable source (``target``: what that source reads, checked by the
backend's ``lag_target_problem``) in its ``unit``; outside seconds, ``warning`` and
``critical`` have no default and are required. Thresholds above the RPO are allowed: they
are a note (``drbot check-config`` prints it, the start logs it as a warning), not an error.
"""
from __future__ import annotations

from typing import Callable

from bot.config.models import Config, ServiceConfig, StreamConfig
from integrations import registry
from integrations.base import LAG, BackendOptions

Loc = tuple[str | int, ...]


def stream_locs(svc: ServiceConfig) -> list[tuple[Loc, StreamConfig]]:
    """(location under the service, stream): ``replication[j]``, or ``lag`` for the shorthand."""
    if svc.replication:
        return [(("replication", j), stream) for j, stream in enumerate(svc.replication)]
    return [(("lag",), stream) for stream in svc.streams()]


def check_streams(config: Config, options: dict[str, BackendOptions], svc: ServiceConfig, loc: Loc,
                  capable: Callable[[str, str], str | None]) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    names: set[str] = set()
    for sub, stream in stream_locs(svc):
        at = loc + sub
        if stream.name in names:
            out.append((at + ("name",), f"stream {stream.name!r} is defined twice in {svc.name}"))
        names.add(stream.name)
        if (msg := capable(stream.source, LAG)):
            out.append((at + ("source",), msg))
        elif stream.source in options:
            cls = registry.backend_class(config.sources[stream.source].kind)
            if (msg := cls.lag_target_problem(options[stream.source], stream.target, stream.unit)):
                out.append((at + ("target",), msg))
        warning, critical = stream.limits(svc.rpo)
        missing = [key for key, level in (("warning", warning), ("critical", critical)) if level is None]
        for key in missing:
            out.append((at + (key,), f"is required for a stream in {stream.unit} (only seconds streams "
                                     f"default to a share of the RPO): write a number of {stream.unit}"))
        if not missing and warning >= critical:
            out.append((at + ("warning",), "warning must be below critical"))
    return out


def stream_notes(config: Config) -> list[tuple[Loc, str]]:
    """A seconds stream whose critical level is above the RPO: allowed, said at load."""
    out: list[tuple[Loc, str]] = []
    for i, svc in enumerate(config.services):
        rpo = svc.rpo.total_seconds()
        for sub, stream in stream_locs(svc):
            if stream.unit != "seconds":
                continue
            warning, critical = stream.limits(svc.rpo)
            if critical > rpo:
                out.append((("services", i) + sub + ("critical",),
                            f"WARNING: critical {secs(critical)} is above the RPO of {secs(rpo)}: "
                            f"{svc.name} stays READY or AT_RISK while a failover would lose more than "
                            f"the RPO (pre-flight still refuses a lag above the RPO)"))
    return out


def secs(seconds: float) -> str:
    """90 -> "1m30s", 45 -> "45s": durations as the config writes them."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"
