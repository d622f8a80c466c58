"""Shared pytest fixtures.

Harness fixtures live in their own modules and are only registered here:
    fake_slack  a running FakeSlack (tests/fakes/slack_api.py)
    pg_url      the reachable PostgreSQL test database, session scope (tests/postgres.py)
    db_url      an empty database URL, parametrized sqlite/postgresql (tests/postgres.py)
"""

from tests.fakes.slack_api import fake_slack  # noqa: F401
from tests.postgres import db_url, pg_url  # noqa: F401

# --- app-level fixtures ----------------------------------------------------------------

import pytest  # noqa: E402

from bot.config import parse_config  # noqa: E402
from bot.wiring import build_services  # noqa: E402
from tests.app_server import running_app  # noqa: E402
from tests.helpers import SANDBOX_CONFIG  # noqa: E402



@pytest.fixture
def sandbox_config():
    return parse_config(SANDBOX_CONFIG, "sandbox-test.yaml", {})


@pytest.fixture
def services(sandbox_config, tmp_path):
    svc = build_services(sandbox_config, db_url=f"sqlite:///{tmp_path}/drbot.db")
    yield svc
    svc.engine.dispose()


@pytest.fixture
def app(services, fake_slack):
    with running_app(services, fake_slack) as running:
        yield running
