"""PostgreSQL for tests: where it is, whether it is up, and a throwaway schema per test.

DATABASE_URL_TEST overrides the default postgresql+psycopg://postgres@127.0.0.1:5432/test.
Without PostgreSQL the tests that need it are skipped locally and fail in CI (CI=true).
"""

from __future__ import annotations

import functools
import os
import secrets
from contextlib import contextmanager
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("DATABASE_URL_TEST") or DEFAULT_URL


@functools.lru_cache
def postgres_error(url: str) -> str | None:
    """None when a connection succeeds within 2 s, else why not."""
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # any failure means "not available"; the reason is reported
        return f"{type(exc).__name__}: {exc}".strip()
    finally:
        engine.dispose()


def postgres_available(url: str) -> bool:
    return postgres_error(url) is None


@contextmanager
def temporary_schema(url: str) -> Iterator[str]:
    """Create schema drbot_t_<hex>; yield url with search_path set to it; drop it after.

    Everything the code under test creates through the yielded URL lands in that schema.
    The drop waits at most 10 s for locks: a test that leaves a transaction open fails
    its teardown instead of hanging.
    """
    schema = f"drbot_t_{secrets.token_hex(6)}"
    admin = create_engine(url, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        base = make_url(url)
        options = " ".join(filter(None, [base.query.get("options"), f"-csearch_path={schema}"]))
        yield base.update_query_dict({"options": options}).render_as_string(hide_password=False)
    finally:
        try:
            with admin.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of the reachable test database (skips locally, fails in CI, when it is down)."""
    url = postgres_url()
    error = postgres_error(url)
    if error:
        reason = f"PostgreSQL at {make_url(url)!r} is not reachable ({error}); set DATABASE_URL_TEST"
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {reason}")
        pytest.skip(reason)
    return url


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/drbot.db"
        return
    with temporary_schema(request.getfixturevalue("pg_url")) as url:
        yield url
