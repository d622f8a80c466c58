"""Who is on call now, per named schedule (``paging.schedules``), as Slack user IDs.

Read from the pager (PagerDuty REST schedules, Opsgenie Who Is On Call) through the
source's ``on_call(schedule)``, and cached for ``paging.on_call_cache`` (by the services'
clock) so a burst of clicks and message renders asks the pager once. The pager's people
(e-mail addresses, Opsgenie usernames) become Slack users through ``paging.people``, or,
for an e-mail address it does not list, the Slack user with that address
(``users.lookupByEmail``, needs the scope ``users:read.email``).

Fails closed: a schedule that cannot be read raises ``OnCallUnknown`` with the reason in
words (never "nobody" and never "everybody"); failures are not cached, so the next click
asks again.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from bot.services import Services
from integrations.base import IntegrationError

CACHE_KEY = "on_call_cache"


class OnCallUnknown(Exception):
    """The schedule could not be read; ``str(e)`` says why, for people."""


@dataclass(frozen=True)
class OnCall:
    schedule: str
    """The name in ``paging.schedules``."""
    users: frozenset[str]
    """Slack user IDs of the people on call now."""
    unknown: tuple[str, ...]
    """People on call whom ``paging.people`` does not name (they cannot fill a slot)."""
    read_at: datetime


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits: dict[str, OnCall] = {}


def _cache(services: Services) -> _Cache:
    cache = services.extras.get(CACHE_KEY)
    if cache is None:
        cache = services.extras.setdefault(CACHE_KEY, _Cache())
    return cache


def on_call(services: Services, name: str) -> OnCall:
    """Who is on call now in schedule ``name`` (cached); ``OnCallUnknown`` when unreadable."""
    paging = services.config.paging
    if paging is None or name not in paging.schedules:
        raise OnCallUnknown(f"no on-call schedule named {name!r} is configured (paging.schedules)")
    cache, now = _cache(services), services.clock()
    with cache.lock:
        hit = cache.hits.get(name)
        if hit is not None and now - hit.read_at < paging.on_call_cache:
            return hit
    spec = paging.schedules[name]
    source = spec.source or paging.source
    backend = services.backends.get(source)
    reader = getattr(backend, "on_call", None)
    if reader is None:
        raise OnCallUnknown(f"source {source!r} cannot read on-call schedules")
    try:
        now_on = reader(spec.schedule)
    except IntegrationError as e:
        raise OnCallUnknown(str(e)) from e
    except Exception as e:  # a pager bug must not approve or crash the click: said, fail closed
        raise OnCallUnknown(f"{source}: reading schedule {spec.schedule} failed ({type(e).__name__}: {e})") from e
    people = {k.lower(): v for k, v in paging.people.items()}
    for person in now_on.people:  # not listed: the Slack user with that e-mail address, if any
        if person not in people and (user := services.directory.user_by_email(person)) is not None:
            people[person] = user
    users = frozenset(people[p] for p in now_on.people if p in people)
    unknown = tuple(sorted(p for p in now_on.people if p not in people))
    found = OnCall(name, users, unknown, now)
    with cache.lock:
        cache.hits[name] = found
    return found
