"""The failback assistant: after a service was failed over away from its home region (the
config's ``services[].active``), suggest ONE "Plan failback" once the home region has been
healthy, and replication lag under ``watch.failback.lag_below`` (default: the service's lag
warning threshold), for ``watch.failback.after`` without a break. It never fails back.

- A break (the home region unhealthy or unread, lag unknown or at/above the threshold)
  resets the period: health that flaps never gets a suggestion.
- At most one suggestion per failover. A later move (``service_state.updated_at`` /
  ``changed_by_request`` change: a new failover) re-arms it; the service back home disarms it.
- While a change of the service is open (a failback pending approval, a drill running) the
  suggestion waits; the period keeps counting.

``decide`` is the pure part (no I/O, no clock). ``assist`` runs inside the readiness watch's
pass (``bot.watch.watch_once``) on the assessments it already read, in its transaction: it
keeps one ``failback_watch`` row per service away from home and, when it suggests, queues
the outbox event ``failback.suggestion`` (keyed by the move, so it is posted once) and puts
``failback.suggested`` on the timeline of the service's open incident, if there is one.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from bot.audit import SYSTEM, record
from bot.events import FailbackSuggestion
from bot.incidents import open_incident_of
from bot.outbox.queue import enqueue
from bot.readiness import Assessment
from bot.services import Services
from bot.store.failback_tables import FailbackWatch
from bot.store.models import ServiceState, aware
from bot.store.queries import open_changes

log = logging.getLogger(__name__)

LAG_CODES = ("lag_ok", "lag_warning", "lag_critical")
"""Findings of a lag that was read, fresh, as a number (``bot.readiness.assess_lag``)."""


# -- the pure part ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Armed:
    """What the assistant remembers of a service away from home (its ``failback_watch`` row)."""

    home: str
    away: str
    moved_at: datetime
    moved_by: int | None
    healthy_since: datetime | None = None
    suggested_at: datetime | None = None


@dataclass(frozen=True)
class Seen:
    """One pass's view of a service: where drbot's record says it runs, the move that put it
    there (None: never moved), and how its home region looks now."""

    home: str
    active: str
    moved_at: datetime | None
    moved_by: int | None
    home_healthy: bool
    lag: timedelta | None
    """None: unknown, stale or replication stopped."""
    lag_below: timedelta
    busy: bool = False
    """A change of the service is open (pending, approved, running, interrupted)."""

    @property
    def good(self) -> bool:
        return self.home_healthy and self.lag is not None and self.lag < self.lag_below


@dataclass(frozen=True)
class Decision:
    state: Armed | None
    """What to remember (None: the service is home, forget it)."""
    suggest: bool


def decide(previous: Armed | None, seen: Seen, now: datetime, after: timedelta) -> Decision:
    """The state after this pass and whether to suggest the failback now."""
    if seen.moved_at is None or seen.active == seen.home:
        return Decision(None, False)
    state = previous
    if state is None or (state.away, state.moved_at, state.moved_by) != (seen.active, seen.moved_at, seen.moved_by):
        state = Armed(seen.home, seen.active, seen.moved_at, seen.moved_by)  # a new failover: armed again
    since = (state.healthy_since or now) if seen.good else None
    state = dataclasses.replace(state, healthy_since=since)
    suggest = since is not None and state.suggested_at is None and not seen.busy and now - since >= after
    return Decision(dataclasses.replace(state, suggested_at=now) if suggest else state, suggest)


def home_healthy(a: Assessment, home: str) -> bool:
    """The home region's health was read, fresh, and is healthy."""
    return any(f.code == "healthy" and f.params.get("region") == home for f in a.findings)


def lag_now(a: Assessment) -> timedelta | None:
    return next((f.params["lag"] for f in a.findings if f.code in LAG_CODES), None)


# -- the pass ---------------------------------------------------------------------------------

def _armed(row: FailbackWatch | None) -> Armed | None:
    if row is None:
        return None
    return Armed(row.home_region, row.away_region, aware(row.moved_at), row.moved_by_request,
                 aware(row.healthy_since) if row.healthy_since else None,
                 aware(row.suggested_at) if row.suggested_at else None)


