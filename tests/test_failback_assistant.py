"""The failback assistant: after a failover, ONE "Plan failback" suggestion once the home
region has held healthy with lag under the threshold for ``watch.failback.after``; nothing
while health flaps, lag is high or a change is open; once per failover, re-armed by the next.

The pure decision is driven with tables of passes. The scenario runs the real app over HTTP
(signed Slack requests, the fake Slack Web API, the sandbox estate): a failover approved by
a second person, the readiness watch job run pass by pass on the services' clock (moved a
minute per pass, no real waits), the suggestion posted once, and its button answering with
the failback plan; on SQLite and PostgreSQL.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from bot import jobs
from bot.config import ConfigError, parse_config
from bot.events import FailbackSuggestion
from bot.failback_assistant import Armed, Seen, decide
from bot.incidents import open_by_hand
from bot.outbox.queue import parse
from bot.store import session_scope
from bot.store.failback_tables import FailbackWatch
from bot.store.incident_tables import OutboxItem
from bot.store.incident_tables import Incident
from bot.store.models import AuditEntry, ChangeRequest, RequestState, ServiceState, TimelineEvent
from bot.watch import watch_once
from bot.wiring import build_services
from tests.app_server import running_app
from tests.helpers import ALICE, BOB, CAROL, delivered, request_row, rows, wait_until

# -- the pure decision ------------------------------------------------------------------------

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc)
MOVE_1, MOVE_2 = T0 - timedelta(minutes=30), T0 + timedelta(hours=2)
AFTER = timedelta(minutes=10)
HOME, AWAY = "us-east-1", "us-west-2"

# one pass: (healthy home region, lag in seconds or None, where it runs, the move, a change open)
OK = (True, 20.0, AWAY, MOVE_1, False)
DOWN = (False, 20.0, AWAY, MOVE_1, False)


def replay(passes: list[tuple], start: Armed | None = None) -> tuple[list[int], Armed | None]:
    """Run ``passes`` (one a minute from T0) through ``decide``; the minutes it suggested at,
    and what it remembers at the end."""
    state, said = start, []
    for minute, (healthy, lag, active, moved_at, busy) in enumerate(passes):
        seen = Seen(home=HOME, active=active, moved_at=moved_at if active != HOME else None,
                    moved_by=None if moved_at is None else int(moved_at.timestamp()), home_healthy=healthy,
                    lag=None if lag is None else timedelta(seconds=lag), lag_below=timedelta(seconds=120),
                    busy=busy)
        d = decide(state, seen, T0 + timedelta(minutes=minute), AFTER)
        state = d.state
        if d.suggest:
            said.append(minute)
    return said, state


def test_sustained_health_suggests_once_after_the_period():
    said, state = replay([OK] * 30)
    assert said == [10]  # healthy since minute 0, 10 minutes held at minute 10; never again
    assert state.suggested_at == T0 + timedelta(minutes=10) and state.healthy_since == T0


@pytest.mark.parametrize("name,passes", [
    ("flapping every few minutes", ([OK] * 6 + [DOWN]) * 5),
    ("down at the last minute", [OK] * 9 + [DOWN] + [OK] * 9),
    ("lag at the threshold", [(True, 120.0, AWAY, MOVE_1, False)] * 30),
    ("lag above the threshold", [(True, 500.0, AWAY, MOVE_1, False)] * 30),
    ("lag unknown", [(True, None, AWAY, MOVE_1, False)] * 30),
    ("home region down", [DOWN] * 30),
])
def test_no_suggestion_without_an_unbroken_period(name, passes):
    said, _ = replay(passes)
    assert said == [], name


def test_a_break_starts_the_period_again():
    said, _ = replay([OK] * 8 + [DOWN] + [OK] * 12)
    assert said == [19]  # healthy again from minute 9: ten minutes later


def test_back_home_disarms_and_a_second_failover_rearms():
    home = (True, 20.0, HOME, None, False)
    second = (True, 20.0, AWAY, MOVE_2, False)
    said, state = replay([OK] * 12 + [home] * 3)
    assert said == [10] and state is None
    said, state = replay([OK] * 12 + [home] * 3 + [second] * 12)
    assert said == [10, 25]  # the second failover is away from minute 15: suggested 10 minutes later
    assert state.moved_at == MOVE_2


def test_a_new_move_rearms_even_without_passing_home():
    """A failover recorded again (a later move, another request) while the assistant had
    already spoken for the first one."""
    again = (True, 20.0, AWAY, MOVE_2, False)
    said, _ = replay([OK] * 12 + [again] * 12)
    assert said == [10, 22]


def test_an_open_change_holds_the_suggestion_but_not_the_period():
    busy = (True, 20.0, AWAY, MOVE_1, True)
    said, _ = replay([busy] * 15 + [OK] * 5)
    assert said == [15]


def test_never_moved_is_never_armed():
    said, state = replay([(True, 20.0, HOME, None, False)] * 15)
    assert said == [] and state is None


# -- over HTTP, with a real failover ----------------------------------------------------------

CHANNEL = "C_INC"
ANNOUNCE = "C0ANNOUNCE"
CONFIG = f"""
regions: [us-east-1, us-west-2]
sources:
  sim: {{kind: sandbox, timeout: 1.0, profiles: {{orders: {{lag: 20, jitter: 0}}}}}}
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {{source: sim, stale_after: 2h}}
    health: {{us-east-1: sim, us-west-2: sim}}
    traffic: {{source: sim}}
    database: {{source: sim}}
    runbooks:
      failover:
        - {{name: switch writer, action: database.switchover}}
        - {{name: shift traffic, action: traffic.shift}}
      failback:
        - {{name: switch writer back, action: database.switchover}}
        - {{name: shift traffic back, action: traffic.shift}}
