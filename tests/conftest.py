"""Shared pytest fixtures.

Harness fixtures live in their own modules and are only registered here:
    fake_slack  a running FakeSlack (tests/fakes/slack_api.py)
    pg_url      the reachable PostgreSQL test database, session scope (tests/postgres.py)
    db_url      an empty database URL, parametrized sqlite/postgresql (tests/postgres.py)
"""

from tests.fakes.slack_api import fake_slack  # noqa: F401
from tests.postgres import db_url, pg_url  # noqa: F401

# --- app-level fixtures ----------------------------------------------------------------