def _store(s: Session, service: str, row: FailbackWatch | None, d: Decision) -> bool:
    """Save the decision; True when this pass may suggest (it set ``suggested_at`` itself)."""
    if d.state is None:
        if row is not None:
            s.execute(delete(FailbackWatch).where(FailbackWatch.service == service))
        return False
    st = d.state
    values = {"home_region": st.home, "away_region": st.away, "moved_at": st.moved_at,
              "moved_by_request": st.moved_by, "healthy_since": st.healthy_since}
    if row is None:
        try:
            with s.begin_nested():
                s.add(FailbackWatch(service=service, suggested_at=None, **values))
        except IntegrityError:
            log.info("failback assistant: %s was recorded concurrently", service)
            return False
    else:
        rearmed = (row.away_region, aware(row.moved_at), row.moved_by_request) != (st.away, st.moved_at, st.moved_by)
        for name, value in values.items():
            setattr(row, name, value)
        if rearmed:
            row.suggested_at = None
        s.flush()
    if not d.suggest:
        return False
    # exactly once per failover, whoever else runs a pass now
    return s.execute(update(FailbackWatch).where(FailbackWatch.service == service,
                                                 FailbackWatch.moved_at == st.moved_at,
                                                 col(FailbackWatch.suggested_at).is_(None))
                     .values(suggested_at=st.suggested_at).execution_options(synchronize_session=False)).rowcount == 1


def assist(services: Services, s: Session, assessments: list[Assessment], now: datetime,
           channel_for: Callable[[Services, str], str | None]) -> list[dict[str, Any]]:
    """One pass over the watch's assessments; returns the suggestions made (with ``posted``:
    whether a post was queued; without a channel the suggestion is only recorded)."""
    cfg = services.config.watch.failback
    if not cfg.enabled:
        return []
    busy = open_changes(s, [a.service for a in assessments])
    out = []
    for a in assessments:
        svc = services.config.service(a.service)
        moved = s.get(ServiceState, a.service)
        row = s.get(FailbackWatch, a.service)
        if svc is None or (moved is not None and moved.active_region != a.active):
            continue  # moved while the report was read: judged at the next pass
        seen = Seen(home=svc.active, active=a.active, moved_at=aware(moved.updated_at) if moved else None,
                    moved_by=moved.changed_by_request if moved else None, home_healthy=home_healthy(a, svc.active),
                    lag=lag_now(a), lag_below=cfg.lag_below or svc.thresholds()[0], busy=a.service in busy)
        d = decide(_armed(row), seen, now, cfg.after)
        if _store(s, a.service, row, d):
            out.append(_suggest(services, s, a, seen, d.state, now, channel_for(services, a.service)))
    return out


def _suggest(services: Services, s: Session, a: Assessment, seen: Seen, st: Armed, now: datetime,
             channel: str | None) -> dict[str, Any]:
    inc = open_incident_of(s, a.service)
    suggestion = {
        "service": a.service, "tier": a.tier, "home": st.home, "away": st.away,
        "moved_at": st.moved_at.isoformat(), "moved_by_request": st.moved_by,
        "healthy_for_s": (now - st.healthy_since).total_seconds(), "lag_s": seen.lag.total_seconds(),
        "lag_below_s": seen.lag_below.total_seconds(), "at": now.isoformat(), "sandbox": a.sandbox,
    }
    posted = False
    if inc is not None or channel:
        posted = enqueue(s, FailbackSuggestion(service=a.service, moved=st.moved_at.isoformat(),
                                               incident_id=inc.id if inc else None,
                                               channel="" if inc else channel, suggestion=suggestion), now)
    record(s, SYSTEM, "failback.suggested", target=a.service, detail=suggestion,
           incident_id=inc.id if inc else None, service=a.service)
    log.info("failback assistant: %s home region %s healthy for %ss with lag %ss: failback suggested%s",
             a.service, st.home, round(suggestion["healthy_for_s"]), suggestion["lag_s"],
             "" if posted else " (no channel configured, not posted)")
    return suggestion | {"posted": posted, "incident_id": inc.id if inc else None}
