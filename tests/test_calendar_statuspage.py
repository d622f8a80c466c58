"""The status page follows the drill calendar: a drill's scheduled maintenance is moved when
the drill is postponed and cancelled when it is skipped.

As in tests/test_drills.py, the test sets "now" and calls ``bot.drills.tick`` as the
leader's scheduler would; posts go through the real Slack messenger to the fake Slack Web
API, the status page is a FakeStatuspage over HTTP (tests/fakes/statuspage_api.py), the
calendar changes are requested with ``/dr drill postpone|skip`` and approved with a click,
and the outbox worker delivers everything. Nothing of drbot is mocked. SQLite and
PostgreSQL both.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk import WebClient

from bot import drills
from bot.actor import Actor
from bot.config import parse_config
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.incident_tables import OutboxItem, OutboxState
from bot.store.models import AuditEntry, RequestState
from bot.wiring import build_services
from commands import router
from tests.fakes.statuspage_api import FakeStatuspage
from tests.helpers import delivered, request_row, rows
from transports.slack.messenger import SlackMessenger

T = datetime(2024, 6, 4, 10, 0, tzinfo=timezone.utc)  # a Tuesday, when the drill is due
H = timedelta(hours=1)
ALICE, BOB, CAROL = Actor(id="UALICE", name="alice"), Actor(id="UBOB", name="bob"), Actor(id="UCAROL", name="carol")
SP_KEY, COMPONENT = "sp-key-cal", "cmp0orders01"

CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 2, jitter: 0}
  sp:
    kind: statuspage
    page_id: pg1
    api_key: ${SP_KEY}
    base_url: ${SP_URL}
    timeout: ${SP_TIMEOUT}
    components:
      orders: ${SP_COMPONENT}
statuspage:
  source: sp
  requests_per_second: 10
approvals:
  required_approvals: 1
  approvers: [UALICE, UBOB, UCAROL]
  expires: 30m
watch: {enabled: false}
digest: {enabled: false}
services:
  - name: orders
    tier: high
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    channel: C_ORDERS
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    runbooks:
      drill:
        default:
          - name: Shift traffic
            action: traffic.shift
            timeout: 5s
            verify: {traffic_in: target, within: 5s, interval: 100ms}
    drills:
      - name: monthly
        cron: "0 10 * * tue"
        announce: [24h]
        maintenance: true
        duration: 2h
        impact: the orders API answers from the standby region
"""


@pytest.fixture
def page():
    with FakeStatuspage(page_id="pg1", api_key=SP_KEY) as fake:
        fake.add_component(COMPONENT, "Orders API")
        yield fake


@pytest.fixture
def sp_timeout() -> float:
    """The status-page source's timeout (a test parametrizes it to change it)."""
    return 5.0


@pytest.fixture
def calendar(db_url, page, fake_slack, sp_timeout):
    """(services, now): services on the test's database and clock, posting to the fakes."""
    now = [T - 30 * H]
    loaded = parse_config(CONFIG, "calendar-test.yaml", {"SP_KEY": SP_KEY, "SP_URL": page.url,
                                                         "SP_COMPONENT": COMPONENT, "SP_TIMEOUT": str(sp_timeout)})
    # the outbox delivers only when the test drains it (delivered), so it can act in between
    sv = build_services(loaded, db_url=db_url, clock=lambda: now[0])
    sv.messenger = SlackMessenger(WebClient(base_url=fake_slack.base_url, token="xoxb-t"), sv.renderer)
    try:
        yield sv, now
    finally:
        sv.outbox.drain(timeout=10)
        sv.runner.executor.shutdown(wait=True)
        sv.backends["sp"].close()
        sv.engine.dispose()


def occurrence(sv) -> DrillOccurrence:
    (occ,) = rows(sv, DrillOccurrence)
    return occ


def approve(sv, text: str, approver: Actor) -> None:
    """Ask for a calendar change as alice; another approver approves it (applied at once)."""
    reply = router.dispatch(sv, ALICE, text)
    assert reply.template not in ("usage", "error", "refused"), (text, reply.context)
    req = reply.context["req"]
    assert router.click(sv, approver, "cr_approve", str(req.id)) is None
    assert request_row(sv, req.id).state is RequestState.SUCCEEDED


def decide(sv, text: str, approver: Actor) -> None:
    approve(sv, text, approver)
    delivered(sv)


def maintenance(page: FakeStatuspage, occ_id: int) -> dict:
    (found,) = page.by_key(f"drbot-drill-{occ_id}")
    return found


def items(sv, kind: str) -> list[OutboxItem]:
    return rows(sv, OutboxItem, OutboxItem.kind == kind)


def announce(sv, now) -> DrillOccurrence:
    """T-24h: the drill is planned and announced; its maintenance is published."""
    now[0] = T - 24 * H
    done = drills.tick(sv)
    occ = occurrence(sv)
    assert done["announced"] == [occ.id]
    delivered(sv)
    return occurrence(sv)


