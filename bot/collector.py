"""Read every source a report needs, concurrently, each cut at its own timeout.

A source that raises becomes a FAILED reading with the reason; one that does not answer
in time becomes a TIMEOUT reading. Nothing here blocks without a deadline, and one slow
source never delays the others beyond its own timeout.

Reads run on one persistent, bounded pool of reader threads (``MAX_WORKERS``), made once
per Collector (``prepare()``, at wiring, starts one per source and makes the HTTP clients)
and shut down by ``close()``. The same read asked again while it is in
flight (two people typing ``/dr status`` at once, the readiness watch during a status)
joins that flight instead of calling the source twice. A caller may also accept a good
reading made up to ``reuse`` seconds ago, but never one older than its probe's
``stale_after``: such a reading is read again, and a reading served again keeps its own
``observed_at``, so its age is shown as it is.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from bot.backup_reading import read_backup
from bot.readings import Reading, Status
from integrations.base import Backend, HealthReading, IntegrationError, LagReading, Target
from integrations.http_client import HttpBackend

log = logging.getLogger(__name__)
MAX_WORKERS = 128


@dataclass(frozen=True)
class Probe:
    """One read: which source, what about, and which capability."""

    key: tuple
    source: str
    kind: str  # 'lag' | 'health' | 'traffic' | 'writer' | 'replication' | 'backup'
    target: Target
    history: bool = False
    stale_after: float | None = None
    """Seconds after ``observed_at`` past which a kept reading is not served again."""
    context: tuple = ()
    """What else an earlier reading must share to be served again (e.g. the regions
    drbot's record says the service runs in: after a move, older readings do not apply)."""

    @property
    def identity(self) -> tuple:
        """Two probes with the same identity make the same call to the same source."""
        return (self.source, self.kind, self.target, self.history, self.context)


@dataclass
class _Flight:
    future: Future
    started: float
    timeout: float


class Collector:
    def __init__(self, backends: dict[str, Backend], max_workers: int = MAX_WORKERS):
        self.backends = backends
        self.monotonic = time.monotonic
        self.max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="drbot-read")
        self._lock = threading.Lock()
        self._flights: dict[tuple, _Flight] = {}
        self._kept: dict[tuple, tuple[float, Reading]] = {}
        self.calls = 0
        """Reads sent to a source since start (for tests and the benchmarks)."""
        self.joined = 0
        """Reads that joined a read already in flight instead of calling the source."""

    def read(self, probes: list[Probe], reuse: float = 0.0, now: datetime | None = None) -> dict[tuple, Reading]:
        """All readings, keyed by ``Probe.key``. Returns within the largest timeout.
        ``reuse``: seconds a good reading already made may be served again (0: read now,
        or join the same read in flight); ``now`` (default: the wall clock) dates that
        reading against the probe's ``stale_after``."""
        if not probes:
            return {}
        now = now or datetime.now(timezone.utc)
        started = self.monotonic()
        out: dict[tuple, Reading] = {}
        waiting: list[tuple[Probe, Future, float]] = []
        go = threading.Event()  # reads start together once all are handed out, not while handing out
        for probe in probes:
            if probe.source not in self.backends:
                out[probe.key] = _missing(probe)
                continue
            kept = self._kept_reading(probe, reuse, now, started)
            if kept is not None:
                out[probe.key] = kept
                continue
            future = self._flight(probe, started, go)
            if future is None:
                out[probe.key] = self._failed(probe, "drbot is stopping: not read")
            else:
                waiting.append((probe, future, started + self._timeout(probe.source)))
        go.set()
        for probe, future, deadline in waiting:
            try:
                out[probe.key] = future.result(timeout=max(0.0, deadline - self.monotonic()))
            except FutureTimeout:
                # the flight goes on (others may join it while it is young); the thread it
                # holds is freed by the client's own timeout
                out[probe.key] = Reading(probe.kind, probe.source, Status.TIMEOUT,
                                         error=f"no answer within {self._timeout(probe.source):g}s",
                                         sandbox=self._sandbox(probe.source))
        return out

    def prepare(self) -> None:
        """At wiring, make what the first report would otherwise make while every source
        waits on it: each HTTP source's client, and one reader thread per source."""
        for backend in self.backends.values():
            if isinstance(backend, HttpBackend):
                backend.client  # noqa: B018 - made on first use
        n = min(len(self.backends), self.max_workers)
        if n:
            all_started = threading.Barrier(n, timeout=5)  # each waiter holds a thread of its own
            for waited in [self._pool.submit(all_started.wait) for _ in range(n)]:
                waited.exception()

    def close(self) -> None:
        """Stop the reader threads (after the reads in flight); later reads fail at once."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def forget(self) -> None:
        """Drop every kept reading (the next read of each source calls it)."""
        with self._lock:
            self._kept.clear()

    # -- flights and kept readings ------------------------------------------------------

    def _kept_reading(self, probe: Probe, reuse: float, now: datetime, at: float) -> Reading | None:
        if reuse <= 0:
            return None
        with self._lock:
            hit = self._kept.get(probe.identity)
        if hit is None or not 0 <= at - hit[0] < reuse:
            return None
        reading = hit[1]
        if probe.stale_after is not None and reading.observed_at is not None \
                and (now - reading.observed_at).total_seconds() >= probe.stale_after:
            return None  # read it again rather than show an old reading while a fresh one may exist
        return reading

    def _flight(self, probe: Probe, at: float, go: threading.Event) -> Future | None:
        """The read in flight for this probe, joined while younger than its timeout, or a
        new one; None when the collector is closed."""
        identity = probe.identity
        with self._lock:
            flight = self._flights.get(identity)
            if flight is not None and not flight.future.done() and at - flight.started < flight.timeout:
                self.joined += 1
                return flight.future
            try:
                future = self._pool.submit(self._read_when, go, probe)
            except RuntimeError:  # shut down
                return None
            self.calls += 1
            flight = self._flights[identity] = _Flight(future, at, self._timeout(probe.source))
        future.add_done_callback(lambda f: self._landed(identity, flight))
        return future

    def _landed(self, identity: tuple, flight: _Flight) -> None:
        with self._lock:
            if self._flights.get(identity) is flight:
                del self._flights[identity]
            if flight.future.cancelled() or flight.future.exception() is not None:
                return
            reading = flight.future.result()
            if reading.ok:
                self._kept[identity] = (self.monotonic(), reading)

    # -- one read -------------------------------------------------------------------------

    def _timeout(self, source: str) -> float:
        backend = self.backends.get(source)
        return float(getattr(backend.options, "timeout", 5.0)) if backend else 0.0

    def _sandbox(self, source: str) -> bool:
        backend = self.backends.get(source)
        return bool(backend and backend.sandbox)

    def _failed(self, probe: Probe, why: str) -> Reading:
        return Reading(probe.kind, probe.source, Status.FAILED, error=why, sandbox=self._sandbox(probe.source))

    def _read_when(self, go: threading.Event, probe: Probe) -> Reading:
        go.wait(1.0)  # set as soon as the caller has handed out its reads
        return self._read_one(probe)

    def _read_one(self, probe: Probe) -> Reading:
        backend = self.backends.get(probe.source)
        if backend is None:
            return _missing(probe)
        t0 = time.monotonic()

        def elapsed() -> float:
            return round((time.monotonic() - t0) * 1000, 1)

        try:
            if probe.kind == "lag":
                lag = backend.read_lag(probe.target, history=probe.history)
                if lag.unit != probe.target.unit:  # a seconds-only source read for a stream in messages...
                    raise IntegrationError(f"{probe.source} reads lag in {lag.unit}, not in {probe.target.unit}: "
                                           f"give this stream unit: {lag.unit}, or a source that reads "
                                           f"{probe.target.unit} (prometheus, cloudwatch, http_json)")
                return _from_lag(probe.source, lag, backend.sandbox, elapsed())
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
            if probe.kind == "weights":  # a staged ramp's split (bot.status)
                return Reading(probe.kind, probe.source, Status.OK, observed_at=datetime.now(timezone.utc),
                               weights=backend.weights(probe.target), detail=backend.title or backend.kind,
                               sandbox=backend.sandbox, elapsed_ms=elapsed())
            if probe.kind == "backup":  # bot.backups: the newest backup of the target's query
                return replace(read_backup(probe.source, backend, probe.target.query or ""), elapsed_ms=elapsed())
            return _from_health(probe.source, backend.check_health(probe.target), backend.sandbox, elapsed())
        except IntegrationError as e:
            return Reading(probe.kind, probe.source, Status.FAILED, error=str(e), sandbox=backend.sandbox,
                           elapsed_ms=elapsed())
        except Exception as e:  # a bug or an SDK surprise must not take the report down
            log.exception("source %s failed unexpectedly", probe.source)
            return Reading(probe.kind, probe.source, Status.FAILED, error=f"{type(e).__name__}: {e}",
                           sandbox=backend.sandbox, elapsed_ms=elapsed())


def _missing(probe: Probe) -> Reading:
    return Reading(probe.kind, probe.source, Status.MISSING, error=f"no source named {probe.source!r}")


def _from_lag(source: str, r: LagReading, sandbox: bool, elapsed_ms: float) -> Reading:
    return Reading("lag", source, Status.OK, observed_at=_aware(r.observed_at), lag_seconds=r.seconds,
                   replicating=r.replicating, detail=r.detail, history=r.history, sandbox=sandbox,
                   elapsed_ms=elapsed_ms, unit=r.unit)


def _from_health(source: str, r: HealthReading, sandbox: bool, elapsed_ms: float) -> Reading:
    return Reading("health", source, Status.OK, observed_at=_aware(r.observed_at), healthy=r.healthy,
                   detail=r.detail, sandbox=sandbox, elapsed_ms=elapsed_ms)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)
