"""Persistence: engine and sessions (``db``), tables (``models``)."""
from bot.store.db import DEFAULT_URL, create_schema, make_engine, session_scope

__all__ = ["DEFAULT_URL", "create_schema", "make_engine", "session_scope"]
