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

SANDBOX_CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 20, jitter: 0}
      payments: {lag: 100, jitter: 0}
services:
  - name: orders
    tier: critical
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
  - name: payments
    rpo: 5m
    rto: 30m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
"""


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
