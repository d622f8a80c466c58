"""Append-only audit entries and timeline events, written in the caller's transaction."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy.sql.dml import Insert
from sqlmodel import Session

from bot.actor import Actor
from bot.store.batch import Write, Writes
from bot.store.models import AuditEntry, TimelineEvent, utcnow


def _json(data: dict[str, Any] | None) -> str:
    return json.dumps(data or {}, default=str, sort_keys=True)


_AUDIT = AuditEntry.__table__.insert()
_TIMELINE = TimelineEvent.__table__.insert()
"""Table inserts with bound values: a tenth of the cost of two ORM objects and their flush
(an entry is never read back in the transaction that writes it)."""


def _rows(actor: Actor, action: str, target: str, detail: dict | None, request_id: int | None,
          incident_id: int | None, service: str, text: str) -> list[tuple[Insert, dict[str, Any]]]:
    at, data = utcnow(), _json(detail)
    rows = [(_AUDIT, {"at": at, "actor": actor.id, "actor_name": actor.name, "origin": actor.origin,
                      "action": action, "target": target, "detail": data})]
    if request_id is not None or incident_id is not None:
        rows.append((_TIMELINE, {"at": at, "request_id": request_id, "incident_id": incident_id, "service": service,
                                 "kind": action, "actor": actor.id, "text": text, "data": data}))
    return rows


def record(session: Session, actor: Actor, action: str, *, target: str = "", detail: dict | None = None,
           request_id: int | None = None, incident_id: int | None = None, service: str = "",
           text: str = "") -> None:
    """One audit entry and, when it concerns a request or an incident, a timeline event,
    written now in the caller's transaction."""
    for insert, values in _rows(actor, action, target, detail, request_id, incident_id, service, text):
        session.execute(insert, values)


def record_in(writes: Writes, actor: Actor, action: str, *, target: str = "", detail: dict | None = None,
              request_id: int | None = None, incident_id: int | None = None, service: str = "",
              text: str = "") -> None:
    """``record`` as writes of a batch (``bot.store.batch``), sent with its other writes."""
    for insert, values in _rows(actor, action, target, detail, request_id, incident_id, service, text):
        writes.add(Write(insert.table, values))


SYSTEM = Actor(id="drbot", name="drbot", origin="system")
