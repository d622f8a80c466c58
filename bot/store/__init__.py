"""Persistence: engine and sessions (``db``), tables (``models``, ``incident_tables``,
``drill_tables``), creating them (``schema``)."""
from bot.store.db import DEFAULT_URL, make_engine, session_scope
from bot.store.schema import create_schema

__all__ = ["DEFAULT_URL", "create_schema", "make_engine", "session_scope"]
