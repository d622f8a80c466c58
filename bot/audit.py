"""Append-only audit entries and timeline events, written in the caller's transaction."""
from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session

from bot.actor import Actor
from bot.store.models import AuditEntry, TimelineEvent, utcnow


def _json(data: dict[str, Any] | None) -> str:
    return json.dumps(data or {}, default=str, sort_keys=True)


_AUDIT = AuditEntry.__table__.insert()
_TIMELINE = TimelineEvent.__table__.insert()
"""Table inserts with bound values: a tenth of the cost of two ORM objects and their flush
(an entry is never read back in the transaction that writes it)."""


def record(session: Session, actor: Actor, action: str, *, target: str = "", detail: dict | None = None,
           request_id: int | None = None, incident_id: int | None = None, service: str = "",
           text: str = "") -> None:
    """One audit entry and, when it concerns a request or an incident, a timeline event,
    written now in the caller's transaction."""
    at, data = utcnow(), _json(detail)
    session.execute(_AUDIT, {"at": at, "actor": actor.id, "actor_name": actor.name, "origin": actor.origin,
                             "action": action, "target": target, "detail": data})
    if request_id is not None or incident_id is not None:
        session.execute(_TIMELINE, {"at": at, "request_id": request_id, "incident_id": incident_id,
                                    "service": service, "kind": action, "actor": actor.id, "text": text,
                                    "data": data})


SYSTEM = Actor(id="drbot", name="drbot", origin="system")
