"""Drill noise (``alerts.drill_noise_window``): alerts of a service under a running drill
(or one that ended within the window) are expected. They are stored as any alert, put on
the drill's timeline (``alert.drill_noise``, with the drill's request), and open no incident,
so they page nobody. An incident already open for the service still collects them (a real
outage during a drill is not hidden)."""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from bot.alerts.normalise import NormalisedAlert
from bot.alerts.quiet import INTAKE
from bot.audit import record
from bot.services import Services
from bot.store.models import ChangeRequest, RequestKind, RequestState

def drill_of(services: Services, s: Session, service: str, now: datetime) -> ChangeRequest | None:
    """The drill of ``service`` running now, or ended within the window; None when off."""
    window = services.config.alerts.drill_noise_window
    if window is None:
        return None
    drills = select(ChangeRequest).where(ChangeRequest.service == service, ChangeRequest.kind == RequestKind.DRILL)
    running = s.exec(drills.where(col(ChangeRequest.state).in_([RequestState.RUNNING, RequestState.INTERRUPTED]))
                     .order_by(col(ChangeRequest.id).desc())).first()
    if running is not None:
        return running
    return s.exec(drills.where(col(ChangeRequest.closed_at).is_not(None), ChangeRequest.closed_at >= now - window,
                               col(ChangeRequest.state).in_([RequestState.SUCCEEDED, RequestState.FAILED,
                                                             RequestState.ROLLED_BACK, RequestState.ABORTED]))
                  .order_by(col(ChangeRequest.id).desc())).first()


def mark(s: Session, drill: ChangeRequest, events: list[NormalisedAlert]) -> None:
    """Put the alert's news on the drill's timeline as drill noise."""
    for a in events:
        record(s, INTAKE, "alert.drill_noise", target=a.service or "", request_id=drill.id, service=a.service or "",
               text=f"{a.status}: {a.summary}"[:500],
               detail={"fingerprint": a.fingerprint, "source": a.source, "drill": drill.id, "status": a.status})