approvals:
  required_approvals: 1
  approvers: [UBOB]
  expires: 30m
slack:
  channels: {{announcements: {ANNOUNCE}}}
watch:
  failback: {{after: 10m}}
"""
"""The sandbox reads observe at the real time while the services' clock runs ahead a
minute per pass: ``stale_after: 2h`` keeps those readings fresh for the test's span."""


def test_the_config_says_what_is_wrong_with_a_period_or_threshold():
    loaded = parse_config(CONFIG, "ok.yaml", {})
    cfg = loaded.config.watch.failback
    assert (cfg.enabled, cfg.after, cfg.lag_below) == (True, timedelta(minutes=10), None)
    with pytest.raises(ConfigError, match=r"watch\.failback: after must be a positive duration, e\.g\. 10m"):
        parse_config(CONFIG.replace("after: 10m", "after: 0s"), "bad.yaml", {})
    with pytest.raises(ConfigError, match=r"watch\.failback\.lag_below: 'soon' is not a duration"):
        parse_config(CONFIG.replace("after: 10m", "after: 10m, lag_below: soon"), "bad.yaml", {})


class Clock:
    """The services' clock: real time plus an offset the test moves forward."""

    def __init__(self):
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


@pytest.fixture
def world(db_url):
    clock = Clock()
    services = build_services(parse_config(CONFIG, "failback-test.yaml", {}), db_url=db_url, clock=clock)
    yield services, clock
    services.engine.dispose()


def passes(services, clock: Clock, n: int) -> None:
    """``n`` passes of the scheduled readiness watch job, a minute apart on the services' clock."""
    for _ in range(n):
        clock.offset += timedelta(minutes=1)
        jobs.run("readiness_watch")


def suggestions(fake_slack, channel: str | None = None) -> list:
    return [c for c in fake_slack.calls("chat.postMessage")
            if (channel is None or c.params.get("channel") == channel)
            and any(e.get("action_id") == "plan_failback" for b in c.blocks for e in b.get("elements", []))]


