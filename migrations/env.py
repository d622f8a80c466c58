"""Alembic's environment for drbot: the engine comes from the caller (``bot.store.schema``)
through ``config.attributes["connection"]``, or from DATABASE_URL for the ``alembic`` CLI
(``alembic revision --autogenerate -m ...`` when a model changes; review what it wrote)."""
from __future__ import annotations

import os

from alembic import context
from sqlalchemy import engine_from_config, pool

from bot.store.db import normalise_url
from bot.store.schema import metadata

config = context.config


def _render_item(type_, obj, autogen_context):
    """SQLModel's AutoString is a plain String in a migration."""
    if type_ == "type" and type(obj).__name__ == "AutoString":
        return "sa.String()"
    if type_ == "type" and type(obj).__name__ == "UTCDateTime":
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      render_item=_render_item, compare_type=False,
                      include_name=lambda name, type_, _parent: not (type_ == "table" and name == "drbot_scheduler_jobs"))


connection = config.attributes.get("connection")
if connection is not None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = normalise_url(os.environ.get("DATABASE_URL", "sqlite:///drbot.db"))
    engine = engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
