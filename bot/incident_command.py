"""Incident command: who holds each role of an incident (commander, communications, scribe,
... as ``incidents.roles`` lists them), its severity, and the call-out of an incident that
still has no commander. Every change is a timeline event and, through the outbox, updates
the pinned summary and the channel's topic in place.

Who may: anyone may claim a role nobody holds yet (for themselves); handing a role to
someone, taking a held one, or changing the severity needs ``permissions.incident_update``
or being the incident's commander.
"""
from __future__ import annotations

from sqlmodel import Session, select

from bot.actor import Actor
from bot.audit import SYSTEM, record
from bot.events import CommanderMissing, IncidentSummary
from bot.incidents import NoIncident, incident_in, open_by_hand, open_incidents, publish_status, queue_ops_update
from bot.oplog import op
from bot.paging import queue_pages
from bot.outbox.queue import enqueue
from bot.permissions import require
from bot.services import Services
from bot.store import session_scope
from bot.store.db import insert_for
from bot.store.command_tables import IncidentRole
from bot.store.incident_tables import Incident, IncidentStatus
from bot.store.models import aware

COMMANDER = "commander"


def roles_of(s: Session, incident_id: int) -> dict[str, IncidentRole]:
    """Role -> who holds it."""
    return {r.role: r for r in s.exec(select(IncidentRole).where(IncidentRole.incident_id == incident_id)
                                      .execution_options(populate_existing=True))}


def set_role(services: Services, actor: Actor, channel: str | None, role: str, user: str,
             user_name: str = "") -> tuple[Incident, str | None]:
    """``user`` holds ``role`` of the channel's incident now; (the incident, who held it before)."""
    with session_scope(services.engine) as s:
        inc = _open_in(s, channel)
        previous = _assign(services, s, actor, inc, role, user, user_name)
    _poke(services)
    return inc, previous


def claim(services: Services, actor: Actor, incident_id: int, role: str) -> tuple[Incident, str | None]:
    """The Claim button: ``actor`` takes ``role`` of the incident."""
    with session_scope(services.engine) as s:
        inc = _open_by_id(s, incident_id)
        previous = _assign(services, s, actor, inc, role, actor.id, actor.name)
    _poke(services)
    return inc, previous


def declare(services: Services, actor: Actor, title: str, severity: str, names: list[str],
            commander: str | None = None, commander_name: str = "") -> Incident:
    """The declare-incident modal: ``open_by_hand`` (``incident_open``), and the commander
    the declarer named, if any (naming them is part of declaring: no other permission)."""
    inc = open_by_hand(services, actor, title, severity, names)
    if commander and COMMANDER in services.config.incidents.roles:
        with session_scope(services.engine) as s:
            _assign(services, s, actor, _open_by_id(s, inc.id), COMMANDER, commander, commander_name,
                    by_opener=True)
        _poke(services)
    return inc


def _assign(services: Services, s: Session, actor: Actor, inc: Incident, role: str, user: str,
            user_name: str, by_opener: bool = False) -> str | None:
    if role not in services.config.incidents.roles:
        raise ValueError(f"{role!r} is not one of incidents.roles")
    held = roles_of(s, inc.id)
    previous = held[role].user_id if role in held else None
    if previous == user:
        return previous
    now = services.clock()
    table = IncidentRole.__table__
    values = {"user_id": user, "user_name": user_name, "assigned_by": actor.id, "assigned_at": now}
    insert = insert_for(s, IncidentRole).values(incident_id=inc.id, role=role, **values)
    claimed = False
    if user == actor.id and previous is None:  # a free role, claimed for oneself: anyone, if still free
        claimed = s.execute(insert.on_conflict_do_nothing().returning(table.c.role)).first() is not None
        if not claimed:  # taken meanwhile (another replica, a double click): now it is a held role
            held = roles_of(s, inc.id)
            previous = held[role].user_id
            if previous == user:
                return previous
    if not claimed:
        if not by_opener:
            _may_command(services, actor, held)
        s.execute(insert.on_conflict_do_update(index_elements=["incident_id", "role"], set_=values))
    record(s, actor, "incident.role", target=inc.title, incident_id=inc.id, text=role,
           detail={"role": role, "user": user, "name": user_name, "previous": previous})
    enqueue(s, IncidentSummary(incident_id=inc.id), now)
    if role == COMMANDER:
        queue_ops_update(services, s, inc, "commander", actor)
    op("incident.role", incident_id=inc.id, user=actor.id, role=role, holder=user, previous=previous)
    return previous


