"""bot.store on SQLite and PostgreSQL: schema, aware UTC times, rollback on error."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError, StatementError
from sqlmodel import select

from bot.store import create_schema, make_engine, session_scope
from bot.store.batch import Write, Writes, apply, commit
from bot.store.db import normalise_url
from bot.store.models import AuditEntry, ChangeRequest, RequestKind, RequestState
from tests.helpers import wait_until
from tests.postgres import temporary_schema

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    create_schema(engine)
    yield engine
    engine.dispose()


def test_create_schema_creates_every_table_and_is_idempotent(engine):
    create_schema(engine)  # a second call changes nothing and does not fail
    tables = set(inspect(engine).get_table_names())
    assert {"audit_entry", "change_request", "approval", "run", "run_step", "service_state",
            "timeline_event"} <= tables


def test_aware_times_in_any_zone_come_back_as_equal_aware_utc(engine):
    at = datetime(2024, 3, 31, 1, 30, 15, 123456, tzinfo=BERLIN)          # CET, just before the DST switch
    created = datetime(2024, 7, 4, 9, 0, 0, tzinfo=NEW_YORK)              # EDT
    expires = created + timedelta(minutes=30)
    decided = datetime(2024, 7, 4, 15, 10, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    with session_scope(engine) as s:
        s.add(AuditEntry(at=at, actor="U0ALICE01", actor_name="alice", origin="shell", action="status",
                         target="orders", detail='{"k": "v"}'))
        s.add(ChangeRequest(kind=RequestKind.FAILOVER, service="orders", from_region="us-east-1",
                            to_region="us-west-2", requester="U0ALICE01", created_at=created,
                            expires_at=expires, decided_at=decided))

    with session_scope(engine) as s:
        entry = s.exec(select(AuditEntry)).one()
        request = s.exec(select(ChangeRequest)).one()

    for got, wrote in ((entry.at, at), (request.created_at, created), (request.expires_at, expires),
                       (request.decided_at, decided)):
        assert got.tzinfo is not None
        assert got.utcoffset() == timedelta(0)
        assert got == wrote                                                  # the same instant
        assert got == wrote.astimezone(timezone.utc)
    assert entry.at.microsecond == 123456
    assert entry.at.replace(tzinfo=None) == datetime(2024, 3, 31, 0, 30, 15, 123456)
    assert request.closed_at is None
    assert request.state is RequestState.PENDING
    assert (entry.actor, entry.detail) == ("U0ALICE01", '{"k": "v"}')


def test_times_compare_in_queries_as_instants(engine):
    base = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    with session_scope(engine) as s:
        for i, zone in enumerate((BERLIN, NEW_YORK, timezone.utc)):
            s.add(AuditEntry(at=(base + timedelta(minutes=i)).astimezone(zone), actor=f"U{i}XX", action="a"))
    cutoff = (base + timedelta(seconds=30)).astimezone(NEW_YORK)
    with session_scope(engine) as s:
        later = s.exec(select(AuditEntry).where(AuditEntry.at > cutoff).order_by(AuditEntry.at)).all()
    assert [e.actor for e in later] == ["U1XX", "U2XX"]


def test_default_times_are_aware_utc(engine):
    before = datetime.now(timezone.utc)
    with session_scope(engine) as s:
        s.add(AuditEntry(actor="U0BOB0002", action="status"))
    with session_scope(engine) as s:
        entry = s.exec(select(AuditEntry)).one()
    assert entry.at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= entry.at <= datetime.now(timezone.utc) + timedelta(seconds=1)


def test_a_naive_datetime_is_refused_and_nothing_is_written(engine):
    with pytest.raises(StatementError) as err:
        with session_scope(engine) as s:
            s.add(AuditEntry(at=datetime(2024, 1, 1, 12, 0), actor="U0ALICE01", action="status"))
    assert isinstance(err.value.orig, ValueError)
    assert "naive datetime" in str(err.value)
    assert "timezone-aware UTC only" in str(err.value)
    with session_scope(engine) as s:
        assert s.exec(select(AuditEntry)).all() == []


def test_a_naive_datetime_is_refused_in_a_change_request(engine):
    aware = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    with pytest.raises(StatementError, match="naive datetime"):
        with session_scope(engine) as s:
            s.add(ChangeRequest(kind=RequestKind.DRILL, service="orders", requester="U0ALICE01",
                                created_at=aware, expires_at=datetime(2024, 1, 1, 12, 30)))
    with session_scope(engine) as s:
        assert s.exec(select(ChangeRequest)).all() == []


def test_session_scope_rolls_back_on_error(engine):
    aware = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    with pytest.raises(RuntimeError, match="boom"):
        with session_scope(engine) as s:
            s.add(AuditEntry(at=aware, actor="U0ALICE01", action="first"))
            s.add(ChangeRequest(kind=RequestKind.DRILL, service="orders", requester="U0ALICE01",
                                created_at=aware, expires_at=aware))
            s.flush()  # the rows reach the database inside the transaction...
            assert s.exec(select(AuditEntry)).one().action == "first"
            raise RuntimeError("boom")
    with session_scope(engine) as s:  # ...and are gone after the rollback
        assert s.exec(select(AuditEntry)).all() == []
        assert s.exec(select(ChangeRequest)).all() == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM audit_entry")).scalar_one() == 0


def test_session_scope_commits_on_success(engine):
    with session_scope(engine) as s:
        s.add(AuditEntry(actor="U0ALICE01", action="ok"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT action FROM audit_entry")).scalars().all() == ["ok"]


def test_engine_dialect_matches_the_url(db_url, engine):
    expected = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    assert engine.dialect.name == expected
    if expected == "postgresql":
        assert engine.dialect.driver == "psycopg"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db:5432/drbot", "postgresql+psycopg://u:p@db:5432/drbot"),
        ("postgresql://u:p@db:5432/drbot", "postgresql+psycopg://u:p@db:5432/drbot"),
        ("postgresql://db/drbot?sslmode=require", "postgresql+psycopg://db/drbot?sslmode=require"),
        ("postgresql+psycopg://db/drbot", "postgresql+psycopg://db/drbot"),
        ("postgresql+psycopg2://db/drbot", "postgresql+psycopg2://db/drbot"),
        ("sqlite:///drbot.db", "sqlite:///drbot.db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_normalise_url(url, expected):
    assert normalise_url(url) == expected


def _by_action(table, bind):
    return table.c.action == bind("action")


def test_a_batch_is_one_transaction_that_folds_or_inserts_and_says_which(engine):
    """bot.store.batch on both databases: writes and the final INSERT commit together
    (one statement on PostgreSQL); an UPDATE that changes no row inserts its ``otherwise``,
    and the caller learns how many rows were inserted that way."""
    t = AuditEntry.__table__
    at = datetime.now(timezone.utc)

    def entry(action: str, detail: str) -> dict:
        return {"at": at, "actor": "drbot", "actor_name": "drbot", "origin": "system", "action": action,
                "target": "orders", "detail": detail}

    def once(detail: str) -> tuple[int, int]:
        writes = Writes()
        writes.add(Write(t, {"detail": detail}, where=_by_action, params={"action": "progress"},
                         otherwise=entry("progress", detail)))
        return commit(engine, writes, Write(t, entry("step", detail)), "id")

    first_id, inserted = once("one")
    assert inserted == 1  # nothing to fold into: queued
    second_id, inserted = once("two")
    assert inserted == 0 and second_id > first_id  # folded into the row the first one inserted
    with session_scope(engine) as s:
        rows = s.exec(select(AuditEntry).order_by(AuditEntry.action, AuditEntry.id)).all()
    assert [(r.action, r.detail) for r in rows] == [("progress", "two"), ("step", "one"), ("step", "two")]


def test_a_batch_without_a_final_insert_keeps_the_order_of_its_inserts(engine):
    """bot.store.batch.apply: on PostgreSQL the writes are CTEs of one statement, which run
    in no set order; rows inserted into one table still get their ids in the order written
    (the run's last step is audited before the run's end), and an UPDATE that matches no row
    inserts its ``otherwise``, counted."""
    t = AuditEntry.__table__
    at = datetime.now(timezone.utc)

    def entry(action: str, detail: str = "") -> dict:
        return {"at": at, "actor": "drbot", "actor_name": "drbot", "origin": "system", "action": action,
                "target": "orders", "detail": detail}

    for n in range(3):  # a shape is built once and reused: the order holds every time
        writes = Writes()
        for action in ("step.succeeded", "request.rolled_back", "run.succeeded"):
            writes.add(Write(t, entry(action, str(n))))
        writes.add(Write(t, {"detail": str(n)}, where=_by_action, params={"action": "progress"},
                         otherwise=entry("progress", str(n))))
        assert apply(engine, writes) == (1 if n == 0 else 0)
    with session_scope(engine) as s:
        rows = s.exec(select(AuditEntry).where(AuditEntry.action != "progress").order_by(AuditEntry.id)).all()
        progress = s.exec(select(AuditEntry).where(AuditEntry.action == "progress")).all()
    assert [(r.action, r.detail) for r in rows] == [
        (action, str(n)) for n in range(3) for action in ("step.succeeded", "request.rolled_back", "run.succeeded")]
    assert [p.detail for p in progress] == ["2"]


def _by_id(table, bind):
    return table.c.id == bind("id")


def test_a_batch_statement_that_postgresql_aborts_for_a_deadlock_runs_again(pg_url, caplog):
    """Two transactions lock the same rows in opposite orders: PostgreSQL aborts one. When
    it is the batch's statement (its CTEs lock in no set order), it ran whole or not at all,
    so it runs again and succeeds. Made deterministic: the other transaction waits 10 s
    before it looks for a deadlock, the batch 1 s (the default), so the batch is the one
    aborted."""
    with temporary_schema(pg_url) as url:
        engine = make_engine(url)
        create_schema(engine)
        t = AuditEntry.__table__
        at = datetime.now(timezone.utc)
        with session_scope(engine) as s:
            for action in ("x", "y"):
                s.execute(t.insert(), {"at": at, "actor": "drbot", "actor_name": "drbot", "origin": "system",
                                       "action": action, "target": "", "detail": ""})
        ids = [row.id for row in session_scope_rows(engine)]
        writes = Writes()
        for row_id in ids:
            writes.add(Write(t, {"detail": "batch"}, where=_by_id, params={"id": row_id}))
        other, probe = engine.connect(), engine.connect()
        tx = other.begin()
        other.execute(text("SET LOCAL deadlock_timeout = '10s'"))

        def held(row_id: int) -> bool:
            try:
                with probe.begin():
                    probe.execute(text("SELECT id FROM audit_entry WHERE id = :id FOR UPDATE NOWAIT"), {"id": row_id})
                return False
            except OperationalError:
                return True

        done: list = []
        thread = threading.Thread(target=lambda: done.append(apply(engine, writes)))
        try:
            with caplog.at_level(logging.WARNING, logger="bot.store.batch"):
                first, second = ids  # PostgreSQL 15 runs these CTEs last first: the batch takes y, waits for x
                other.execute(t.update().where(t.c.id == first).values(detail="other"))
                thread.start()
                wait_until("the batch to hold the other row", lambda: held(second), timeout=10)
                other.execute(t.update().where(t.c.id == second).values(detail="other"))  # a cycle
                tx.commit()
                thread.join(30)
        finally:
            other.close()
            probe.close()
        assert done == [0]
        assert any("40P01" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
        assert [row.detail for row in session_scope_rows(engine)] == ["batch", "batch"]  # it ran again, last
        engine.dispose()


def session_scope_rows(engine) -> list[AuditEntry]:
    with session_scope(engine) as s:
        return list(s.exec(select(AuditEntry).order_by(AuditEntry.id)))
