"""Who belongs to which Slack user group, cached with a short TTL. Fails closed: when the
membership cannot be read, nobody is treated as a member."""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable


class DirectoryError(Exception):
    pass


class Directory:
    def __init__(self, fetch: Callable[[str], Iterable[str]] | None = None, ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, by_email: Callable[[str], str | None] | None = None):
        self._fetch = fetch
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()
        self._by_email = by_email
        self._emails: dict[str, tuple[float, str | None]] = {}

    def user_by_email(self, email: str) -> str | None:
        """The Slack user with this e-mail address (cached like memberships); None when there
        is none, it cannot be read, or no workspace is connected: never a guess."""
        if self._by_email is None or "@" not in email:
            return None
        now, key = self._clock(), email.lower()
        with self._lock:
            hit = self._emails.get(key)
            if hit and now - hit[0] < self._ttl:
                return hit[1]
        try:
            user = self._by_email(key)
        except Exception:  # users:read.email missing, no such user, Slack slow: not known
            return None
        with self._lock:
            self._emails[key] = (now, user)
        return user

    def members(self, group_id: str) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(group_id)
            if hit and now - hit[0] < self._ttl:
                return hit[1]
        if self._fetch is None:
            return frozenset()
        try:
            members = frozenset(self._fetch(group_id))
        except Exception as e:
            raise DirectoryError(f"could not read the members of user group {group_id}: {e}") from e
        with self._lock:
            self._cache[group_id] = (now, members)
        return members

    def includes(self, user_id: str, ids: Iterable[str]) -> bool:
        """Is ``user_id`` listed, directly or through a user group (S...)?"""
        ids = tuple(ids)
        if user_id in ids:
            return True
        return any(user_id in self.members(g) for g in ids if g.startswith("S"))