def set_severity(services: Services, actor: Actor, channel: str | None, severity: str, reason: str) -> tuple[Incident, str]:
    """Change the channel's incident's severity; the status page follows the new severity's
    policy, and a raise pages per ``paging.severities``. Returns (the incident, the severity before)."""
    with session_scope(services.engine) as s:
        inc = _open_in(s, channel)
        previous = _change_severity(services, s, actor, inc, severity, reason)
    _poke(services)
    return inc, previous


def set_severity_of(services: Services, actor: Actor, incident_id: int, severity: str,
                    reason: str) -> tuple[Incident, str]:
    """The severity modal (from the pinned summary): like ``set_severity``, by the incident's id."""
    with session_scope(services.engine) as s:
        inc = _open_by_id(s, incident_id)
        previous = _change_severity(services, s, actor, inc, severity, reason)
    _poke(services)
    return inc, previous


def set_role_of(services: Services, actor: Actor, incident_id: int, role: str, user: str,
                user_name: str = "") -> tuple[Incident, str | None]:
    """The role modal (from the pinned summary): like ``set_role``, by the incident's id."""
    with session_scope(services.engine) as s:
        inc = _open_by_id(s, incident_id)
        previous = _assign(services, s, actor, inc, role, user, user_name)
    _poke(services)
    return inc, previous


def _change_severity(services: Services, s: Session, actor: Actor, inc: Incident, severity: str, reason: str) -> str:
    _may_command(services, actor, roles_of(s, inc.id))
    previous = inc.severity
    if previous != severity:
        inc.severity = severity
        record(s, actor, "incident.severity", target=inc.title, incident_id=inc.id, text=reason,
               detail={"from": previous, "to": severity})
        publish_status(services, s, inc)
        if severity < previous:  # raised (sev1 is the highest): the pager follows the new severity's policy
            queue_pages(services, s, inc, "severity")
        enqueue(s, IncidentSummary(incident_id=inc.id), services.clock())
        queue_ops_update(services, s, inc, "severity", actor)
        op("incident.severity", incident_id=inc.id, user=actor.id, outcome=severity, previous=previous)
    return previous


def call_out_missing_commanders(services: Services) -> list[int]:
    """Open incidents without a commander ``incidents.commander_within`` after opening are
    called out in their channel, once each (the scheduler's reminder job)."""
    cfg = services.config.incidents
    if cfg.commander_within is None or COMMANDER not in cfg.roles:
        return []
    now = services.clock()
    called = []
    with session_scope(services.engine) as s:
        commanded = set(s.exec(select(IncidentRole.incident_id).where(IncidentRole.role == COMMANDER)))
        for inc in open_incidents(s):
            waited = now - aware(inc.opened_at)
            if (inc.channel_id and inc.commander_called_at is None and inc.id not in commanded
                    and waited >= cfg.commander_within):
                inc.commander_called_at = now
                record(s, SYSTEM, "incident.no_commander", target=inc.title, incident_id=inc.id,
                       detail={"after_s": waited.total_seconds()})
                enqueue(s, CommanderMissing(incident_id=inc.id, after=waited.total_seconds()), now)
                called.append(inc.id)
    return called


def require_command(services: Services, s: Session, actor: Actor, inc: Incident) -> None:
    """Refused unless ``actor`` is the incident's commander or holds ``incident_update``."""
    _may_command(services, actor, roles_of(s, inc.id))


def _may_command(services: Services, actor: Actor, held: dict[str, IncidentRole]) -> None:
    if COMMANDER not in held or held[COMMANDER].user_id != actor.id:
        require(services, actor, "incident_update")


def _open_in(s: Session, channel: str | None) -> Incident:
    inc = incident_in(s, channel)
    if inc.status is IncidentStatus.RESOLVED:
        raise NoIncident(channel)
    return inc


def _open_by_id(s: Session, incident_id: int) -> Incident:
    inc = s.get(Incident, incident_id)
    if inc is None or inc.status is IncidentStatus.RESOLVED:
        raise NoIncident(incident_id)
    return inc


def _poke(services: Services) -> None:
    if services.outbox is not None:
        services.outbox.poke()