def test_postpone_moves_the_maintenance_and_skip_cancels_it(calendar, page):
    sv, now = calendar
    occ = announce(sv, now)
    made = maintenance(page, occ.id)
    assert (made["status"], made["scheduled_for"], made["scheduled_until"]) == (
        "scheduled", T.isoformat(), (T + 2 * H).isoformat())
    assert made["_component_ids"] == [COMPONENT]

    # postponed by a day: the maintenance moves with it, subscribers are told
    page.clear_requests()
    decide(sv, "drill postpone orders to 2024-06-05 10:00 a release freeze", BOB)
    later = T + 24 * H
    assert occurrence(sv).starts_at == later
    moved = maintenance(page, occ.id)
    assert moved["id"] == made["id"] and len(page.incidents) == 1
    assert (moved["status"], moved["scheduled_for"], moved["scheduled_until"]) == (
        "scheduled", later.isoformat(), (later + 2 * H).isoformat())
    latest = moved["incident_updates"][0]
    assert latest["status"] == "scheduled" and latest["body"].startswith("Rescheduled:")
    assert "Wed 05 Jun 2024 10:00 UTC to 12:00 UTC" in latest["body"]
    assert "release freeze" not in latest["body"]  # text a person typed never reaches the page
    [patch] = page.requests_for("PATCH")
    assert patch.json["incident"]["scheduled_for"] == later.isoformat()
    [item] = items(sv, "statuspage.maintenance_moved")
    assert item.state is OutboxState.DELIVERED
    assert [a.action for a in rows(sv, AuditEntry, AuditEntry.action.startswith("statuspage."))] == [
        "statuspage.maintenance", "statuspage.maintenance_moved"]

    # skipped: the maintenance is cancelled (completed, saying so), components untouched
    decide(sv, "drill skip orders the region is being migrated", CAROL)
    assert occurrence(sv).state is OccurrenceState.SKIPPED
    cancelled = maintenance(page, occ.id)
    assert cancelled["status"] == "completed" and len(page.incidents) == 1
    assert cancelled["incident_updates"][0]["body"].startswith("Cancelled:")
    assert "migrated" not in cancelled["incident_updates"][0]["body"]
    assert cancelled["scheduled_auto_in_progress"] is False and cancelled["scheduled_auto_completed"] is False
    assert [u["status"] for u in reversed(cancelled["incident_updates"])] == ["scheduled", "scheduled", "completed"]
    assert page.components[COMPONENT]["status"] == "operational"
    assert [i.state for i in items(sv, "statuspage.maintenance_cancelled")] == [OutboxState.DELIVERED]
    assert len(page.requests_for("PATCH")) == 2  # one move, one cancellation, nothing twice

    # everything is delivered; a second drain sends nothing more
    before = len(page.requests)
    delivered(sv)
    assert len(page.requests) == before


@pytest.mark.parametrize("sp_timeout", [0.5])
def test_a_move_that_timed_out_after_the_page_applied_it_is_not_sent_again(calendar, page):
    sv, now = calendar
    occ = announce(sv, now)
    page.slow_next(1.5, method="PATCH")  # the page moves it, then answers after the client gave up
    approve(sv, "drill postpone orders to 2024-06-05 10:00 a freeze", BOB)
    sv.outbox.drain(timeout=5)
    [item] = items(sv, "statuspage.maintenance_moved")
    assert item.state is OutboxState.PENDING and "may have been made" in item.last_error
    now[0] += timedelta(seconds=5)  # the retry is due (backoff on the test's clock)
    delivered(sv)
    [item] = items(sv, "statuspage.maintenance_moved")
    assert item.state is OutboxState.DELIVERED and item.attempts == 2
    moved = maintenance(page, occ.id)
    assert moved["scheduled_for"] == (T + 24 * H).isoformat()
    assert [u["status"] for u in moved["incident_updates"]] == ["scheduled", "scheduled"]  # moved once
    assert len(page.requests_for("PATCH")) == 1


def test_a_drill_postponed_before_its_maintenance_is_published_gets_it_at_the_new_time(calendar, page):
    sv, now = calendar
    now[0] = T - 24 * H
    drills.tick(sv)  # announced: queued, not posted yet, so no maintenance is queued either
    occ = occurrence(sv)
    approve(sv, "drill postpone orders to 2024-06-05 10:00 a freeze", BOB)
    assert items(sv, "statuspage.maintenance") == [] and items(sv, "statuspage.maintenance_moved") == []
    delivered(sv)
    made = maintenance(page, occ.id)
    assert (made["scheduled_for"], made["scheduled_until"]) == ((T + 24 * H).isoformat(), (T + 26 * H).isoformat())
    assert page.requests_for("PATCH") == [] and items(sv, "statuspage.maintenance_moved") == []


def test_a_drill_skipped_while_its_maintenance_waits_in_the_outbox_never_gets_one(calendar, page):
    sv, now = calendar
    now[0] = T - 24 * H
    drills.tick(sv)
    occ = occurrence(sv)
    sv.outbox.run_once()  # the announcement is posted; that queues the maintenance's publication
    [created] = items(sv, "statuspage.maintenance")
    assert created.state is OutboxState.PENDING
    approve(sv, "drill skip orders not this month", CAROL)
    assert occurrence(sv).state is OccurrenceState.SKIPPED
    delivered(sv)
    assert page.incidents == {} and page.requests_for("POST") == [] and page.requests_for("PATCH") == []
    [created] = items(sv, "statuspage.maintenance")
    [cancel] = items(sv, "statuspage.maintenance_cancelled")
    assert created.state is cancel.state is OutboxState.DELIVERED
    assert created.id < cancel.id  # one stream: the cancellation waited for the creation
