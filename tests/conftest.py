"""Shared pytest fixtures.

Harness fixtures live in their own modules and are only registered here:
    fake_slack  a running FakeSlack (tests/fakes/slack_api.py)
    pg_url      the reachable PostgreSQL test database, session scope (tests/postgres.py)
    db_url      an empty database URL, parametrized sqlite/postgresql (tests/postgres.py)
"""

from tests.fakes.slack_api import fake_slack  # noqa: F401
from tests.postgres import db_url, pg_url  # noqa: F401

# --- app-level fixtures ----------------------------------------------------------------

import logging  # noqa: E402

import pytest  # noqa: E402

from bot.config import parse_config  # noqa: E402
from bot.oplog import QUIET  # noqa: E402
from bot.wiring import build_services  # noqa: E402
from tests.app_server import running_app  # noqa: E402
from tests.helpers import SANDBOX_CONFIG  # noqa: E402


@pytest.fixture(autouse=True)
def logging_as_it_was():
    """A test that runs ``drbot`` in-process (``transports.cli.main``) configures logging for
    the process: a handler on the stream captured for that test. Put back what was there, so
    later tests do not log into a closed stream ("--- Logging error ---")."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    for name, was in quiet.items():
        logging.getLogger(name).setLevel(was)


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
