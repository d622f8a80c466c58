"""What one approval and a 2-step run cost: database transactions (commits of drbot's engine,
read-only ones included and counted apart) and Slack chat writes (chat.postMessage +
chat.update at the fake Slack), from the deciding signed Approve click until every
resulting message is delivered.

Measured with the app over real HTTP and the outbox worker running as in ``drbot run``;
the test reads the database through an engine of its own, so its polling is not counted.
Before the outbox redesign (commit 8bf8238) the same path cost 27 transactions and 7-8
chat writes."""
from __future__ import annotations

import statistics
import time

from sqlalchemy import event
from sqlmodel import col, func, select

from bench.approval import posted
from bot.actor import Actor
from bot.config import parse_config
from bot.store import make_engine, read_scope
from bot.store.db import READ_ONLY
from bot.store.incident_tables import OutboxItem, OutboxState
from bot.store.models import ChangeRequest, RequestState
from bot.wiring import build_services
from commands.router import dispatch
from tests.app_server import running_app
from tests.fakes.slack_api import FakeSlack
from tests.helpers import TWO_STEP_CONFIG

CHAT_WRITES = ("chat.postMessage", "chat.update")


def _settled(engine, request_id: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with read_scope(engine) as s:
            state = s.get(ChangeRequest, request_id).state
            left = s.exec(select(func.count()).select_from(OutboxItem).where(
                col(OutboxItem.state).in_([OutboxState.PENDING]))).one()
        if state in (RequestState.SUCCEEDED, RequestState.FAILED) and left == 0:
            return
        time.sleep(0.02)
    raise TimeoutError(f"request {request_id} did not finish and deliver")


def run(tmp: str, rounds: int = 6) -> dict:
    url = f"sqlite:///{tmp}/costs.db"
    services = build_services(parse_config(TWO_STEP_CONFIG, "costs.yaml", {}), db_url=url)
    observer = make_engine(url)
    commits, reads = [0], [0]

    def committed(conn) -> None:
        commits[0] += 1
        reads[0] += bool(conn.get_execution_options().get(READ_ONLY))

    event.listen(services.engine, "commit", committed)
    alice = Actor("UALICE", "alice", "slack", channel="C_COST")
    txns, read_txns, writes = [], [], []
    with FakeSlack() as fake, running_app(services, fake) as app:
        services.outbox.stop()
        services.outbox.start()  # the idle interval of `drbot run` (the tests' app polls faster)
        for i in range(rounds):
            kind = "failover" if i % 2 == 0 else "failback"
            dispatch(services, alice, f"{kind} orders cost round {i}")
            req = posted(services)  # the click needs the message
            time.sleep(1.5)  # the worker is idle again
            c0, r0, w0 = commits[0], reads[0], sum(len(fake.calls(m)) for m in CHAT_WRITES)
            r = app.sender.block_action("cr_approve", str(req.id), user_id="UBOB", channel_id="C_COST",
                                        message=fake.message("C_COST", req.message_ts))
            assert r.status_code == 200
            _settled(observer, req.id)
            txns.append(commits[0] - c0)
            read_txns.append(reads[0] - r0)
            writes.append(sum(len(fake.calls(m)) for m in CHAT_WRITES) - w0)
    services.engine.dispose()
    observer.dispose()
    return {"rounds": rounds, "transactions_median": statistics.median(txns), "transactions_max": max(txns),
            "read_only_median": statistics.median(read_txns),
            "chat_writes_median": statistics.median(writes), "chat_writes_max": max(writes),
            "transactions": txns, "chat_writes": writes}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print(run(d))
