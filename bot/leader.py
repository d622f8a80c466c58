"""Leadership of one process per deployment (DESIGN.md "One scheduler per deployment").

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) held on one dedicated
  connection that stays open; it is released when that connection closes, including when
  the process dies. The default key is derived from the database and the schema, i.e. from
  where the job store lives, so deployments in different schemas never block each other.
- SQLite (one process by design): an exclusive non-blocking ``flock`` on
  ``<database file>.leader``, so two processes on one file still never both lead.
  In-memory SQLite is always leader.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)


def derive_key(text_: str) -> int:
    """A signed 64-bit advisory-lock key from a string."""
    return int.from_bytes(hashlib.blake2b(text_.encode(), digest_size=8).digest(), "big", signed=True)


class LeaderLock:
    """Who leads: see the module docstring. Thread-safe; ``acquire`` never blocks on a holder."""

    def __init__(self, engine: Engine, key: int | None = None):
        self.engine = engine
        self.dialect = engine.dialect.name
        self._key = key
        self._mutex = threading.Lock()
        self._conn: Connection | None = None
        self._fd: int | None = None
        self._held = False
        self.backend_pid: int | None = None
        """PostgreSQL: the server process holding the lock (tests terminate it)."""
        self.path: str | None = None
        if self.dialect == "sqlite":
            self.path = _sqlite_lock_path(engine)
        elif self.dialect != "postgresql":
            raise ValueError(f"no leader lock for {self.dialect!r}: use PostgreSQL or SQLite")

    @property
    def key(self) -> int | None:
        return self._key

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; True when held by us afterwards."""
        with self._mutex:
            if self._held:
                return True
            if self.dialect == "postgresql":
                self._held = self._acquire_pg()
            elif self.path is None:
                self._held = True  # in-memory SQLite: one process, always leader
            else:
                self._held = self._acquire_file()
            return self._held

    def _acquire_pg(self) -> bool:
        conn = self.engine.connect()
        try:
            conn.execution_options(isolation_level="AUTOCOMMIT")  # never idle in a transaction
            conn.detach()  # never back to the pool: closing it really closes the session
            if self._key is None:
                db, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
                self._key = derive_key(f"drbot.scheduler:{db}:{schema or ''}")
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}).scalar())
            if got:
                self.backend_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
                self._conn = conn
                return True
        except BaseException:
            _close_quietly(conn)
            raise
        _close_quietly(conn)
        return False

    def _acquire_file(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def is_held(self) -> bool:
        """Cheap re-check: PostgreSQL runs SELECT 1 on the lock's connection; an error means
        the session (and with it the lock) is gone."""
        with self._mutex:
            if not self._held:
                return False
            if self._conn is None:
                return True  # a file lock or in-memory SQLite cannot be lost while we live
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except Exception as exc:
                log.warning("leader lock connection lost (%s): leadership is gone", type(exc).__name__)
                self._drop()
                return False

    def release(self) -> None:
        with self._mutex:
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
                except Exception:
                    pass  # closing the session below releases it anyway
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            _close_quietly(self._conn)
            self._conn = None
            self.backend_pid = None
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
        self._held = False


def _sqlite_lock_path(engine: Engine) -> str | None:
    database = engine.url.database
    if not database or database == ":memory:" or "mode=memory" in database \
            or engine.url.query.get("mode") == "memory":
        return None
    return os.path.abspath(database) + ".leader"


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except Exception:
        pass
