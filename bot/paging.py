"""Paging by severity policy: an incident of a paging severity (``paging.severities``)
pages the on-call of its services when it opens or is raised into one, and its pages are
resolved when it is resolved. Every page is an outbox item (``bot.events.PageSend``)
queued in the transaction of the incident change causing it; ``bot.delivery.pages``
sends it.

One page per incident: its dedup key is ``drbot-incident-<id>``, so an alert storm, a
re-trigger at a new severity and a retry all land on the same pager alert. An incident of
several services pages each distinct route once (two services behind one routing key:
one page)."""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bot.events import PageSend
from bot.outbox.queue import enqueue, parse
from bot.render import Reply
from bot.services import Services
from bot.store.incident_tables import Incident, OutboxItem
from integrations.base import IntegrationError, Page

WHY = ("opened", "severity", "resolved")
_INCIDENT_KEY = re.compile(r"drbot-incident-([0-9]{1,18})")


def dedup_key(incident_id: int) -> str:
    return f"drbot-incident-{incident_id}"


def standalone_key() -> str:
    """The dedup key of a page about no incident (``/dr page`` outside an incident channel)."""
    return f"drbot-page-{uuid.uuid4().hex[:12]}"


def incident_of(key: str | None) -> int | None:
    """The drbot incident a dedup key (or PagerDuty incident key, Opsgenie alias) is about."""
    m = _INCIDENT_KEY.fullmatch(key or "")
    return int(m.group(1)) if m else None


def summary(services: Services, inc: Incident | None, message: str = "", target: str | None = None) -> str:
    """The one line the pager shows (templates/text/page_summary.txt.j2)."""
    services_of = json.loads(inc.services or "[]") if inc is not None else []
    text = services.renderer.text(Reply("page_summary", {"inc": inc, "services": services_of, "message": message,
                                                         "target": target}))
    return " ".join(text.split())


def page_of(services: Services, ev: PageSend) -> Page:
    """The page an outbox item sends: its target's route (read from the config now, so no
    secret is ever stored in the outbox) or its service's."""
    target = services.config.paging.targets.get(ev.target) if ev.target else None
    key = target.routing_key if target is not None else None
    details: dict[str, Any] = {"drbot_incident": ev.incident_id, "severity": ev.severity, "why": ev.why}
    if ev.by:
        details["requested_by"] = ev.by
    return Page(dedup_key=ev.dedup_key, summary=ev.summary, severity=ev.severity,
                service=target.service if target is not None else ev.service,
                details={k: v for k, v in details.items() if v is not None},
                routing_key=key.get_secret_value() if key is not None else None,
                responders=tuple(r.api() for r in target.responders) if target is not None else (),
                raised=ev.why == "severity")


def queue_pages(services: Services, s: Session, inc: Incident, why: str) -> int:
    """Queue the pages ``why`` (opened, severity, resolved) calls for, in the caller's
    transaction; returns how many. Opened or raised: a trigger per distinct route of the
    incident's services, when its severity pages. Resolved: a resolve for every page of
    the incident that was triggered (a /dr page of a target included)."""
    if why not in WHY:
        raise ValueError(f"why must be one of {', '.join(WHY)}, not {why!r}")
    cfg = services.config.paging
    if cfg is None:
        return 0
    now = services.clock()
    if why == "resolved":
        return _resolve_all(s, inc, now)
    if inc.severity not in cfg.severities:
        return 0
    text = summary(services, inc)
    queued = 0
    for service in _routes(services, cfg.source, inc, text):
        queued += enqueue(s, PageSend(source=cfg.source, route=f"service:{service}", action="trigger",
                                      dedup_key=dedup_key(inc.id), incident_id=inc.id, service=service,
                                      severity=inc.severity, summary=text, why=why, at=now.isoformat()), now)
    return queued


def _routes(services: Services, source: str, inc: Incident, text: str) -> list[str]:
    """One service of the incident per distinct route of the pager (its first service
    behind each). A service the pager has no route for keeps its own: its page fails
    visibly (a notice in the channel) instead of being dropped here."""
    backend = services.backends[source]
    firsts: dict[str, str] = {}
    for name in json.loads(inc.services or "[]") or ["drbot"]:
        try:
            where = backend.route(Page(dedup_key=dedup_key(inc.id), summary=text, service=name))
        except IntegrationError:
            where = f"unrouted:{name}"
        firsts.setdefault(where, name)
    return list(firsts.values())


def _resolve_all(s: Session, inc: Incident, now: datetime) -> int:
    streams: dict[str, PageSend] = {}
    prefix = PageSend.streams_of(dedup_key(inc.id))
    for item in s.exec(select(OutboxItem).where(OutboxItem.kind == PageSend.KIND,
                                                col(OutboxItem.stream).startswith(prefix, autoescape=True))
                       .order_by(col(OutboxItem.id))):
        ev = parse(item)
        if ev.action == "trigger":
            streams.setdefault(item.stream, ev)
    queued = 0
    for ev in streams.values():
        queued += enqueue(s, ev.model_copy(update={"action": "resolve", "why": "resolved", "by": "",
                                                   "at": now.isoformat()}), now)
    return queued


def pageable(services: Services) -> dict[str, str]:
    """What ``/dr page`` takes: every target (with its description) and every service."""
    cfg = services.config.paging
    out = {name: t.description for name, t in (cfg.targets.items() if cfg else ())}
    for name in services.config.service_names:
        out.setdefault(name, f"the on-call of {name}")
    return out
