"""Backup age and restore tests in ``/dr status`` (``services[].backups``).

For each backup entry the status report reads the newest backup from its source (a probe of
kind ``backup`` through the collector, concurrently with lag and health) and judges it:

- the newest backup older than ``max_age``: AT_RISK (``backup_old``), naming the backup;
  no backup at all: AT_RISK (``backup_none``);
- a reading that failed, timed out or is missing: UNKNOWN for that backup, never healthy;
- with ``restore_test_max_age`` set, the newest restore test (a drill run of a scenario
  whose ``restore:`` step names this backup, ``bot.restore_drill``): none, a failed one, or
  a passed one older than the limit is AT_RISK (``restore_test_none``,
  ``restore_test_failed``, ``restore_test_overdue``).

The findings join the service's assessment (``judged``); their sentences live in
``templates/_reasons.j2``, the per-backup line in ``templates/_status.j2``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bot.collector import Probe
from bot.config import ServiceConfig
from bot.config.models import BackupConfig
from bot.readiness import Assessment, Finding, Verdict, worst
from bot.readings import Reading, Status
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run
from integrations.base import Target

FINISHED = (RequestState.SUCCEEDED, RequestState.FAILED, RequestState.ROLLED_BACK, RequestState.ABORTED)


@dataclass(frozen=True)
class RestoreTest:
    """The newest finished restore test of a backup, and the newest that passed."""

    ended_at: datetime
    passed: bool
    request_id: int
    sandbox: bool = False
    last_passed_at: datetime | None = None


@dataclass(frozen=True)
class BackupState:
    """One backup as ``/dr status`` shows it."""

    config: BackupConfig
    reading: Reading
    age: timedelta | None
    finding: Finding
    restore: RestoreTest | None = None
    restore_finding: Finding | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def backup(self):
        return getattr(self.reading, "backup", None)


def probe_key(service: str, backup: str) -> tuple:
    return (service, "backup", backup)


def probes(svc: ServiceConfig) -> list[Probe]:
    """One read per backup entry; a reading is fresh enough for a reuse for 5 minutes."""
    return [Probe(probe_key(svc.name, b.name), b.source, "backup", Target(svc.name, query=b.target),
                  stale_after=300.0) for b in svc.backups]


def restore_tests(s: Session, services: list[ServiceConfig]) -> dict[tuple[str, str], RestoreTest]:
    """(service, backup) -> its newest finished restore test: drill runs of the scenarios
    whose restore step names that backup (by the request's scenario, a column)."""
    wanted = {(svc.name, scenario): backup for svc in services for scenario, backup in svc.restore_scenarios().items()}
    if not wanted:
        return {}
    stmt = (select(Run, ChangeRequest.scenario).join(ChangeRequest, ChangeRequest.id == Run.request_id)
            .where(Run.kind == RequestKind.DRILL, col(Run.state).in_(FINISHED), col(Run.ended_at).is_not(None),
                   col(Run.service).in_({svc for svc, _ in wanted}),
                   col(ChangeRequest.scenario).in_({scenario for _, scenario in wanted}))
            .order_by(col(Run.ended_at).desc()))
    newest: dict[tuple[str, str], RestoreTest] = {}
    passed: dict[tuple[str, str], datetime] = {}
    for run, scenario in s.exec(stmt):
        backup = wanted.get((run.service, scenario))
        if backup is None:
            continue
        key = (run.service, backup)
        ok = run.state is RequestState.SUCCEEDED
        newest.setdefault(key, RestoreTest(run.ended_at, ok, run.request_id, run.sandbox))
        if ok:
            passed.setdefault(key, run.ended_at)
    return {k: replace(t, last_passed_at=passed.get(k)) for k, t in newest.items()}


def shown(age: timedelta) -> timedelta:
    """An age as people read it: whole minutes from an hour on, whole seconds below (never negative)."""
    age = max(age, timedelta(0))
    unit = 60 if age >= timedelta(hours=1) else 1
    return timedelta(seconds=int(age.total_seconds()) // unit * unit)


def assess_backup(b: BackupConfig, reading: Reading, now: datetime) -> tuple[Finding, timedelta | None]:
    base = {"backup": b.name, "source": reading.source or b.source, "max_age": b.max_age}
    if reading.status is not Status.OK:
        return Finding(Verdict.UNKNOWN, reading.status.value,
                       {"part": f"backup {b.name}", "source": reading.source or b.source,
                        "error": reading.error}), None
    point = getattr(reading, "backup", None)
    if point is None:
        return Finding(Verdict.AT_RISK, "backup_none", base | {"target": b.target}), None
    age = shown(now - point.created_at)
    params = base | {"id": point.id, "age": age, "taken_at": point.created_at, "sandbox": reading.sandbox}
    if age > b.max_age:
        return Finding(Verdict.AT_RISK, "backup_old", params), age
    return Finding(Verdict.READY, "backup_ok", params), age


def assess_restore(b: BackupConfig, test: RestoreTest | None, scenarios: list[str], now: datetime) -> Finding | None:
    if b.restore_test_max_age is None:
        return None
    base = {"backup": b.name, "max_age": b.restore_test_max_age, "scenarios": scenarios}
    if test is None:
        return Finding(Verdict.AT_RISK, "restore_test_none", base)
    params = base | {"age": shown(now - test.ended_at), "request_id": test.request_id,
                     "sandbox": test.sandbox}
    if not test.passed:
        return Finding(Verdict.AT_RISK, "restore_test_failed", params)
    if params["age"] > b.restore_test_max_age:
        return Finding(Verdict.AT_RISK, "restore_test_overdue", params)
    return Finding(Verdict.READY, "restore_test_ok", params)


def judged(a: Assessment, svc: ServiceConfig, readings: dict[tuple, Reading],
           tests: dict[tuple[str, str], RestoreTest], now: datetime) -> Assessment:
    """``a`` with the service's backup findings joined in (its verdict the worst of all)."""
    if not svc.backups:
        return a
    states, found = [], []
    scenarios = svc.restore_scenarios()
    for b in svc.backups:
        reading = readings.get(probe_key(svc.name, b.name)) or Reading.missing("backup", "not read")
        finding, age = assess_backup(b, reading, now)
        test = tests.get((svc.name, b.name))
        restore = assess_restore(b, test, sorted(s for s, name in scenarios.items() if name == b.name), now)
        states.append(BackupState(b, reading, age, finding, test, restore))
        found += [finding] + ([restore] if restore is not None else [])
    findings = a.findings + tuple(found)
    return replace(a, findings=findings, verdict=worst(f.verdict for f in findings), backups=tuple(states))
