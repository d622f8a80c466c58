"""The weekly digest: readiness of every service now, drills done in the last 7 days and
due in the next 7, and replication lag percentiles per service over the last 7 days (from
the lag the readiness watch recorded).

``digest_once`` is the scheduled job ("weekly_digest"): it gathers the numbers once, at its
time, and enqueues ONE outbox item "digest.weekly" carrying them; the handler only renders
and posts. Its idempotency key is the scheduled run time, so a run that is repeated (a
recovery after a restart, another replica) never posts the same digest twice.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from bot import jobs
from bot.drill_schedules import region_of
from bot.events import WeeklyDigest
from bot.outbox.queue import enqueue
from bot.readiness import Verdict
from bot.services import Services
from bot.store import session_scope
from bot.store.drill_tables import DrillOccurrence, LagRecord, OccurrenceState
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run

log = logging.getLogger(__name__)

WINDOW = timedelta(days=7)
_FINISHED = (RequestState.SUCCEEDED, RequestState.FAILED, RequestState.ROLLED_BACK, RequestState.ABORTED)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks (as numpy's
    default and ``statistics.quantiles(method='inclusive')``); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def lag_stats(s: Session, names: list[str], since: datetime, until: datetime) -> dict[str, dict[str, Any]]:
    """Service -> {count, p50_s, p95_s, max_s} of the lag recorded in [since, until]."""
    values: dict[str, list[float]] = {n: [] for n in names}
    rows = s.exec(select(LagRecord.service, LagRecord.seconds).where(
        col(LagRecord.service).in_(names), LagRecord.at >= since, LagRecord.at <= until))
    for service, seconds in rows:
        values[service].append(seconds)
    return {n: {"count": len(v), "p50_s": percentile(v, 0.5), "p95_s": percentile(v, 0.95),
                "max_s": max(v) if v else None} for n, v in values.items()}


def drills_done(services: Services, s: Session, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Drill runs that ended in [since, until], oldest first, with their measured numbers."""
    runs = s.exec(select(Run, ChangeRequest.scenario).join(ChangeRequest, ChangeRequest.id == Run.request_id)
                  .where(Run.kind == RequestKind.DRILL, col(Run.state).in_(_FINISHED),
                         col(Run.ended_at).is_not(None), Run.ended_at >= since, Run.ended_at <= until)
                  .order_by(col(Run.ended_at), col(Run.id)))
    out = []
    for run, scenario in runs:
        svc = services.config.service(run.service)
        out.append({"service": run.service, "request_id": run.request_id, "state": run.state.value,
                    "passed": bool(run.passed), "ended_at": run.ended_at.isoformat(),
                    "restore": svc.restore_scenarios().get(scenario) if svc else None,  # bot.restore_drill
                    "proof": run.proof, "sandbox": run.sandbox,  # a check is no drill (bot.drill_proof)
                    "rto_s": run.measured_rto_s, "rpo_s": run.measured_rpo_s,
                    "rto_target_s": svc.rto.total_seconds() if svc else None,
                    "rpo_target_s": svc.rpo.total_seconds() if svc else None})
    return out


def drills_due(s: Session, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Planned drill occurrences starting in [since, until], soonest first."""
    occs = list(s.exec(select(DrillOccurrence).where(DrillOccurrence.state == OccurrenceState.PLANNED,
                                                     DrillOccurrence.starts_at >= since,
                                                     DrillOccurrence.starts_at <= until)
                       .order_by(col(DrillOccurrence.starts_at), col(DrillOccurrence.id))))
    ids = [o.request_id for o in occs if o.request_id is not None]
    states = {cr.id: cr.state.value for cr in s.exec(select(ChangeRequest).where(col(ChangeRequest.id).in_(ids)))} \
        if ids else {}
    return [{"service": o.service, "schedule": o.schedule, "starts_at": o.starts_at.isoformat(),
             "what": f"region drill of {region_of(o.service)}" if region_of(o.service) else o.service,
             "request_id": o.request_id, "request_state": states.get(o.request_id)} for o in occs]


def build_digest(services: Services, now: datetime) -> dict[str, Any]:
    """Every number of the digest at ``now``, JSON-ready (times as ISO strings)."""
    report = services.status.report()
    names = services.config.service_names
    since, until = now - WINDOW, now + WINDOW
    with session_scope(services.engine) as s:
        lag = lag_stats(s, names, since, now)
        done = drills_done(services, s, since, now)
        due = drills_due(s, now, until)
    readiness = []
    for a in report.assessments:
        warning, critical = a.targets.warning, a.targets.critical
        readiness.append({"service": a.service, "tier": a.tier, "verdict": a.verdict.value,
                          "reasons": [services.renderer.reason(f) for f in a.reasons],
                          "lag_now_s": a.lag.lag_seconds if a.lag.ok else None,
                          "warning_s": warning.total_seconds(), "critical_s": critical.total_seconds(),
                          "rpo_s": a.targets.rpo.total_seconds(), "lag": lag.get(a.service)})
    return {"since": since.isoformat(), "now": now.isoformat(), "until": until.isoformat(),
            "sandbox": report.sandbox, "readiness": readiness, "drills_done": done, "drills_due": due}


def channel_for(services: Services) -> str | None:
    return services.config.digest.channel or services.config.slack.channels.announcements or None


def digest_once(services: Services, now: datetime | None = None) -> dict[str, Any] | None:
    """Gather the digest and enqueue it ("digest.weekly"). Returns the payload, or None when
    no channel is configured (nothing is queued then)."""
    now = now or services.clock()
    channel = channel_for(services)
    if not channel:
        log.warning("weekly digest: no channel (digest.channel or slack.channels.announcements); not posted")
        return None
    payload = build_digest(services, now) | {"channel": channel}
    ctx = jobs.current()
    run_time = ctx.scheduled_run_time if ctx is not None else now
    with session_scope(services.engine) as s:
        fresh = enqueue(s, WeeklyDigest(channel=channel, run_time=run_time.isoformat(), digest=payload),
                        services.clock())
    if fresh and services.outbox is not None:
        services.outbox.poke()
    return payload


# -- delivery ---------------------------------------------------------------------------------

def _at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def digest_context(services: Services, payload: dict[str, Any]) -> dict[str, Any]:
    """The template context of a weekly_digest post, from its outbox payload."""
    readiness = [r | {"verdict": Verdict(r["verdict"])} for r in payload["readiness"]]
    done = [d | {"ended_at": _at(d["ended_at"])} for d in payload["drills_done"]]
    due = [d | {"starts_at": _at(d["starts_at"])} for d in payload["drills_due"]]
    counts = {v.value: sum(1 for r in readiness if r["verdict"] is v) for v in Verdict}
    return {"digest": payload, "since": _at(payload["since"]), "now": _at(payload["now"]),
            "until": _at(payload["until"]), "readiness": readiness, "done": done, "due": due,
            "counts": counts, "command": services.command}
