"""The schema changes only through Alembic revisions (migrations/):

- a database made by the first release (tables from ``create_all``, no revision table),
  filled with data, is adopted and upgraded to the newest revision, and its data reads
  back through today's models, on SQLite and PostgreSQL;
- the newest revision builds exactly the schema the models describe: a model changed
  without a revision fails here.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import Session, select

from bot.store import make_engine
from bot.store.incident_tables import OutboxItem, OutboxState, PaceSlot
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run
from bot.store.schema import BASELINE, _config, current, head, metadata, pending, upgrade

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def _first_release(engine) -> None:
    """The tables as the first release made them, without Alembic's revision table."""
    with engine.begin() as conn:
        command.upgrade(_config(conn), BASELINE)
        conn.execute(text("DROP TABLE alembic_version"))


def test_a_first_release_database_is_adopted_and_upgraded_with_its_data(db_url):
    engine = make_engine(db_url)
    _first_release(engine)
    assert current(engine) is None and inspect(engine).has_table("change_request")
    assert not inspect(engine).has_table("pace_slot")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO change_request (kind, service, from_region, to_region, scenario, reason, requester,"
            " requester_name, state, required_approvals, break_glass, justification, created_at, expires_at,"
            " state_reason, preflight, channel, message_ts, origin)"
            " VALUES ('FAILOVER', 'orders', 'us-east-1', 'us-west-2', '', 'db down', 'UALICE', 'alice',"
            " 'SUCCEEDED', 1, false, '', :t0, :t1, '', '', 'C1', '1.0', 'slack')"), {"t0": T0, "t1": T0 + timedelta(minutes=30)})
        conn.execute(text(
            "INSERT INTO run (request_id, kind, service, state, approved_at, started_at, measured_rto_s, progress_ts,"
            " owner, error) VALUES (1, 'FAILOVER', 'orders', 'SUCCEEDED', :t0, :t0, 42.5, '', 'h:1', '')"),
            {"t0": T0})
        conn.execute(text(
            "INSERT INTO outbox_item (kind, stream, idempotency_key, payload, state, attempts, next_attempt_at,"
            " last_error, created_at, result, claimed_by) VALUES ('slack.alerts', 'slack:incident:1', 'k1',"
            " :p, 'PENDING', 0, :t0, '', :t0, '{}', '')"), {"p": json.dumps({"incident_id": 1}), "t0": T0})
    assert pending(engine)[-1] == head()

    upgrade(engine)

    assert current(engine) == head() and pending(engine) == []
    with Session(engine) as s:
        req = s.exec(select(ChangeRequest)).one()
        assert (req.kind, req.state, req.reason, req.created_at) == (RequestKind.FAILOVER, RequestState.SUCCEEDED,
                                                                    "db down", T0)
        assert s.exec(select(Run)).one().measured_rto_s == 42.5
        item = s.exec(select(OutboxItem)).one()
        # a queued item keeps its place under the kind's new name, with the new columns
        assert (item.kind, item.state, item.pace_key, item.coalesce_key) == (
            "incident.alerts", OutboxState.PENDING, "", None)
        s.add(PaceSlot(key="slack:C1", tat=1.0))
        s.commit()
    upgrade(engine)  # a second upgrade changes nothing
    assert current(engine) == head()
    engine.dispose()


def test_the_newest_revision_is_exactly_what_the_models_describe(db_url):
    engine = make_engine(db_url)
    with engine.begin() as conn:  # the revisions, one by one (not the shortcut for empty databases)
        command.upgrade(_config(conn), "head")
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False, "include_name": lambda name, type_, _p: not (
            type_ == "table" and name == "drbot_scheduler_jobs")})
        diff = compare_metadata(ctx, metadata)
    assert diff == [], ("the models changed without a migration: add one with `DATABASE_URL=... alembic "
                        f"revision --autogenerate -m '...'` and review it. Differences: {diff}")
    engine.dispose()
