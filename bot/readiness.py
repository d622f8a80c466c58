"""DR readiness from readings, by pure functions: no I/O, no clock of its own.

Rules (worst part wins; NOT_READY > UNKNOWN > AT_RISK > READY):
- lag past critical, replication stopped, or the standby region unhealthy: NOT_READY;
  with several replication streams (``assess_stream``) each is judged in its own unit and
  the worst stream counts, named in its finding;
- lag past warning, the active region unhealthy, a failed, missing, overdue or unproven drill
  (one that moved nothing; a check-only exercise is no drill at all): AT_RISK;
- a missing, failed, timed-out or stale reading: UNKNOWN for that part, never healthy;
- a backup older than its ``max_age`` (or none), a restore test failed, overdue or never run:
  AT_RISK, joined in by ``bot.backups.judged`` (a backup that cannot be read: UNKNOWN);
- live state (``assess_live``): traffic or the writer somewhere else than drbot's record
  (drift), or a standby database that does not replicate from the writer: NOT_READY
  (drift while a run of the service is moving it: AT_RISK).

Findings carry a code and parameters; their sentences live in ``templates/_reasons.j2``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.readings import Reading, Status
from bot.replication import judge_move


class Verdict(str, enum.Enum):
    READY = "READY"
    AT_RISK = "AT_RISK"
    UNKNOWN = "UNKNOWN"
    NOT_READY = "NOT_READY"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Verdict.READY: 0, Verdict.AT_RISK: 1, Verdict.UNKNOWN: 2, Verdict.NOT_READY: 3}


@dataclass(frozen=True)
class Finding:
    verdict: Verdict
    code: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DrillInfo:
    """The latest finished drill of a service."""

    ended_at: datetime
    passed: bool
    rto_s: float | None = None
    rpo_s: float | None = None
    request_id: int | None = None
    sandbox: bool = False
    """It ran on a sandbox (simulated) backend: every line about it says SANDBOX."""
    unproven: bool = False
    """Its steps succeeded but moved nothing that a verify read back (bot.drill_proof)."""


@dataclass(frozen=True)
class Targets:
    rpo: timedelta
    rto: timedelta
    warning: timedelta
    critical: timedelta
    stale_after: timedelta
    drill_max_age: timedelta


@dataclass(frozen=True)
class StreamSpec:
    """A replication stream as readiness judges it: thresholds in its unit (seconds for a
    seconds stream). ``lag``: it is the service's lag (its first seconds stream), judged
    with the ``lag_*`` findings the watch and the failback assistant follow."""

    name: str
    unit: str
    warning: float
    critical: float
    stale_after: timedelta
    lag: bool = False


@dataclass(frozen=True)
class StreamState:
    """One stream's reading and verdict, as ``/dr status`` shows it."""

    spec: StreamSpec
    reading: Reading
    finding: Finding

    @property
    def verdict(self) -> Verdict:
        return self.finding.verdict


@dataclass(frozen=True)
class Assessment:
    service: str
    tier: str
    active: str
    standby: str
    verdict: Verdict
    findings: tuple[Finding, ...]
    targets: Targets
    lag: Reading
    health: dict[str, Reading]
    drill: DrillInfo | None
    assessed_at: datetime
    traffic: Reading | None = None
    """Where the traffic switch routes now (None: the service has no traffic source)."""
    database: Reading | None = None
    """Which region writes and who replicates from whom (None: no database source)."""
    streams: tuple[StreamState, ...] = ()
    """Each replication stream of a service with ``replication:`` (empty for the ``lag:``
    shorthand, judged as ``lag``)."""
    backups: tuple = ()
    """Each backup of the service (``bot.backups.BackupState``): its age and its last restore test."""

    @property
    def reasons(self) -> tuple[Finding, ...]:
        """Findings that keep the service from READY, worst first."""
        bad = [f for f in self.findings if f.verdict is not Verdict.READY]
        return tuple(sorted(bad, key=lambda f: -f.verdict.rank))

    @property
    def sandbox(self) -> bool:
        return self.lag.sandbox or any(r.sandbox for r in self.health.values()) \
            or any(r is not None and r.sandbox for r in (self.traffic, self.database)) \
            or any(st.reading.sandbox for st in self.streams)


