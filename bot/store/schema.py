"""The schema: every table module is imported here (so all are registered in ``metadata``),
and Alembic's revisions in ``migrations/`` are the only way it changes.

``upgrade`` brings a database to the newest revision (several replicas at once on
PostgreSQL are serialised by an advisory lock); a database made by the first release,
before migrations existed, is adopted at the baseline revision first. An empty database
is created from the models and stamped with the newest revision (Alembic's advice for new
databases); ``tests/test_migrations.py`` proves the revisions build the same schema. ``pending`` says
which revisions a database lacks, so ``drbot run`` can refuse an old schema.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

import migrations
from bot.store import command_tables, drill_tables, evacuation_tables, failback_tables, incident_tables, models  # noqa: F401  (registers the tables)

metadata = SQLModel.metadata
BASELINE = "0001_baseline"
_SCHEMA_LOCK = 0x6472626F74534348  # 'drbotSCH': serialises upgrades across processes


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: no drbot schema, or made before migrations)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def pending(engine: Engine) -> list[str]:
    """Revisions newer than the database's, oldest first (empty: up to date)."""
    script = ScriptDirectory.from_config(_config())
    at = current(engine)
    if at is None and _has_tables(engine):
        at = BASELINE
    return [r.revision for r in reversed(list(script.iterate_revisions(script.get_current_head(), at)))]


def _has_tables(engine_or_conn) -> bool:
    return inspect(engine_or_conn).has_table("change_request")


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest revision (an empty one: create everything)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        cfg = _config(conn)
        if MigrationContext.configure(conn).get_current_revision() is None:
            if not _has_tables(conn):
                metadata.create_all(conn)
                command.stamp(cfg, "head")
                return
            command.stamp(cfg, BASELINE)  # made by create_all before migrations existed
        command.upgrade(cfg, "head")


class SchemaBehind(Exception):
    """The database lacks revisions this drbot needs; ``pending`` names them."""

    def __init__(self, pending: list[str]):
        super().__init__(", ".join(pending))
        self.pending = pending


def prepare(engine: Engine, migrate: bool) -> None:
    """A new (empty) database is created; an older one is upgraded only when ``migrate``,
    otherwise SchemaBehind says which revisions are missing."""
    missing = pending(engine) if _has_tables(engine) else []
    if missing and not migrate:
        raise SchemaBehind(missing)
    upgrade(engine)


def create_schema(engine: Engine) -> None:
    """Tests and tools: an up-to-date schema, whatever the database had."""
    upgrade(engine)
