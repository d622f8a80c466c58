"""Honest RTO and RPO of a run, each with what it measured (docs/measurements.md).

RTO ends when the last verify of the run passed (``rto_end='verify'``), or, when no step
verifies, when the last step ended (``'run_end'``, said so wherever it is shown). It is
measured from three starts:

- detection: the first alert of the incident open for the service when the request was
  made, or that incident's declaration (``rto_from_detection_s``; none without incident);
- decision: the approval; a scheduled drill approved ahead of time, its start
  (``measured_rto_s``, the one judged against the target);
- run start (``rto_from_run_start_s``).

RPO is the data at risk at cutover:

- ``switchover``: 0, the switchover waited for the standby to catch up;
- ``lag_before_cutover``: the last replication lag read just before a step detached the
  writer (replica promotion) or failed it over, when that reading was fresh; with
  ``replication:`` streams, the lag is the first stream in seconds (``ServiceConfig.lag``);
- ``unknown``: it could not be read (no lag source, read failed, stale, replication
  stopped, or the target did not replicate from the writer): no number is recorded;
- ``no_database_move``: the writer did not move; no number is recorded.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, func, select

from bot.collector import Probe
from bot.config import ServiceConfig
from bot.services import Services
from bot.store.incident_tables import Alert, Incident
from bot.store.models import ChangeRequest, RequestKind, Run, RunStep, StepState

LOSSY = ("database.promote", "database.failover")
"""Steps after which writes not yet replicated are lost: their lag is read just before."""


def lag_before_cutover(services: Services, svc: ServiceConfig) -> dict[str, Any]:
    """The replication lag, read just before a lossy database step (kept in its output)."""
    if svc.lag is None:
        return {"status": "missing", "why": "no lag source configured"}
    reading = services.collector.read([Probe(("lag",), svc.lag.source, "lag", svc.lag.target_of(svc.name))])[("lag",)]
    now = services.clock()
    base = {"source": reading.source, "observed_at": reading.observed_at.isoformat() if reading.observed_at else None}
    if not reading.ok:
        return base | {"status": reading.status.value, "why": reading.error or reading.status.value}
    age = reading.age(now)
    if age is not None and age > svc.lag.stale_after:
        return base | {"status": "stale", "age_s": age.total_seconds(),
                       "why": f"the reading was {age.total_seconds():g}s old "
                              f"(stale after {svc.lag.stale_after.total_seconds():g}s)"}
    if reading.replicating is False or reading.lag_seconds is None:
        return base | {"status": "stopped", "why": reading.detail or "replication is not running"}
    return base | {"status": "ok", "seconds": reading.lag_seconds, "age_s": age.total_seconds() if age else 0.0}


def detection_of(s: Session, req: ChangeRequest) -> tuple[datetime | None, str]:
    """(when the problem was detected, 'alert' or 'incident'), from the incident of the
    request's service open when it was made; (None, '') for drills and without one."""
    if req.kind is RequestKind.DRILL:
        return None, ""
    open_then = s.exec(select(Incident).where(Incident.opened_at <= req.created_at, or_(
        col(Incident.resolved_at).is_(None), Incident.resolved_at >= req.created_at))
                       .order_by(col(Incident.opened_at).desc())).all()
    inc = next((i for i in open_then if req.service in json.loads(i.services or "[]")), None)
    if inc is None:
        return None, ""
    declared = min(t for t in (inc.detected_at, inc.opened_at) if t is not None)
    first_alert = s.exec(select(func.min(Alert.starts_at)).where(Alert.incident_id == inc.id)).one()
    if first_alert is not None and first_alert <= declared:
        return _aware(first_alert), "alert"
    return _aware(declared), "incident"


def rpo_of(steps: list[RunStep], diverged: bool = False) -> tuple[float | None, str, str]:
    """(seconds or None, method, detail) from the run's succeeded steps, oldest first."""
    if diverged:
        return None, "unknown", "the target's database did not replicate from the writer (data loss was " \
                                "allowed): everything written since they split is lost"
    db = [(st, _output(st)) for st in steps if st.action.startswith("database.")]
    lossy = [(st, out) for st, out in db if st.action in LOSSY and out.get("changed")]
    if lossy:
        lag = lossy[-1][1].get("lag_at_cutover") or {"status": "missing", "why": "the lag was not read"}
        if lag.get("status") == "ok":
            return float(lag["seconds"]), "lag_before_cutover", f"read from {lag.get('source')} " \
                                                                 f"{lag.get('age_s', 0):g}s before"
        return None, "unknown", str(lag.get("why") or lag.get("status"))
    if any(st.action == "database.switchover" for st, _ in db):
        return 0.0, "switchover", "the switchover waited for the standby to catch up"
    return None, "no_database_move", ""


def measure(s: Session, req: ChangeRequest, run: Run, now: datetime, svc: ServiceConfig, rows: list[RunStep],
            diverged: bool = False) -> dict[str, Any]:
    """The Run's measurement columns and ``passed`` for a run that succeeded, from ``rows``
    (its steps as they are at its end), with the incident read in the caller's session."""
    steps = sorted((st for st in rows if st.state is StepState.SUCCEEDED),
                   key=lambda st: (_aware(st.ended_at) if st.ended_at else now, st.id or 0))
    verified = [_aware(st.ended_at) for st in steps if "verify" in _output(st) and st.ended_at is not None]
    end = max(verified) if verified else now
    origin = req if req.id == run.request_id else (s.get(ChangeRequest, run.request_id) or req)
    # a scheduled drill approved ahead of time is timed from its start, not from the click
    decided = max(_aware(run.approved_at), _aware(origin.not_before)) if origin.not_before else _aware(run.approved_at)
    detected_at, detection = detection_of(s, origin)
    rto = (end - decided).total_seconds()
    rpo, method, detail = rpo_of(steps, diverged)
    passed = rto <= svc.rto.total_seconds() and method != "unknown" \
        and (rpo is None or rpo <= svc.rpo.total_seconds())
    return {"verified_at": end if verified else None, "measured_rto_s": rto,
            "rto_from_run_start_s": (end - _aware(run.started_at)).total_seconds(),
            "rto_from_detection_s": (end - detected_at).total_seconds() if detected_at else None,
            "detected_at": detected_at, "detection": detection, "rto_end": "verify" if verified else "run_end",
            "measured_rpo_s": rpo, "rpo_method": method, "rpo_detail": detail, "passed": passed}


def _output(step: RunStep) -> dict[str, Any]:
    try:
        out = json.loads(step.output or "{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)
