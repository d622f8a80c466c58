"""Alembic revisions: the only way drbot's schema changes (``drbot db upgrade``)."""