def move(app, services, fake_slack, command: str, to: str) -> ChangeRequest:
    """Alice asks (``failover ...`` or ``failback ...``), Bob approves (two people); the run moves
    orders to ``to``."""
    before = {r.id for r in rows(services, ChangeRequest)}
    app.sender.slash_command(command, user_id=ALICE.id, user_name="alice", channel_id=CHANNEL,
                             response_url=fake_slack.response_url("ask"))
    req = wait_until("the request's message", lambda: [r for r in rows(services, ChangeRequest)
                                                       if r.id not in before and r.message_ts])[0]
    app.sender.block_action("cr_approve", str(req.id), user_id=BOB.id, user_name="bob",
                            message=fake_slack.message(CHANNEL, req.message_ts),
                            response_url=fake_slack.response_url("approve"))
    wait_until(f"{command} to succeed", lambda: request_row(services, req.id).state is RequestState.SUCCEEDED,
               timeout=30)
    assert services.status.regions()["orders"][0] == to
    return req


def fail_over(app, services, fake_slack) -> ChangeRequest:
    return move(app, services, fake_slack, "failover orders to us-west-2 region degraded", "us-west-2")


def test_after_a_failover_one_suggestion_and_its_button_plans_the_failback(world, fake_slack):
    services, clock = world
    with running_app(services, fake_slack) as app:
        estate = services.backends["sim"].estate
        req = fail_over(app, services, fake_slack)

        # the home region is down after the failover: nothing, however long
        estate.inject("orders", "region_down", "us-east-1")
        passes(services, clock, 12)
        # it comes back, holds 7 minutes, flaps once, then holds 9 minutes: still nothing
        estate.clear("orders", "region_down")
        passes(services, clock, 7)
        estate.inject("orders", "region_down", "us-east-1")
        passes(services, clock, 1)
        estate.clear("orders", "region_down")
        passes(services, clock, 10)  # healthy again at the first of these: 9 minutes held at the last
        delivered(services)
        assert suggestions(fake_slack) == []
        [row] = rows(services, FailbackWatch, order=FailbackWatch.service)
        assert row.suggested_at is None and row.moved_by_request == req.id and row.home_region == "us-east-1"

        # the tenth minute: one suggestion, and no second one while it stays healthy
        passes(services, clock, 1)
        passes(services, clock, 5)
        delivered(services)
        [post] = suggestions(fake_slack)
        assert post.params["channel"] == ANNOUNCE
        text = json.dumps(post.blocks)
        assert "orders" in text and "us-east-1" in text and "10m" in text and "never fails back by itself" in text
        assert "20s" in text and "2m" in text  # lag now, and the threshold (the warning: 40% of the 5m RPO)
        [item] = [i for i in rows(services, OutboxItem) if i.kind == FailbackSuggestion.KIND]
        assert parse(item).suggestion["moved_by_request"] == req.id
        [audit] = rows(services, AuditEntry, AuditEntry.action == "failback.suggested")
        assert audit.target == "orders"

        # the button (anyone may plan) answers with the failback plan, and changes nothing
        message = fake_slack.message(ANNOUNCE, _ts(fake_slack))
        r = app.sender.block_action("plan_failback", "orders", user_id=CAROL.id, user_name="carol",
                                    channel_id=ANNOUNCE, message=message,
                                    response_url=fake_slack.response_url("plan_failback"))
        assert r.status_code == 200
        [answer] = wait_until("the plan", lambda: [c for c in fake_slack.calls("response_url")
                                                   if c.params["_path"] == "/response/plan_failback"])
        assert answer.params["response_type"] == "ephemeral"
        assert "Plan: failback of orders from us-west-2 to us-east-1" in answer.params["text"]
        assert "switch writer back" in json.dumps(answer.params["blocks"])
        assert [r.id for r in rows(services, ChangeRequest)] == [req.id]
        assert estate.active("orders") == "us-west-2" and estate.writer("orders") == "us-west-2"


