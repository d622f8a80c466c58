"""Delivery of pages: a trigger or resolve sent to the pager source (``bot.paging``), and
the pager's news or drbot's giving up, posted in the incident's channel (or, for a page
about no incident, in the channel it was asked from).

A page is safe to send again: the pager merges it into the alert of its dedup key. It is
tried ``registry.PAGE_ATTEMPTS`` times (429 after its Retry-After, 5xx with backoff);
then it gives up and the channel is told, naming what the pager said."""
from __future__ import annotations

from sqlmodel import Session

from bot.audit import SYSTEM, record
from bot.delivery.incidents import channel_of
from bot.events import PageNotice, PageSend
from bot.messenger import DeliveryFailed
from bot.outbox.kinds import Outcome
from bot.outbox.queue import enqueue
from bot.paging import page_of
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Incident


def _title(services: Services, source: str) -> str:
    backend = services.backends.get(source)
    return (backend.title or backend.kind) if backend is not None else source


def deliver_page(services: Services, ev: PageSend, _prepared, _item: int) -> Outcome:
    backend = services.backends.get(ev.source)
    if backend is None:
        raise DeliveryFailed(f"the pager source {ev.source!r} is no longer configured", transient=False)
    if ev.target is not None and ev.target not in services.config.paging.targets:
        raise DeliveryFailed(f"the paging target {ev.target!r} is no longer configured", transient=False)
    page = page_of(services, ev)
    result = backend.trigger(page) if ev.action == "trigger" else backend.resolve(page)
    kind = "page.sent" if ev.action == "trigger" else "page.resolved"
    services.metrics.pages.labels(backend.kind, ev.action).inc()

    def recorded(s: Session) -> None:
        record(s, SYSTEM, kind, target=result.to, incident_id=ev.incident_id,
               text=f"{result.to} ({ev.severity})" if ev.action == "trigger" else result.to,
               detail={"pager": _title(services, ev.source), "to": result.to, "why": ev.why,
                       "dedup_key": ev.dedup_key, "severity": ev.severity, "answer": result.message})

    return Outcome(result={"action": ev.action, "to": result.to, "dedup_key": result.dedup_key}, apply=recorded)


def page_given_up(services: Services, s: Session, ev: PageSend, error: str) -> None:
    """The page could not be sent: its channel is told (through the outbox), and its timeline."""
    pager = _title(services, ev.source)
    enqueue(s, PageNotice(what="failed", incident_id=ev.incident_id, channel=ev.channel, pager=pager,
                          to=ev.target or ev.service or "", error=error, ref=ev.key() or ev.stream()),
            services.clock())
    record(s, SYSTEM, "page.failed", target=ev.target or ev.service or "", incident_id=ev.incident_id,
           text=f"{ev.action} to {pager} gave up: {error}", detail={"pager": pager, "dedup_key": ev.dedup_key})


def deliver_notice(services: Services, ev: PageNotice, _prepared, _item: int) -> Outcome:
    inc = None
    channel = ev.channel
    if ev.incident_id is not None:
        with session_scope(services.engine) as s:
            inc = s.get(Incident, ev.incident_id)
        channel = channel_of(inc)
    if not channel:  # a page asked for outside any channel (the CLI): its log line is the notice
        return Outcome(result={"posted": False, "why": "no channel"})
    ts = services.messenger.post(channel, Reply("page_notice", ev.model_dump() | {"inc": inc}, ephemeral=False))
    return Outcome(result={"channel": channel, "ts": ts})
