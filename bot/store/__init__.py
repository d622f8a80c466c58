"""Persistence: engine and sessions (``db``: ``session_scope`` to change, ``read_scope`` to
only read), tables (``models``, ``incident_tables``, ``drill_tables``), creating them
(``schema``)."""
from bot.store.db import DEFAULT_URL, make_engine, read_scope, session_scope
from bot.store.schema import create_schema
from bot.store import manual_tables  # noqa: F401  (registers manual_answer, as schema does the others)

__all__ = ["DEFAULT_URL", "create_schema", "make_engine", "read_scope", "session_scope"]
