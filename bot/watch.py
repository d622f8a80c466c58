"""The readiness watch: read every service's readiness on a timer, and post when the verdict
a service is announced with changes (into AT_RISK, NOT_READY, UNKNOWN, and back to READY).

Lag alone must not flap. The verdict the watch announces is the readiness verdict with the
lag part replaced by a *lag band* ('ok', 'warning', 'critical') computed with hysteresis:
a band is entered at its threshold, but left only when lag falls ``hysteresis`` (a
fraction) below it. In band 'warning' with warning 2m and hysteresis 0.1, lag must fall
below 1m48s to go back to 'ok'; in band 'critical', below 90% of critical to leave it.
Health, drill and unknown readings count as they are (``bot.readiness``). When lag cannot
be read, the band is kept as it was, so one missing reading does not reset it.

``watched_verdict`` is the pure part. ``watch_once`` is the scheduled job ("readiness_watch"):
it records every lag reading (``LagRecord``, for the weekly digest), compares each service
with its ``WatchState`` and, on a change, updates the state and enqueues ONE outbox item
"readiness.change" in the same transaction. The first observation of a service only
records its state. A change with no channel configured updates the state and posts nothing.
The same pass, on the same readings and in the same transaction, runs the failback
assistant (``bot.failback_assistant``).
"""
from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.events import ReadinessChange
from bot.failback_assistant import assist
from bot.outbox.queue import enqueue
from bot.readiness import Assessment, Finding, Verdict, worst
from bot.services import Services
from bot.store import session_scope
from bot.store.drill_tables import LagRecord, WatchState

log = logging.getLogger(__name__)

BANDS = ("ok", "warning", "critical")
LAG_KEEP = timedelta(days=35)
"""Lag records older than this are deleted by the watch (the digest needs 7 days)."""

_CODE_BAND = {"lag_ok": "ok", "lag_warning": "warning", "lag_critical": "critical"}
_BAND_RANK = {"": 0, "ok": 0, "warning": 1, "critical": 2}
_BAND_VERDICT = {"ok": Verdict.READY, "warning": Verdict.AT_RISK, "critical": Verdict.NOT_READY}


# -- the pure part ----------------------------------------------------------------------------

def lag_band(lag: timedelta, warning: timedelta, critical: timedelta, previous: str, hysteresis: float) -> str:
    """The band lag is in, given the band it was in. Thresholds at or below the current band
    are lowered by ``hysteresis`` (so leaving needs lag clearly below them); thresholds
    above it apply as they are (so entering happens at the threshold)."""
    rank = _BAND_RANK.get(previous or "", 0)
    crit = critical * (1 - hysteresis) if rank >= 2 else critical
    warn = warning * (1 - hysteresis) if rank >= 1 else warning
    if lag >= crit:
        return "critical"
    if lag >= warn:
        return "warning"
    return "ok"


def lag_finding(a: Assessment) -> Finding | None:
    """The assessment's lag finding when lag was read as a number (not unknown, not stopped)."""
    return next((f for f in a.findings if f.code in _CODE_BAND), None)


def banded_findings(a: Assessment, band: str) -> tuple[Finding, ...]:
    """The findings with the lag part judged by ``band`` instead of the bare thresholds."""
    if not band:
        return a.findings
    return tuple(dataclasses.replace(f, verdict=_BAND_VERDICT[band]) if f.code in _CODE_BAND else f
                 for f in a.findings)


def watched_verdict(a: Assessment, previous_band: str, hysteresis: float) -> tuple[Verdict, str]:
    """(verdict the watch announces, lag band now). Pure: no I/O, no clock.

    ``previous_band`` is '' for a service never seen (then the bare thresholds apply).
    When lag has no value (unknown reading, replication stopped) the band is kept and the
    verdict is the assessment's own."""
    f = lag_finding(a)
    if f is None:
        return a.verdict, previous_band or ""
    band = lag_band(f.params["lag"], f.params["warning"], f.params["critical"], previous_band, hysteresis)
    return worst(x.verdict for x in banded_findings(a, band)), band


def hold_of(a: Assessment, band: str, hysteresis: float) -> dict[str, Any] | None:
    """When the band is worse than the bare thresholds say (lag is back under the threshold
    but not yet clear of the hysteresis margin): the band and the lag it must fall below."""
    f = lag_finding(a)
    if f is None or not band or _BAND_RANK[band] <= _BAND_RANK[_CODE_BAND[f.code]]:
        return None
    threshold = f.params["critical"] if band == "critical" else f.params["warning"]
    return {"band": band, "verdict": _BAND_VERDICT[band].value,
            "below_s": round((threshold * (1 - hysteresis)).total_seconds(), 3)}