def worst(verdicts) -> Verdict:
    return max(verdicts, key=lambda v: v.rank, default=Verdict.READY)


def _unusable(reading: Reading, part: str, now: datetime, stale_after: timedelta) -> Finding | None:
    """UNKNOWN for a reading that is missing, failed, timed out or stale."""
    if reading.status is Status.OK:
        age = reading.age(now)
        if age is not None and age > stale_after:
            return Finding(Verdict.UNKNOWN, "stale", {"part": part, "source": reading.source,
                                                     "age": age, "limit": stale_after})
        return None
    params = {"part": part, "source": reading.source, "error": reading.error}
    if reading.status is Status.STALE:  # templates/_reasons.j2 says how old, and the limit
        params |= {"age": reading.age(now), "limit": stale_after}
    return Finding(Verdict.UNKNOWN, reading.status.value, params)


def assess_lag(lag: Reading, t: Targets, now: datetime) -> Finding:
    if (bad := _unusable(lag, "replication lag", now, t.stale_after)) is not None:
        return bad
    if lag.replicating is False or lag.lag_seconds is None:
        return Finding(Verdict.NOT_READY, "replication_stopped", {"source": lag.source, "detail": lag.detail})
    value = timedelta(seconds=lag.lag_seconds)
    params = {"lag": value, "warning": t.warning, "critical": t.critical, "rpo": t.rpo}
    if value >= t.critical:
        return Finding(Verdict.NOT_READY, "lag_critical", params | {"past_rpo": value >= t.rpo})
    if value >= t.warning:
        return Finding(Verdict.AT_RISK, "lag_warning", params)
    return Finding(Verdict.READY, "lag_ok", params)


def assess_stream(spec: StreamSpec, reading: Reading, t: Targets, now: datetime) -> Finding:
    """A stream's verdict, the stream named in every finding. The service's lag stream (its
    first seconds stream) gives the ``lag_*`` findings; every other stream ``stream_*``."""
    named = {"stream": spec.name, "unit": spec.unit}
    if (bad := _unusable(reading, f"stream {spec.name}", now, spec.stale_after)) is not None:
        return Finding(bad.verdict, bad.code, bad.params | named)
    if reading.replicating is False or reading.lag_seconds is None:
        return Finding(Verdict.NOT_READY, "replication_stopped",
                       {"source": reading.source, "detail": reading.detail} | named)
    value, seconds = reading.lag_seconds, spec.unit == "seconds"
    if spec.lag:
        lag = timedelta(seconds=value)
        params = {"lag": lag, "warning": timedelta(seconds=spec.warning),
                  "critical": timedelta(seconds=spec.critical), "rpo": t.rpo} | named
        prefix = "lag_"
    else:
        params = {"value": value, "warning": spec.warning, "critical": spec.critical, "rpo": t.rpo} | named
        prefix = "stream_"
    if value >= spec.critical:
        past = seconds and value >= t.rpo.total_seconds()
        return Finding(Verdict.NOT_READY, prefix + "critical", params | {"past_rpo": past})
    if value >= spec.warning:
        return Finding(Verdict.AT_RISK, prefix + "warning", params)
    return Finding(Verdict.READY, prefix + "ok", params)


def assess_health(region: str, role: str, reading: Reading, t: Targets, now: datetime) -> Finding:
    if (bad := _unusable(reading, f"health of {region}", now, t.stale_after)) is not None:
        return bad
    params = {"region": region, "detail": reading.detail}
    if reading.healthy:
        return Finding(Verdict.READY, "healthy", params)
    if role == "standby":
        return Finding(Verdict.NOT_READY, "standby_unhealthy", params)
    return Finding(Verdict.AT_RISK, "active_unhealthy", params)


