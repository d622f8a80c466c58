"""Follow-ups of an incident: what to do afterwards, each with an owner and a due date, in
the postmortem draft and, when ``incidents.followups.tracker`` names a Jira source, as an
issue there (created through the outbox, linked back). The review of the postmortem is
reminded once ``incidents.review_within`` after resolve unless someone says it was held;
owners of overdue follow-ups are reminded in the incident channel.

Anyone may add a follow-up (like a note); marking one done takes its owner, whoever added
it, the incident's commander, or ``permissions.incident_update``.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from bot.actor import Actor
from bot.audit import SYSTEM, record
from bot.changes import Refused
from bot.events import FollowupIssue, FollowupsOverdue, ReviewReminder
from bot.incidents import for_channel, incident_in
from bot.oplog import op
from bot.outbox.queue import enqueue
from bot.incident_command import require_command
from bot.services import Services
from bot.store import read_scope, session_scope
from bot.store.command_tables import FollowUp
from bot.store.incident_tables import Incident, IncidentStatus
from bot.store.models import aware

OPEN, DONE = "open", "done"


def add(services: Services, actor: Actor, channel: str | None, text: str, owner: str = "", owner_name: str = "",
        due_at: datetime | None = None) -> FollowUp:
    """A follow-up of the channel's incident (open or resolved)."""
    with session_scope(services.engine) as s:
        inc = incident_in(s, channel)
        row = FollowUp(incident_id=inc.id, text=text, owner=owner, owner_name=owner_name, due_at=due_at,
                       created_by=actor.id, created_at=services.clock())
        s.add(row)
        s.flush()
        record(s, actor, "followup.added", target=inc.title, incident_id=inc.id, text=text,
               detail={"followup": row.id, "owner": owner, "name": owner_name,
                       "due": due_at.isoformat() if due_at else None})
        if services.config.incidents.followups.tracker:
            enqueue(s, FollowupIssue(followup_id=row.id), services.clock())
    op("followup.added", incident_id=row.incident_id, followup=row.id, user=actor.id, owner=owner or None)
    _poke(services)
    return row


def done(services: Services, actor: Actor, followup_id: int) -> FollowUp:
    """Mark a follow-up done (its owner, whoever added it, or incident_update); once."""
    with session_scope(services.engine) as s:
        row = s.get(FollowUp, followup_id)
        if row is None:
            raise Refused("no_followup", id=followup_id)
        if actor.id not in (row.owner, row.created_by):
            require_command(services, s, actor, s.get(Incident, row.incident_id))
        changed = s.execute(update(FollowUp).where(FollowUp.id == followup_id, FollowUp.state == OPEN)
                            .values(state=DONE, done_by=actor.id, done_at=services.clock())
                            .execution_options(synchronize_session=False)).rowcount == 1
        s.refresh(row)
        if changed:
            record(s, actor, "followup.done", target=str(followup_id), incident_id=row.incident_id, text=row.text,
                   detail={"followup": row.id})
    return row


def of_channel(services: Services, channel: str | None) -> tuple[Incident | None, list[FollowUp]]:
    """The channel's incident and its follow-ups; outside an incident channel, no incident
    and every open follow-up (the oldest due first)."""
    with read_scope(services.engine) as s:
        inc = for_channel(s, channel)
        stmt = select(FollowUp)
        stmt = stmt.where(FollowUp.incident_id == inc.id) if inc is not None else stmt.where(FollowUp.state == OPEN)
        rows = list(s.exec(stmt.order_by(col(FollowUp.state).desc(), col(FollowUp.due_at), col(FollowUp.id))))
    return inc, rows


def for_incident(s: Session, incident_id: int) -> list[FollowUp]:
    return list(s.exec(select(FollowUp).where(FollowUp.incident_id == incident_id).order_by(col(FollowUp.id))))


def reviewed(services: Services, actor: Actor, channel: str | None) -> Incident:
    """The postmortem review of the channel's (resolved) incident was held: no reminder."""
    with session_scope(services.engine) as s:
        inc = incident_in(s, channel)
        if inc.status is not IncidentStatus.RESOLVED:
            raise Refused("incident_not_resolved", id=inc.id, state=inc.status.value)
        require_command(services, s, actor, inc)
        if inc.reviewed_at is None:
            inc.reviewed_at = services.clock()
            record(s, actor, "incident.reviewed", target=inc.title, incident_id=inc.id)
    return inc


def remind(services: Services) -> dict[str, list[int]]:
    """The reminder job: reviews due (once per incident) and overdue follow-ups (once per
    ``remind_overdue_every``, one message per incident naming their owners)."""
    cfg = services.config.incidents
    now = services.clock()
    out: dict[str, list[int]] = {"reviews": [], "overdue": []}
    with session_scope(services.engine) as s:
        if cfg.review_within is not None:
            due = s.exec(select(Incident).where(Incident.status == IncidentStatus.RESOLVED,
                                                col(Incident.reviewed_at).is_(None),
                                                col(Incident.review_reminded_at).is_(None)))
            for inc in due:
                if inc.channel_id and inc.resolved_at and now - aware(inc.resolved_at) >= cfg.review_within:
                    inc.review_reminded_at = now
                    still = sum(1 for f in for_incident(s, inc.id) if f.state == OPEN)
                    enqueue(s, ReviewReminder(incident_id=inc.id, open_followups=still), now)
                    out["reviews"].append(inc.id)
        late: dict[int, list[int]] = defaultdict(list)
        for row in s.exec(select(FollowUp).where(FollowUp.state == OPEN, col(FollowUp.due_at).is_not(None),
                                                 FollowUp.due_at <= now)):
            if row.reminded_at is None or now - aware(row.reminded_at) >= cfg.followups.remind_overdue_every:
                row.reminded_at = now
                late[row.incident_id].append(row.id)
        for incident_id, ids in late.items():
            enqueue(s, FollowupsOverdue(incident_id=incident_id, followup_ids=ids, at=now.isoformat()), now)
            out["overdue"] += ids
    return out



def _poke(services: Services) -> None:
    if services.outbox is not None:
        services.outbox.poke()


def tracked(s: Session, followup_id: int, key: str, url: str) -> None:
    """Record the tracker's issue of a follow-up (the delivery's apply)."""
    row = s.get(FollowUp, followup_id)
    row.tracker_key, row.tracker_url = key, url
    record(s, SYSTEM, "followup.tracked", target=key, incident_id=row.incident_id, text=row.text,
           detail={"followup": followup_id, "key": key, "url": url})