def reasons_of(a: Assessment, band: str) -> list[Finding]:
    """Findings that keep the service from READY under the watch's verdict, worst first."""
    bad = [f for f in banded_findings(a, band) if f.verdict is not Verdict.READY]
    return sorted(bad, key=lambda f: -f.verdict.rank)


# -- the job ----------------------------------------------------------------------------------

def channel_for(services: Services, service: str) -> str | None:
    """watch.channel, else the service's channel, else slack.channels.announcements."""
    svc = services.config.service(service)
    return (services.config.watch.channel or (svc.channel if svc else None)
            or services.config.slack.channels.announcements or None)


def _record_lag(s: Session, a: Assessment, at: datetime) -> None:
    f = lag_finding(a)
    if f is not None:
        s.add(LagRecord(service=a.service, at=at, seconds=float(a.lag.lag_seconds)))


def _first(s: Session, service: str, verdict: Verdict, band: str, now: datetime) -> None:
    """Insert the first state of a service; a concurrent insert (another watcher) wins."""
    try:
        with s.begin_nested():
            s.add(WatchState(service=service, verdict=verdict.value, since=now, lag_band=band))
    except IntegrityError:
        log.info("readiness watch: the state of %s was recorded concurrently", service)


def watch_once(services: Services) -> list[dict[str, Any]]:
    """One pass of the watch. Returns the changes of announced verdict (the outbox payloads,
    with ``posted`` saying whether a post was queued); first observations are not changes."""
    cfg = services.config.watch
    report = services.status.report()
    now = report.generated_at
    changes: list[dict[str, Any]] = []
    with session_scope(services.engine) as s:
        for a in sorted(report.assessments, key=lambda x: x.service):
            _record_lag(s, a, now)
            state = s.get(WatchState, a.service)
            old_verdict, old_band, old_since = (state.verdict, state.lag_band, state.since) if state else ("", "", now)
            verdict, band = watched_verdict(a, old_band, cfg.hysteresis)
            if state is None:
                _first(s, a.service, verdict, band, now)
                continue
            if verdict.value == old_verdict and band == old_band:
                continue
            values: dict[str, Any] = {"lag_band": band}
            if verdict.value != old_verdict:
                values |= {"verdict": verdict.value, "since": now}
            moved = s.execute(update(WatchState).where(WatchState.service == a.service,
                                                       WatchState.verdict == old_verdict,
                                                       WatchState.lag_band == old_band)
                              .values(**values).execution_options(synchronize_session=False)).rowcount
            if moved != 1 or verdict.value == old_verdict:
                continue  # another watcher moved it first, or only the band changed
            change = _change(services, a, old_verdict, verdict, band, old_since, now)
            if change["channel"]:
                change["posted"] = enqueue(s, ReadinessChange(
                    channel=change["channel"], service=a.service, at=now.isoformat(), to=verdict.value,
                    change={k: v for k, v in change.items() if k != "posted"}), services.clock())
            changes.append(change)
        suggestions = assist(services, s, report.assessments, now, channel_for)
        s.execute(delete(LagRecord).where(LagRecord.at < now - LAG_KEEP))
    if any(c["posted"] for c in changes + suggestions) and services.outbox is not None:
        services.outbox.poke()
    for c in changes:
        log.info("readiness of %s: %s -> %s%s", c["service"], c["from"], c["to"],
                 "" if c["posted"] else " (no channel configured, not posted)")
    return changes


def _change(services: Services, a: Assessment, old: str, new: Verdict, band: str, since: datetime,
            now: datetime) -> dict[str, Any]:
    hysteresis = services.config.watch.hysteresis
    return {
        "service": a.service, "tier": a.tier, "from": old, "to": new.value,
        "reasons": [services.renderer.reason(f) for f in reasons_of(a, band)],
        "lag_s": a.lag.lag_seconds if lag_finding(a) else None, "rpo_s": a.targets.rpo.total_seconds(),
        "band": band, "hold": hold_of(a, band, hysteresis), "active": a.active, "standby": a.standby,
        "since": since.isoformat(), "at": now.isoformat(), "sandbox": a.sandbox,
        "channel": channel_for(services, a.service), "posted": False,
    }


# -- delivery ---------------------------------------------------------------------------------

def change_context(services: Services, payload: dict[str, Any]) -> dict[str, Any]:
    """The template context of a readiness_change post, from its outbox payload."""
    return {"change": payload, "to": Verdict(payload["to"]), "was": Verdict(payload["from"]),
            "held": Verdict(payload["hold"]["verdict"]) if payload.get("hold") else None,
            "at": datetime.fromisoformat(payload["at"]), "since": datetime.fromisoformat(payload["since"]),
            "command": services.command}
