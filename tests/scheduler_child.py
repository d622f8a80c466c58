"""A scheduler in its own process, for tests/test_scheduler.py.

    python -m tests.scheduler_child URL SCHEMA NAME [--interval S] [--grace S] [--poll S]

SCHEMA is a PostgreSQL schema to put first on the search_path, or "-" for none (SQLite).
The process registers a handler for job "tick" that inserts (job, scheduled time, process
name, time of the run) into table ``scheduler_runs`` (created by the test), declares an
interval job "tick", and runs a Scheduler until it is killed.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from types import SimpleNamespace

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, insert
from sqlalchemy.engine import make_url

RUNS = MetaData()
runs_table = Table(
    "scheduler_runs", RUNS,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(100), nullable=False),
    Column("scheduled_at", String(40), nullable=False),  # ISO text of the scheduled run time
    Column("process", String(100), nullable=False),
    Column("ran_at", Float, nullable=False),  # time.time() when the handler ran
)


def record_run(engine, job: str, process: str) -> None:
    """The job handler body: one row per run, keyed by the run's scheduled time."""
    from bot import jobs

    ctx = jobs.current()
    with engine.begin() as conn:
        conn.execute(insert(runs_table).values(job=job, scheduled_at=ctx.scheduled_run_time.isoformat(),
                                               process=process, ran_at=time.time()))


def schema_url(url: str, schema: str) -> str:
    if schema in ("", "-"):
        return url
    base = make_url(url)
    options = " ".join(filter(None, [base.query.get("options"), f"-csearch_path={schema}"]))
    return base.update_query_dict({"options": options}).render_as_string(hide_password=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("schema")
    parser.add_argument("name")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--grace", type=float, default=300)
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.name} %(name)s %(message)s")

    from apscheduler.triggers.interval import IntervalTrigger

    from bot import jobs
    from bot.scheduler import Scheduler
    from bot.store import make_engine

    engine = make_engine(schema_url(args.url, args.schema))
    jobs.register("tick", lambda: record_run(engine, "tick", args.name))
    scheduler = Scheduler(SimpleNamespace(engine=engine), poll_interval=args.poll,
                          misfire_grace=args.grace, name=args.name)
    scheduler.add_job("tick", IntervalTrigger(seconds=args.interval))
    scheduler.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"{args.name} started", flush=True)
    while not stop.wait(0.2):
        pass
    scheduler.stop()
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
