"""The shell scenario of the demo: alice asks for a failover of orders, bob approves it,
the progress is printed live, and /dr status then shows orders running in us-west-2.
Driven through ``drbot shell`` itself (bot.cli.main) with stdin replaced."""
from __future__ import annotations

import io
import re
from pathlib import Path

from sqlmodel import select

from bot.render import Reply
from commands.router import dispatch
from transports.cli import main
from transports.shell import Shell, ShellMessenger
from bot.store import make_engine, session_scope
from bot.store.models import AuditEntry, ChangeRequest, RequestState, Run, RunStep, ServiceState, StepState

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """\
/dr status orders
/dr failover orders 5xx at 40% in us-east-1
click approve 1
as bob
click approve 1
/dr status
"""


def test_demo_failover_in_the_shell_then_status_shows_orders_in_us_west_2(tmp_path, monkeypatch, capsys):
    db = f"sqlite:///{tmp_path}/shell.db"
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setattr("sys.stdin", io.StringIO(SCRIPT))

    assert main(["shell", "--config", "deploy/demo.yaml"]) == 0
    out = capsys.readouterr().out

    assert "drbot shell on deploy/demo.yaml, acting as alice (UALICE)" in out
    before, after = out.split("alice> /dr failover orders", 1)
    assert "active us-east-1, standby us-west-2, tier critical" in before, before
    assert "[Failover #1 · orders -> us-west-2 · waiting for approval]" in after
    assert "buttons: click approve 1 | click deny 1 | click cancel 1" in after
    assert "request #1 (failover of orders to us-west-2) posted for approval" in after
    # the requester cannot approve her own request
    assert "alice> click approve 1\n! not done: you asked for request #1: someone else has to approve" in after
    assert "now acting as bob (UBOB)" in after

    run_part = after.split("bob> click approve 1", 1)[1]
    progress, status = run_part.split("bob> /dr status", 1)
    assert "✓ bob approved at" in progress
    assert re.search(r"✓ 1\. Switch the Aurora writer to the target region: done in .*"
                     r"\(SANDBOX: switch over of the orders database to us-west-2 done\)", progress)
    assert re.search(r"✓ 2\. Shift API traffic to the target region: done in .*"
                     r"\(SANDBOX: shifted traffic of orders from us-east-1 to us-west-2\)", progress)
    assert "[run of failover #1 · succeeded]" in progress
    assert "[Failover #1 · orders -> us-west-2 · succeeded]" in progress
    assert re.search(r"measured RTO \S+ \(target 15m ✓\) · RPO \S+ \(target 5m ✓\)", progress)
    assert "✗" not in progress and "FAILED" not in progress

    orders = [line for line in status.splitlines() if " orders (critical) " in line]
    assert len(orders) == 1, status
    assert re.search(r"orders \(critical\)\s+us-west-2 -> us-east-1\s+lag", orders[0]), orders[0]
    assert "health us-west-2: healthy, us-east-1: healthy" in status

    engine = make_engine(db)
    try:
        with session_scope(engine) as s:
            req = s.get(ChangeRequest, 1)
            assert (req.state, req.requester, req.origin) == (RequestState.SUCCEEDED, "UALICE", "shell")
            run = s.exec(select(Run).where(Run.request_id == 1)).one()
            assert run.state is RequestState.SUCCEEDED and run.passed is True
            rows = s.exec(select(RunStep).where(RunStep.run_id == run.id).order_by(RunStep.id)).all()
            assert [(r.position, r.attempt, r.state) for r in rows] == [(0, 1, StepState.SUCCEEDED),
                                                                        (1, 1, StepState.SUCCEEDED)]
            row = s.get(ServiceState, "orders")
            assert (row.active_region, row.standby_region, row.changed_by_request) == ("us-west-2", "us-east-1", 1)
            actions = [(a.actor, a.action) for a in s.exec(select(AuditEntry).order_by(AuditEntry.id))]
            assert actions == [("UALICE", "request.failover"), ("UBOB", "request.approved"),
                               ("drbot", "run.started"), ("drbot", "step.succeeded"),
                               ("drbot", "step.succeeded"), ("drbot", "run.succeeded")]
    finally:
        engine.dispose()


def test_the_shell_remembers_a_bounded_number_of_messages(services):
    """An alert storm in the shell: thousands of posts, memory of the last KEPT only. An
    update of a remembered message prints what changed; of a forgotten one, all of it."""
    out = io.StringIO()
    shell = Shell(services, dispatch, out=out)
    messenger = services.messenger
    assert isinstance(messenger, ShellMessenger)

    def message(n: int, line: str) -> Reply:
        return Reply("error", {"message": f"alert {n}\n{line}", "ref": "r"})

    first = messenger.post("C1", message(0, "firing"))
    for n in range(1, 3 * ShellMessenger.KEPT):
        last = messenger.post("C1", message(n, "firing"))
    assert messenger.remembered == ShellMessenger.KEPT

    out.seek(0), out.truncate()
    messenger.update("C1", last, message(3 * ShellMessenger.KEPT - 1, "resolved"))
    assert "resolved" in out.getvalue() and "logged as" not in out.getvalue()  # only what changed
    out.seek(0), out.truncate()
    messenger.update("C1", first, message(0, "resolved"))
    assert "resolved" in out.getvalue() and "logged as" in out.getvalue()  # forgotten: all of it
    assert messenger.remembered == ShellMessenger.KEPT
    assert shell.actor.name == "alice"
