"""Creating the tables (every table module is imported here, so all are registered)."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from bot.store import drill_tables, incident_tables, models  # noqa: F401  (registers the tables)


def create_schema(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        SQLModel.metadata.create_all(engine)
        return
    # replicas starting together on an empty database would race on CREATE TYPE / TABLE:
    # one creates, the others wait for its commit, then find everything there
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        SQLModel.metadata.create_all(conn)


_SCHEMA_LOCK = 0x6472626F74534348  # 'drbotSCH': serialises create_schema across processes


