"""Read every source a report needs, concurrently, each cut at its own timeout.

A source that raises becomes a FAILED reading with the reason; one that does not answer
in time becomes a TIMEOUT reading. Nothing here blocks without a deadline, and one slow
source never delays the others beyond its own timeout.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from bot.readings import Reading, Status
from integrations.base import Backend, HealthReading, IntegrationError, LagReading, Target

log = logging.getLogger(__name__)
MAX_WORKERS = 128


@dataclass(frozen=True)
class Probe:
    """One read: which source, what about, and which capability."""

    key: tuple
    source: str
    kind: str  # 'lag' | 'health' | 'traffic' | 'writer' | 'replication'
    target: Target
    history: bool = False


class Collector:
    def __init__(self, backends: dict[str, Backend]):
        self.backends = backends

    def read(self, probes: list[Probe]) -> dict[tuple, Reading]:
        """All readings, keyed by ``Probe.key``. Returns within the largest timeout."""
        if not probes:
            return {}
        pool = ThreadPoolExecutor(max_workers=min(len(probes), MAX_WORKERS), thread_name_prefix="drbot-read")
        try:
            started = time.monotonic()
            futures: list[tuple[Probe, Future]] = [(p, pool.submit(self._read_one, p)) for p in probes]
            out = {}
            for probe, future in futures:
                timeout = self._timeout(probe.source)
                remaining = max(0.0, started + timeout - time.monotonic())
                try:
                    out[probe.key] = future.result(timeout=remaining)
                except TimeoutError:
                    future.cancel()
                    out[probe.key] = Reading(probe.kind, probe.source, Status.TIMEOUT,
                                             error=f"no answer within {timeout:g}s",
                                             sandbox=self._sandbox(probe.source))
            return out
        finally:
            # Threads stuck in a hung call are left to their client's own timeout.
            pool.shutdown(wait=False, cancel_futures=True)

    def _timeout(self, source: str) -> float:
        backend = self.backends.get(source)
        return float(getattr(backend.options, "timeout", 5.0)) if backend else 0.0

    def _sandbox(self, source: str) -> bool:
        backend = self.backends.get(source)
        return bool(backend and backend.sandbox)

    def _read_one(self, probe: Probe) -> Reading:
        backend = self.backends.get(probe.source)
        if backend is None:
            return Reading(probe.kind, probe.source, Status.MISSING, error=f"no source named {probe.source!r}")
        t0 = time.monotonic()

        def elapsed() -> float:
            return round((time.monotonic() - t0) * 1000, 1)

        try:
            if probe.kind == "lag":
                return _from_lag(probe.source, backend.read_lag(probe.target, history=probe.history),
                                 backend.sandbox, elapsed())
            if probe.kind in ("traffic", "writer"):
                read = backend.active_region if probe.kind == "traffic" else backend.writer_region
                return Reading(probe.kind, probe.source, Status.OK, observed_at=datetime.now(timezone.utc),
                               region=read(probe.target), detail=backend.title or backend.kind,
                               sandbox=backend.sandbox, elapsed_ms=elapsed())
            if probe.kind == "replication":
                rep = backend.replication(probe.target)
                writers = rep.writers
                return Reading(probe.kind, probe.source, Status.OK, observed_at=_aware(rep.observed_at),
                               region=writers[0] if len(writers) == 1 else None, replication=rep,
                               detail=backend.title or backend.kind, sandbox=backend.sandbox, elapsed_ms=elapsed())
            return _from_health(probe.source, backend.check_health(probe.target), backend.sandbox, elapsed())
        except IntegrationError as e:
            return Reading(probe.kind, probe.source, Status.FAILED, error=str(e), sandbox=backend.sandbox,
                           elapsed_ms=elapsed())
        except Exception as e:  # a bug or an SDK surprise must not take the report down
            log.exception("source %s failed unexpectedly", probe.source)
            return Reading(probe.kind, probe.source, Status.FAILED, error=f"{type(e).__name__}: {e}",
                           sandbox=backend.sandbox, elapsed_ms=elapsed())


def _from_lag(source: str, r: LagReading, sandbox: bool, elapsed_ms: float) -> Reading:
    return Reading("lag", source, Status.OK, observed_at=_aware(r.observed_at), lag_seconds=r.seconds,
                   replicating=r.replicating, detail=r.detail, history=r.history, sandbox=sandbox,
                   elapsed_ms=elapsed_ms)


def _from_health(source: str, r: HealthReading, sandbox: bool, elapsed_ms: float) -> Reading:
    return Reading("health", source, Status.OK, observed_at=_aware(r.observed_at), healthy=r.healthy,
                   detail=r.detail, sandbox=sandbox, elapsed_ms=elapsed_ms)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)

