"""The outbox is the one path from the core to Slack (issue: "One path from the core to the
outside world"). Scenario tests over real HTTP against the fake Slack Web API:

1. Slack answers 500, then ``ratelimited``, to every chat call while a request is posted,
   approved and run: the run does not wait for Slack, and after Slack recovers the request
   message, the (coalesced) progress and the final state arrive, in order, nothing twice.
2. A request whose message can never be posted is withdrawn and its requester told.
3. Skipping preview 12 leaves preview 1 undecided (decisions are rows, not JSON substrings).
4. On PostgreSQL, the database aborts the record of a delivery (a deadlock): the record runs
   again and the message is not posted a second time when the claim would have run out.
5. On PostgreSQL, a transaction holds an item's row: the worker's pass skips it instead of
   waiting (a waiting claim could close a deadlock) and delivers it once it is free.

Time is driven with the services' clock (retries come due when it moves), never slept out.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import threading
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk import WebClient
from sqlmodel import select

from bot.config import parse_config
from bot.incidents import decide_preview, open_by_hand, update_from_form
from bot.store.incident_tables import Incident, OutboxItem, OutboxState, PreviewDecision
from bot.store.models import AuditEntry, ChangeRequest, RequestState
from bot.wiring import build_services
from commands.router import dispatch
from tests.app_server import running_app
from tests.postgres import temporary_schema
from transports.slack.messenger import SlackMessenger
from tests.helpers import ALICE, BOB, TWO_STEP_CONFIG, delivered, request_row, rows, wait_until

CHANNEL = "C_INC"



class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clocked(tmp_path):
    clock = Clock()
    services = build_services(parse_config(TWO_STEP_CONFIG, "outbox-test.yaml", {}),
                              db_url=f"sqlite:///{tmp_path}/d.db", clock=clock)
    yield services, clock
    services.engine.dispose()


def _pending(services) -> list[OutboxItem]:
    return rows(services, OutboxItem, OutboxItem.state == OutboxState.PENDING)


def _retrying(services, attempts: int) -> bool:
    """The request's message (the head of its stream) has failed ``attempts`` times and waits."""
    head = _pending(services)[0]
    return head.kind == "request.message" and head.attempts >= attempts and head.claimed_until is None


def test_a_slack_outage_loses_nothing_and_repeats_nothing(clocked, fake_slack):
    services, clock = clocked
    fake_slack.outage("chat.", status=500, error="internal_error")
    with running_app(services, fake_slack) as app:
        r = app.sender.slash_command("failover orders db down in us-east-1", user_id=ALICE.id,
                                     user_name="alice", channel_id=CHANNEL,
                                     response_url=fake_slack.response_url())
        assert r.status_code == 200
        req = wait_until("the request", lambda: rows(services, ChangeRequest) and rows(services, ChangeRequest)[0])
        wait_until("a failed attempt to post it", lambda: fake_slack.calls("chat.postMessage"))
        # the approver clicks (Slack's inbound side works; its Web API does not)
        assert app.sender.block_action("cr_approve", str(req.id), user_id=BOB.id, user_name="bob",
                                       channel_id=CHANNEL).status_code == 200
        done = wait_until("the run to end", lambda: request_row(services, req.id).state in (
            RequestState.SUCCEEDED, RequestState.FAILED) and request_row(services, req.id))
        assert done.state is RequestState.SUCCEEDED, done.state_reason  # the run never waited for Slack
        wait_until("the message tried", lambda: _retrying(services, 1))
        clock.advance(20)
        fake_slack.outage("chat.", status=429, error="ratelimited", retry_after=1)
        services.outbox.poke()
        wait_until("tried again, rate limited", lambda: any(c.status == 429 for c in fake_slack.calls()))
        wait_until("the message waits", lambda: _retrying(services, 2))
        clock.advance(40)  # 60 s of outage, in the services' time
        assert fake_slack.succeeded("chat.postMessage") == [] and fake_slack.succeeded("chat.update") == []
        assert request_row(services, req.id).message_ts == ""
        fake_slack.heal()
        clock.advance(600)  # every backoff is over
        services.outbox.poke()
        delivered(services)

        posts = fake_slack.succeeded("chat.postMessage")
        updates = fake_slack.succeeded("chat.update")
        req = request_row(services, req.id)
        # the request message first, then the progress in its thread: two posts, not more
        assert [p.params["channel"] for p in posts] == [CHANNEL, CHANNEL]
        assert posts[0].params.get("thread_ts") is None and posts[1].params["thread_ts"] == req.message_ts
        assert posts[0].at < posts[1].at
        message = fake_slack.message(CHANNEL, req.message_ts)
        assert message["text"].endswith(": succeeded")
        progress_ts = [ts for (ch, ts), m in fake_slack.messages.items() if m.get("thread_ts") == req.message_ts]
        assert len(progress_ts) == 1
        progress = fake_slack.message(CHANNEL, progress_ts[0])
        texts = " ".join(b.get("text", {}).get("text", "") for b in progress["blocks"] if b.get("text"))
        assert "switch writer" in texts and "shift traffic" in texts and "succeeded" in progress["text"]
        # coalesced: the queued updates of one message went out as at most one update each
        assert len(updates) <= 2
        assert _pending(services) == []