def assess_drill(drill: DrillInfo | None, t: Targets, now: datetime, missed_at: datetime | None = None) -> Finding:
    if missed_at is not None and (drill is None or missed_at > drill.ended_at):
        return Finding(Verdict.AT_RISK, "drill_missed", {"missed_at": missed_at, "age": now - missed_at})
    if drill is None:
        return Finding(Verdict.AT_RISK, "no_drill", {"max_age": t.drill_max_age})
    age = now - drill.ended_at
    params = {"age": age, "max_age": t.drill_max_age, "rto_s": drill.rto_s, "rpo_s": drill.rpo_s,
              "request_id": drill.request_id, "sandbox": drill.sandbox}
    if drill.unproven:
        return Finding(Verdict.AT_RISK, "drill_unproven", params)
    if not drill.passed:
        return Finding(Verdict.AT_RISK, "drill_failed", params)
    if age > t.drill_max_age:
        return Finding(Verdict.AT_RISK, "drill_overdue", params)
    return Finding(Verdict.READY, "drill_ok", params)


def assess_live(active: str, standby: str, traffic: Reading | None, database: Reading | None, t: Targets,
                now: datetime, moving: int | None = None) -> list[Finding]:
    """Where traffic and the writer really are, against drbot's record (``active``), and
    whether the standby's database replicates from the writer. ``moving``: the request
    whose run is moving the service now (drift is then expected: AT_RISK)."""
    out: list[Finding] = []
    drift = Verdict.AT_RISK if moving else Verdict.NOT_READY
    if traffic is not None:
        base = {"recorded": active, "source": traffic.source, "via": traffic.detail, "moving": moving}
        if (bad := _unusable(traffic, "where traffic goes", now, t.stale_after)) is not None:
            out.append(bad)
        elif traffic.region != active:
            out.append(Finding(drift, "traffic_drift", base | {"actual": traffic.region}))
        else:
            out.append(Finding(Verdict.READY, "traffic_ok", base | {"actual": traffic.region}))
    if database is not None:
        base = {"recorded": active, "source": database.source, "via": database.detail, "moving": moving}
        rep = database.replication
        if (bad := _unusable(database, "where the database writes", now, t.stale_after)) is not None:
            out.append(bad)
        elif active not in (writers := rep.writers if rep else (database.region,)):
            out.append(Finding(drift, "writer_drift", base | {"actual": [w for w in writers if w]}))
        elif rep is None:
            out.append(Finding(Verdict.READY, "writer_ok", base | {"standby": standby}))
        else:
            j = judge_move(rep, active, standby)
            verdict = {True: Verdict.READY, None: Verdict.UNKNOWN, False: Verdict.NOT_READY}[j.ok]
            out.append(Finding(verdict, "writer_ok" if j.ok else j.code, base | j.params | {"standby": standby}))
    return out


def assess(service: str, tier: str, active: str, standby: str, targets: Targets, lag: Reading,
           health: dict[str, Reading], drill: DrillInfo | None, now: datetime,
           missed_at: datetime | None = None, traffic: Reading | None = None, database: Reading | None = None,
           moving: int | None = None, streams: list[tuple[StreamSpec, Reading]] | None = None) -> Assessment:
    """``streams``: the replication streams of a service with ``replication:``, each judged on
    its own (the verdict is the worst of them); None: ``lag`` alone is judged."""
    states = tuple(StreamState(spec, reading, assess_stream(spec, reading, targets, now))
                   for spec, reading in streams or ())
    findings = [st.finding for st in states] if streams else [assess_lag(lag, targets, now)]
    for region, role in ((active, "active"), (standby, "standby")):
        reading = health.get(region) or Reading.missing("health", f"no health source for {region}")
        findings.append(assess_health(region, role, reading, targets, now))
    findings.extend(assess_live(active, standby, traffic, database, targets, now, moving))
    findings.append(assess_drill(drill, targets, now, missed_at))
    return Assessment(
        service=service, tier=tier, active=active, standby=standby,
        verdict=worst(f.verdict for f in findings), findings=tuple(findings), targets=targets,
        lag=lag, health=health, drill=drill, assessed_at=now, traffic=traffic, database=database,
        streams=states,
    )


def order_worst_first(items: list[Assessment]) -> list[Assessment]:
    return sorted(items, key=lambda a: (-a.verdict.rank, a.service))
