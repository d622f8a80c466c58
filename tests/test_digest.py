"""The weekly digest: readiness now, drills done in the last 7 days and due in the next 7,
lag percentiles over the last 7 days; one outbox item per scheduled run, rendered as valid
Block Kit and as text."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import col, select

from bot import jobs
from bot.digest import digest_once, percentile
from bot.events import WeeklyDigest
from bot.outbox.queue import parse
from bot.store import session_scope
from bot.store.drill_tables import DrillOccurrence, LagRecord, OccurrenceState
from bot.store.incident_tables import OutboxItem, OutboxState
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run
from tests.test_watch import World

CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 2.0}
services:
  - name: orders
    tier: critical
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim, warning: 120s, critical: 240s}
    health: {us-east-1: sim, us-west-2: sim}
  - name: payments
    rpo: 10m
    rto: 30m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
slack:
  channels: {announcements: C0ANNOUNCE}
"""
HEADER_MAX, TEXT_MAX, BLOCKS_MAX = 150, 3000, 50


def run(services, service: str, ended: datetime, passed: bool, kind=RequestKind.DRILL,
        state=RequestState.SUCCEEDED, rto=None, rpo=None) -> int:
    with session_scope(services.engine) as s:
        cr = ChangeRequest(kind=kind, service=service, requester="UALICE", expires_at=ended, state=state)
        s.add(cr)
        s.flush()
        s.add(Run(request_id=cr.id, kind=kind, service=service, state=state,
                  approved_at=ended - timedelta(minutes=20), started_at=ended - timedelta(minutes=15),
                  ended_at=None if state is RequestState.RUNNING else ended, passed=passed,
                  measured_rto_s=rto, measured_rpo_s=rpo))
        return cr.id


def occurrence(services, service: str, starts: datetime, state=OccurrenceState.PLANNED, schedule="monthly"):
    with session_scope(services.engine) as s:
        s.add(DrillOccurrence(service=service, schedule=schedule, planned_for=starts, starts_at=starts, state=state))


def lag_records(services, service: str, values: list[float], at: datetime) -> None:
    with session_scope(services.engine) as s:
        for i, v in enumerate(values):
            s.add(LagRecord(service=service, at=at + timedelta(seconds=i), seconds=v))


def assert_block_kit(blocks: list[dict], text: str) -> None:
    """The shape Slack's chat.postMessage accepts for the block types used here."""
    assert text and 0 < len(blocks) <= BLOCKS_MAX
    json.dumps(blocks)
    for b in blocks:
        assert b["type"] in {"header", "section", "context", "divider"}
        if b["type"] == "header":
            assert b["text"]["type"] == "plain_text" and 0 < len(b["text"]["text"]) <= HEADER_MAX
        elif b["type"] == "section":
            assert b["text"]["type"] == "mrkdwn" and 0 < len(b["text"]["text"]) <= TEXT_MAX
        elif b["type"] == "context":
            assert 0 < len(b["elements"]) <= 10 and all(e["type"] == "mrkdwn" and e["text"] for e in b["elements"])


@pytest.fixture
def world(db_url):
    w = World(CONFIG, db_url, drill=False)
    yield w
    w.services.engine.dispose()


def digest_items(w: World) -> list[OutboxItem]:
    with session_scope(w.services.engine) as s:
        return list(s.exec(select(OutboxItem).where(OutboxItem.kind == WeeklyDigest.KIND).order_by(col(OutboxItem.id))))


def test_percentile_interpolates_between_closest_ranks():
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50.5
    assert percentile(values, 0.95) == pytest.approx(95.05)
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([3, 1, 2], 0.5) == 2
    assert percentile([], 0.5) is None