ABORT_FIRST_DELIVERY = """
CREATE SEQUENCE abort_once;
CREATE FUNCTION abort_first_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state <> OLD.state AND NEW.state::text IN ('delivered', 'DELIVERED') AND nextval('abort_once') = 1 THEN
    RAISE EXCEPTION 'deadlock detected (made by the test)' USING ERRCODE = 'deadlock_detected';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER abort_first_delivery BEFORE UPDATE ON outbox_item
  FOR EACH ROW EXECUTE FUNCTION abort_first_delivery();
"""
"""The first time an item is marked delivered, PostgreSQL aborts the transaction with the
SQLSTATE of a deadlock (40P01), as it does to one of two transactions locking rows in
opposite orders."""


@pytest.mark.postgres
def test_a_delivery_whose_record_postgresql_aborts_is_recorded_once_and_never_posted_again(pg_url, fake_slack):
    clock = Clock()
    with temporary_schema(pg_url) as url:
        services = build_services(parse_config(TWO_STEP_CONFIG, "outbox-test.yaml", {}), db_url=url, clock=clock)
        try:
            with services.engine.begin() as conn:
                conn.exec_driver_sql(ABORT_FIRST_DELIVERY)
            with running_app(services, fake_slack) as app:
                app.sender.slash_command("failover orders db down in us-east-1", user_id=ALICE.id,
                                         user_name="alice", channel_id=CHANNEL,
                                         response_url=fake_slack.response_url())
                req = wait_until("the request's message", lambda: rows(services, ChangeRequest)
                                 and request_row(services, rows(services, ChangeRequest)[0].id).message_ts
                                 and rows(services, ChangeRequest)[0])
                delivered(services)
                with services.engine.connect() as conn:
                    assert conn.exec_driver_sql("SELECT last_value FROM abort_once").scalar() >= 1, \
                        "the test's abort never fired"
                # past the claim of the aborted record: a lost record would be delivered again now
                clock.advance(600)
                services.outbox.poke()
                delivered(services)
                posts = [c for c in fake_slack.succeeded("chat.postMessage")
                         if c.params["channel"] == CHANNEL and not c.params.get("thread_ts")]
                assert len(posts) == 1, [p.params.get("text") for p in posts]
                top = [ts for (ch, ts), m in fake_slack.messages.items() if ch == CHANNEL and not m.get("thread_ts")]
                assert top == [request_row(services, req.id).message_ts]
                items = rows(services, OutboxItem)
                assert items and all(i.state is OutboxState.DELIVERED and i.attempts == 1 for i in items), \
                    [(i.kind, i.state, i.attempts) for i in items]
        finally:
            services.engine.dispose()


@pytest.mark.postgres
def test_a_pass_skips_an_item_whose_row_a_transaction_holds_and_delivers_it_after(pg_url, fake_slack):
    with temporary_schema(pg_url) as url:
        services = build_services(parse_config(TWO_STEP_CONFIG, "outbox-test.yaml", {}), db_url=url)
        services.messenger = SlackMessenger(WebClient(base_url=fake_slack.base_url, token="xoxb-t"), services.renderer)
        try:
            asked = dispatch(services, ALICE, "failover orders db down in us-east-1")
            assert asked.template == "request_created", services.renderer.text(asked)
            (item,) = rows(services, OutboxItem, OutboxItem.kind == "request.message")
            passes: list[int] = []
            with services.engine.connect() as holder:
                holder.execute(select(OutboxItem.id).where(OutboxItem.id == item.id).with_for_update()).all()
                worker = threading.Thread(target=lambda: passes.append(services.outbox.run_once()), daemon=True)
                worker.start()
                worker.join(timeout=20)
                blocked = worker.is_alive()
                holder.rollback()  # frees the row (and a blocked pass, so that the test ends)
            assert not blocked, "the pass waited for a row another transaction holds"
            held = request_row(services, asked.context["req"].id)
            assert (held.message_ts, fake_slack.succeeded("chat.postMessage")) == ("", [])
            assert rows(services, OutboxItem, OutboxItem.id == item.id)[0].claimed_until is None
            delivered(services)
            (post,) = fake_slack.succeeded("chat.postMessage")
            assert request_row(services, held.id).message_ts and post.params["channel"] == ALICE.channel
        finally:
            services.engine.dispose()