def _ts(fake_slack) -> str:
    """ts of the message carrying the Plan failback button."""
    with fake_slack._lock:
        [ts] = [ts for (_ch, ts), m in fake_slack.messages.items()
                if any(e.get("action_id") == "plan_failback"
                       for b in m.get("blocks", []) for e in b.get("elements", []))]
    return ts


def test_with_an_open_incident_it_goes_to_its_channel_and_timeline(world, fake_slack):
    services, clock = world
    with running_app(services, fake_slack) as app:
        fail_over(app, services, fake_slack)
        inc = open_by_hand(services, BOB, "orders east outage", "sev2", ["orders"])
        passes(services, clock, 14)
        delivered(services)
        [stored] = rows(services, Incident)
        channel = stored.channel_id
        assert channel
        [post] = suggestions(fake_slack)
        assert post.params["channel"] == channel and suggestions(fake_slack, ANNOUNCE) == []
        [event] = rows(services, TimelineEvent, TimelineEvent.kind == "failback.suggested")
        assert (event.incident_id, event.service) == (inc.id, "orders")
        assert json.loads(event.data)["home"] == "us-east-1"


def test_failing_back_disarms_and_the_next_failover_suggests_again(world, fake_slack):
    services, clock = world
    with running_app(services, fake_slack) as app:
        fail_over(app, services, fake_slack)
        passes(services, clock, 12)
        delivered(services)
        assert len(suggestions(fake_slack)) == 1

        move(app, services, fake_slack, "failback orders east is healthy again", "us-east-1")
        passes(services, clock, 12)
        assert rows(services, FailbackWatch, order=FailbackWatch.service) == []  # home: disarmed
        delivered(services)
        assert len(suggestions(fake_slack)) == 1

        second = fail_over(app, services, fake_slack)
        passes(services, clock, 9)
        delivered(services)
        assert len(suggestions(fake_slack)) == 1  # armed again, but not held 10 minutes yet
        passes(services, clock, 3)
        delivered(services)
        assert len(suggestions(fake_slack)) == 2
        [row] = rows(services, FailbackWatch, order=FailbackWatch.service)
        assert row.moved_by_request == second.id and row.suggested_at is not None
        assert len([i for i in rows(services, OutboxItem) if i.kind == FailbackSuggestion.KIND]) == 2


def test_two_watchers_on_the_same_pass_suggest_once(world):
    """Two replicas' passes at the same moment (the leader lock normally prevents it): the
    conditional update on ``suggested_at`` and the outbox key let one suggestion through."""
    services, clock = world
    with session_scope(services.engine) as s:  # drbot's record of a failover (as the engine writes it)
        s.add(ServiceState(service="orders", active_region="us-west-2", standby_region="us-east-1",
                           updated_at=clock(), changed_by_request=None))
    estate = services.backends["sim"].estate
    estate.seed("orders", "us-east-1")
    estate.move("orders", traffic="us-west-2", writer="us-west-2")
    passes(services, clock, 10)
    assert rows(services, FailbackWatch, order=FailbackWatch.service)[0].suggested_at is None
    clock.offset += timedelta(minutes=1)
    start, errors = threading.Barrier(2), []

    def watcher():
        start.wait()
        try:
            watch_once(services)
        except Exception as e:  # a pass that lost a write race fails; the next one runs anew
            errors.append(e)

    threads = [threading.Thread(target=watcher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(errors) < 2, errors
    items = [i for i in rows(services, OutboxItem) if i.kind == FailbackSuggestion.KIND]
    assert len(items) == 1
    assert rows(services, FailbackWatch, order=FailbackWatch.service)[0].suggested_at is not None
    watch_once(services)
    assert len([i for i in rows(services, OutboxItem) if i.kind == FailbackSuggestion.KIND]) == 1