def test_digest_numbers(world):
    svc, now = world.services, world.now[0]
    day = timedelta(days=1)
    lag_records(svc, "orders", [float(v) for v in range(100, 0, -1)], now - 3 * day)  # 1..100, shuffled in time
    lag_records(svc, "orders", [900.0], now - 8 * day)                                # older than the week
    lag_records(svc, "orders", [950.0], now + timedelta(minutes=1))                   # after now
    orders_drill = run(svc, "orders", now - 2 * day, True, rto=300, rpo=4)
    payments_drill = run(svc, "payments", now - 3 * day, False, state=RequestState.FAILED, rto=2400)
    run(svc, "orders", now - 10 * day, True, rto=1, rpo=1)                            # before the week
    run(svc, "orders", now - day, True, kind=RequestKind.FAILOVER, rto=60)            # not a drill
    run(svc, "payments", now - day, False, state=RequestState.RUNNING)                # not finished
    occurrence(svc, "payments", now + 2 * day)
    occurrence(svc, "orders", now + 6 * day, schedule="weekly")
    occurrence(svc, "orders", now + day, state=OccurrenceState.STARTED)
    occurrence(svc, "orders", now + 8 * day)
    occurrence(svc, "orders", now - day)
    world.source.lag["payments"] = 250.0  # 250s of a 10m RPO: past warning (4m), not critical (8m)

    payload = digest_once(svc, now)
    (item,) = digest_items(world)
    event = parse(item)
    assert isinstance(event, WeeklyDigest) and event.digest == payload
    assert json.loads(item.payload) == {"channel": "C0ANNOUNCE", "run_time": now.isoformat(), "digest": payload}
    assert item.stream == "slack:digest" and item.pace_key == "slack:C0ANNOUNCE"
    assert event.channel == payload["channel"] == "C0ANNOUNCE"

    assert payload["since"] == (now - 7 * day).isoformat() and payload["until"] == (now + 7 * day).isoformat()
    ready = {r["service"]: r for r in payload["readiness"]}
    assert ready["orders"]["verdict"] == "READY" and ready["orders"]["reasons"] == []
    assert ready["orders"]["lag"] == {"count": 100, "p50_s": 50.5, "p95_s": pytest.approx(95.05), "max_s": 100.0}
    assert ready["payments"]["verdict"] == "AT_RISK"
    assert ready["payments"]["reasons"] == ["lag 4m 10s is past warning 4m (critical 8m, RPO 10m)",
                                            "the last drill, 3d ago, failed"]
    assert ready["payments"]["lag"] == {"count": 0, "p50_s": None, "p95_s": None, "max_s": None}
    assert ready["payments"]["lag_now_s"] == 250.0 and ready["payments"]["rpo_s"] == 600.0

    assert [(d["service"], d["request_id"], d["passed"], d["rto_s"], d["rpo_s"], d["state"])
            for d in payload["drills_done"]] == [("payments", payments_drill, False, 2400, None, "failed"),
                                                 ("orders", orders_drill, True, 300, 4, "succeeded")]
    assert payload["drills_done"][1]["rto_target_s"] == 900.0 and payload["drills_done"][1]["rpo_target_s"] == 300.0
    assert [(d["service"], d["schedule"], d["starts_at"]) for d in payload["drills_due"]] == [
        ("payments", "monthly", (now + 2 * day).isoformat()), ("orders", "weekly", (now + 6 * day).isoformat())]


def test_digest_renders_as_block_kit_and_text(world):
    svc, now = world.services, world.now[0]
    lag_records(svc, "orders", [10.0, 20.0, 30.0, 40.0], now - timedelta(hours=5))
    run(svc, "orders", now - timedelta(days=2), True, rto=300, rpo=4)
    occurrence(svc, "payments", now + timedelta(days=2))
    occurrence(svc, "region:us-east-1", now + timedelta(days=3), schedule="quarterly")  # a region drill
    digest_once(svc, now)
    assert svc.outbox.drain(timeout=10)
    (item,) = digest_items(world)
    assert item.state is OutboxState.DELIVERED
    ((kind, channel, reply),) = world.messenger.log
    assert (kind, channel, reply.template) == ("post", "C0ANNOUNCE", "weekly_digest")

    blocks, text = svc.renderer.blocks(reply)
    assert_block_kit(blocks, text)
    assert text == "Weekly DR digest: 1 ready, 1 at risk, 0 not ready, 0 unknown; 1 drill(s) done, 2 due"
    body = "\n".join(b["text"]["text"] for b in blocks if b["type"] in ("section", "header"))
    assert "*orders* · passed" in body and "RTO 5m (target 15m) · RPO 4s (target 5m)" in body
    assert "*payments* · monthly" in body and "*region drill of us-east-1* · quarterly" in body
    assert "lag over 7 days: p50 25s · p95 38s · max 40s (4 readings)" in body
    assert "no lag recorded in the last 7 days" in body
    assert "no drill on record (drills are due every 30d)" in body

    plain = svc.renderer.text(reply)
    assert "1 ready, 1 at risk, 0 not ready, 0 unknown" in plain
    assert "passed orders" in plain and "payments (monthly)" in plain
    assert "region drill of us-east-1 (quarterly)" in plain and "region:" not in plain
    assert "lag over 7 days: p50 25s, p95 38s, max 40s (4 readings)" in plain


