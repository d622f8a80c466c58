"""What people and pagers do about pages: ``/dr page TARGET [MESSAGE]`` (a person pages a
configured target or a service's on-call, about the channel's incident or about nothing),
and the news a pager's webhook brings (acknowledged, resolved), reflected in the
incident's channel and on its timeline."""
from __future__ import annotations

from dataclasses import dataclass

from bot.actor import Actor
from bot.audit import record
from bot.events import PageNotice, PageSend
from bot.incidents import for_channel
from bot.oplog import op
from bot.outbox.queue import enqueue
from bot.paging import dedup_key, incident_of, page_of, standalone_key, summary
from bot.permissions import require
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Incident, IncidentStatus
from integrations.base import IntegrationError

ROLE = "incident_update"
"""Who may page by hand: those who may change an incident."""


class NotPaging(Exception):
    """``paging:`` is not configured: nobody can be paged."""


class Unroutable(Exception):
    """The pager has nowhere to send this page (e.g. no routing key for the service)."""


@dataclass(frozen=True)
class Paged:
    """What ``/dr page`` queued, for its confirmation."""

    name: str
    to: str
    pager: str
    incident_id: int | None
    dedup_key: str


def page_by_hand(services: Services, actor: Actor, channel: str | None, name: str, message: str,
                 is_target: bool) -> Paged:
    """Page ``name`` (a target of ``paging.targets`` when ``is_target``, else a service)
    about the open incident of ``channel``, or about nothing. Needs ``incident_update``."""
    cfg = services.config.paging
    if cfg is None:
        raise NotPaging()
    require(services, actor, ROLE)
    target = cfg.targets[name] if is_target else None
    source = (target.source if target is not None else None) or cfg.source
    backend = services.backends[source]
    now = services.clock()
    with session_scope(services.engine) as s:
        inc = for_channel(s, channel)
        if inc is not None and inc.status is IncidentStatus.RESOLVED:
            inc = None
        ev = PageSend(source=source, route=f"target:{name}" if is_target else f"service:{name}", action="trigger",
                      dedup_key=dedup_key(inc.id) if inc is not None else standalone_key(),
                      incident_id=inc.id if inc is not None else None, service=None if is_target else name,
                      target=name if is_target else None, severity=inc.severity if inc is not None else "sev2",
                      summary=summary(services, inc, message, name), why="manual", by=actor.id, channel=channel,
                      at=now.isoformat())
        try:  # a target or service with nowhere to go is refused now, not given up on later
            to = backend.route(page_of(services, ev))
        except IntegrationError as e:
            raise Unroutable(str(e)) from None
        enqueue(s, ev, now)
        record(s, actor, "page.requested", target=name, incident_id=ev.incident_id, text=message,
               detail={"to": to, "pager": backend.title or backend.kind, "dedup_key": ev.dedup_key})
    op("page.requested", user=actor.id, target=name, incident_id=ev.incident_id, source=source)
    if services.outbox is not None:
        services.outbox.poke()
    return Paged(name, to, backend.title or backend.kind, ev.incident_id, ev.dedup_key)


def pager_news(services: Services, pager: str, key: str | None, what: str, by: str, ref: str) -> int | None:
    """A pager says the page ``key`` was acknowledged or resolved by ``by``: told in the
    incident's channel and on its timeline, once per ``ref`` (the webhook event: pagers
    deliver again). Returns the drbot incident, or None when the key is none of drbot's
    incidents (ignored)."""
    incident_id = incident_of(key)
    if incident_id is None:
        return None
    with session_scope(services.engine) as s:
        inc = s.get(Incident, incident_id)
        if inc is None:
            return None
        notice = PageNotice(what=what, incident_id=incident_id, pager=pager, by=by, ref=f"{pager}:{ref}")
        if enqueue(s, notice, services.clock()):
            who = Actor(id=pager.lower(), name=by or pager, origin="pager")
            record(s, who, f"page.{what}", target=inc.title, incident_id=incident_id,
                   text=f"{what} by {by or 'someone'} in {pager}", detail={"pager": pager, "by": by, "ref": ref})
    op(f"page.{what}", incident_id=incident_id, pager=pager)
    if services.outbox is not None:
        services.outbox.poke()
    return incident_id