def test_a_request_whose_message_cannot_be_posted_is_withdrawn_and_the_requester_told(clocked, fake_slack):
    services, clock = clocked
    fake_slack.outage("chat.postMessage", status=200, error="channel_not_found", channel="C_GONE")
    with running_app(services, fake_slack) as app:
        app.sender.slash_command("failover orders db down", user_id=ALICE.id, user_name="alice",
                                 channel_id="C_GONE", response_url=fake_slack.response_url())
        req = wait_until("the request", lambda: rows(services, ChangeRequest) and rows(services, ChangeRequest)[0])
        withdrawn = wait_until("withdrawn", lambda: request_row(services, req.id).state is RequestState.CANCELLED
                               and request_row(services, req.id))
        assert withdrawn.state_reason.startswith("withdrawn: its message could not be posted")
        assert "channel_not_found" in withdrawn.state_reason
        dm = wait_until("the DM", lambda: [c for c in fake_slack.succeeded("chat.postMessage")
                                           if c.params["channel"] == ALICE.id])
        assert f"#{req.id} was withdrawn" in dm[0].params["text"]
        audit = rows(services, AuditEntry, AuditEntry.action == "request.withdrawn")
        assert len(audit) == 1 and "channel_not_found" in audit[0].detail
        # it can no longer be approved
        app.sender.block_action("cr_approve", str(req.id), user_id=BOB.id, channel_id="C_GONE")
        delivered(services)
        assert request_row(services, req.id).state is RequestState.CANCELLED


def test_a_request_is_withdrawn_after_its_message_failed_for_every_attempt(clocked, fake_slack):
    """Transient failures are retried with backoff, then given up: never PENDING without buttons."""
    services, clock = clocked
    fake_slack.outage("chat.postMessage", status=500, error="internal_error", channel=CHANNEL)
    with running_app(services, fake_slack) as app:
        app.sender.slash_command("failover orders db down", user_id=ALICE.id, user_name="alice", channel_id=CHANNEL,
                                 response_url=fake_slack.response_url())
        req = wait_until("the request", lambda: rows(services, ChangeRequest) and rows(services, ChangeRequest)[0])
        for attempt in range(1, 11):
            wait_until(f"attempt {attempt}", lambda: request_row(services, req.id).state is RequestState.CANCELLED
                       or _retrying(services, attempt))
            if request_row(services, req.id).state is RequestState.CANCELLED:
                break
            assert request_row(services, req.id).state is RequestState.PENDING
            clock.advance(301)  # past the longest backoff
            services.outbox.poke()
        done = wait_until("withdrawn", lambda: request_row(services, req.id).state is RequestState.CANCELLED
                          and request_row(services, req.id))
        assert len(fake_slack.calls("chat.postMessage")) >= 10
        assert "internal_error" in done.state_reason
        wait_until("the DM", lambda: [c for c in fake_slack.succeeded("chat.postMessage")
                                      if c.params["channel"] == ALICE.id])


SP_CONFIG = TWO_STEP_CONFIG + """
statuspage:
  source: page
  publish: {sev2: preview}
permissions:
  incident_open: [UALICE]
  incident_update: [UALICE]
  statuspage_publish: [UALICE, UBOB]
"""


def _preview_services(db_url: str):
    loaded = parse_config(SP_CONFIG.replace("sources:\n", "sources:\n  page: {kind: statuspage, base_url: "
                                            "'http://127.0.0.1:9', page_id: p1, api_key: k}\n"), "sp.yaml", {})
    return build_services(loaded, db_url=db_url, inline_runs=True)


def test_skipping_preview_12_leaves_preview_1_undecided(tmp_path):
    services = _preview_services(f"sqlite:///{tmp_path}/d.db")
    inc = open_by_hand(services, ALICE, "orders down", "sev2", ["orders"])
    for i in range(11):
        update_from_form(services, ALICE, inc.id, "identified" if i % 2 else "investigating", f"update {i}")
    previews = rows(services, OutboxItem, OutboxItem.kind == "incident.statuspage_preview")
    assert len(previews) == 12
    first, twelfth = previews[0].id, previews[11].id
    assert decide_preview(services, BOB, twelfth, publish=False) is None
    assert [d.item_id for d in rows(services, PreviewDecision, order=PreviewDecision.item_id)] == [twelfth]
    # preview 1 is still open: publishing it works, and is queued once
    assert decide_preview(services, BOB, first, publish=True) is None
    again = decide_preview(services, BOB, first, publish=False)
    assert again is not None and again.context["code"] == "preview_decided"
    assert again.context["p"]["how"] == "approved"
    publishes = rows(services, OutboxItem, OutboxItem.kind == "statuspage.publish")
    assert len(publishes) == 1 and f'"preview":{first}' in publishes[0].payload.replace(" ", "")
    assert rows(services, Incident)[0].id == inc.id
    services.engine.dispose()


def test_concurrent_clicks_on_one_preview_decide_it_once(db_url):
    """Publish and Skip clicked at once by several people (on PostgreSQL, as on several
    replicas): one decision, at most one publication, everyone else told it was decided."""
    services = _preview_services(db_url)
    open_by_hand(services, ALICE, "orders down", "sev2", ["orders"])
    (preview,) = rows(services, OutboxItem, OutboxItem.kind == "incident.statuspage_preview")
    people = [BOB, ALICE] * 5
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda i: decide_preview(services, people[i], preview.id, publish=i % 3 != 0),
                                range(10)))
    (decision,) = rows(services, PreviewDecision, order=PreviewDecision.item_id)
    refused = [a for a in answers if a is not None]
    assert len(refused) == 9 and all(a.context["code"] == "preview_decided" for a in refused)
    publishes = rows(services, OutboxItem, OutboxItem.kind == "statuspage.publish")
    assert len(publishes) == (1 if decision.decision == "approved" else 0)
    services.engine.dispose()