def test_empty_week_renders_too(world):
    payload = digest_once(world.services, world.now[0])
    assert payload["drills_done"] == [] and payload["drills_due"] == []
    assert world.services.outbox.drain(timeout=10)
    blocks, text = world.services.renderer.blocks(world.messenger.log[0][2])
    assert_block_kit(blocks, text)
    body = json.dumps(blocks)
    assert "none scheduled" in body and "\\nnone" in body
    assert "none scheduled" in world.services.renderer.text(world.messenger.log[0][2])


def test_the_watch_feeds_the_digest(world):
    for lag in (10, 20, 30, 40, 50):
        world.tick(lag=lag, service="orders")
    payload = digest_once(world.services, world.now[0])
    orders = next(r for r in payload["readiness"] if r["service"] == "orders")
    assert orders["lag"] == {"count": 5, "p50_s": 30.0, "p95_s": pytest.approx(48.0), "max_s": 50.0}
    payments = next(r for r in payload["readiness"] if r["service"] == "payments")
    assert payments["lag"]["count"] == 5 and payments["lag"]["max_s"] == 20.0  # the source's default


def test_one_digest_per_scheduled_run(world):
    now = world.now[0]
    digest_once(world.services, now)
    digest_once(world.services, now)
    assert len(digest_items(world)) == 1
    due = now + timedelta(days=7)
    for late in (timedelta(0), timedelta(minutes=3)):  # the same fire, run again (a restart, a replica)
        with jobs.running(jobs.JobContext("weekly_digest", due, "test")):
            digest_once(world.services, due + late)
    items = digest_items(world)
    assert len(items) == 2
    assert [parse(i).run_time for i in items] == [now.isoformat(), due.isoformat()]
    # the first run of that fire is the one kept (gathered at ``due``, not 3 minutes late)
    assert parse(items[1]).digest["now"] == due.isoformat()
    assert world.services.outbox.drain(timeout=10)
    assert [(kind, channel) for kind, channel, _ in world.messenger.log] == [("post", "C0ANNOUNCE")] * 2


def test_no_channel_posts_nothing(db_url):
    w = World(CONFIG.replace("slack:\n  channels: {announcements: C0ANNOUNCE}\n", ""), db_url, drill=False)
    try:
        assert digest_once(w.services, w.now[0]) is None
        assert digest_items(w) == []
    finally:
        w.services.engine.dispose()


def test_digest_channel_wins_over_announcements(db_url):
    w = World(CONFIG + "digest: {channel: C0DIGEST}\n", db_url, drill=False)
    try:
        assert digest_once(w.services, w.now[0])["channel"] == "C0DIGEST"
        assert w.services.outbox.drain(timeout=10)
        assert [c for _, c, _ in w.messenger.log] == ["C0DIGEST"]
    finally:
        w.services.engine.dispose()


def test_timestamps_are_shown_in_the_configured_zone(db_url):
    w = World(CONFIG + "timezone: Asia/Tokyo\n", db_url, drill=False)
    try:
        w.now[0] = datetime(2031, 3, 3, 0, 30, tzinfo=timezone.utc)  # Monday 09:30 in Tokyo
        digest_once(w.services, w.now[0])
        assert w.services.outbox.drain(timeout=10)
        blocks, _ = w.services.renderer.blocks(w.messenger.log[0][2])
        assert "Mon 24 Feb – Mon 03 Mar 2031 09:30 JST" in blocks[1]["text"]["text"]
    finally:
        w.services.engine.dispose()
