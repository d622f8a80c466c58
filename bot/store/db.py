"""Engine creation and sessions. SQLite by default (nothing to install), PostgreSQL through
``DATABASE_URL``. Times are stored and returned timezone-aware UTC on both."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterator, TypeVar

from sqlalchemy import DateTime, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

DEFAULT_URL = "sqlite:///drbot.db"


class UTCDateTime(TypeDecorator):
    """A datetime column that refuses naive values and always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: drbot stores timezone-aware UTC only")
        value = value.astimezone(timezone.utc)
        # SQLite has no time zones: store naive UTC text, restore the zone on the way out.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def normalise_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_engine(url: str = DEFAULT_URL, echo: bool = False) -> Engine:
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_serialised_writes(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_serialised_writes(engine: Engine) -> None:
    """WAL, foreign keys, and BEGIN IMMEDIATE so that concurrent writers queue on the
    busy timeout instead of failing: conditional updates stay exactly-once in one process.
    A ``read_scope`` begins a plain (deferred) transaction with ``query_only`` on: it never
    queues behind a writer, nor makes one wait, and any write in it fails."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below decide
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()
        record.info[READ_ONLY] = False  # a new connection (also after a reconnect) writes

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        read_only = bool(conn.get_execution_options().get(READ_ONLY))
        if conn.info.get(READ_ONLY, False) != read_only:  # per connection, set only when it changes
            conn.exec_driver_sql(f"PRAGMA query_only={int(read_only)}")
            conn.info[READ_ONLY] = read_only
        # a reader takes no lock: in WAL mode it reads a snapshot while a writer commits
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


ABORTED = frozenset({"40P01", "40001"})
"""PostgreSQL's deadlock detected and serialization failure: the database rolled one
transaction back to let another finish; the same work, run again, can succeed."""
ATTEMPTS = 3
T = TypeVar("T")
log = logging.getLogger(__name__)


def aborted(e: BaseException) -> bool:
    """Whether ``e`` is the database rolling a transaction back to break a deadlock."""
    return isinstance(e, DBAPIError) and getattr(e.orig, "sqlstate", None) in ABORTED


def again_if_aborted(what: str, work: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """``work()`` (a whole transaction of its own, so that nothing of a rolled-back try is
    left), run again when the database aborts it for a deadlock or a serialization failure,
    up to ``attempts`` times; any other error, or the last abort, is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as e:
            if attempt == attempts or not aborted(e):
                raise
            log.warning("%s rolled back by the database (%s), attempt %d of %d: running it again",
                        what, e.orig.sqlstate, attempt, attempts)
    raise AssertionError("unreachable")


def insert_for(session: Session, model):
    """An INSERT of ``model`` for the session's database, which takes ``ON CONFLICT``
    (``.on_conflict_do_nothing()``, ``.on_conflict_do_update(...)``) on both."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


READ_ONLY = "drbot_read_only"
_READ_OPTIONS = {READ_ONLY: True, "postgresql_readonly": True}


@contextmanager
def read_scope(engine: Engine) -> Iterator[Session]:
    """One read-only transaction, for code that only reads (status, plans, pre-flight,
    request views, polling). It takes no write lock: on SQLite a deferred ``BEGIN`` (a
    snapshot, not ``BEGIN IMMEDIATE``) with ``PRAGMA query_only``; on PostgreSQL ``BEGIN
    READ ONLY``. A write in it fails (the database refuses it, or this scope does at its
    end); what was read stays usable after it closes. Exactly-once changes keep
    ``session_scope``."""
    with Session(engine, expire_on_commit=False, autoflush=False, execution_options=_READ_OPTIONS) as session:
        try:
            yield session
            if session.new or session.dirty or session.deleted:
                raise RuntimeError("read_scope holds unsaved changes: write in session_scope")
            session.commit()  # ends the snapshot; unlike a rollback it keeps what was read loaded
        except BaseException:
            session.rollback()
            raise


def read_once(engine: Engine, statement, params: dict | None = None) -> list:
    """The rows of one read-only statement, which is its own snapshot: on PostgreSQL with no
    transaction around it (one round trip instead of three), on SQLite in a ``read_scope``
    (a deferred BEGIN: never the write lock a connection's BEGIN IMMEDIATE takes)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return conn.execute(statement, params or {}).all()
    with read_scope(engine) as s:
        return s.execute(statement, params or {}).all()
