"""On-call-aware approvals (``approvals.slots``) and severity-gated relaxations
(``approvals.relaxations``), over real HTTP with signed Slack payloads, the fake Slack, and
the fakes of PagerDuty's REST API (``GET /oncalls``) and Opsgenie's Who Is On Call API.

A slot is filled by a distinct person: the SRE slot by a member of the SRE user group, the
on-call slot only by whoever the pager says is on call now (cached, counted at the fake);
an unreadable pager leaves the slot open and says why; concurrent clicks on SQLite and
PostgreSQL never fill one slot twice nor let one person fill two.
"""
from __future__ import annotations

import io
import json
import threading
from collections import Counter

import pytest

from bot.actor import Actor
from bot.approval_slots import relaxation_for
from bot.check import check_config
from bot.config import parse_config
from bot.directory import Directory
from bot.incidents import open_by_hand
from bot.oncall import on_call
from bot.policy import policy_for
from bot.store import read_scope
from bot.store.models import Approval, AuditEntry, ChangeRequest, RequestState, Run, TimelineEvent
from bot.wiring import build_backends, build_services
from commands import router as actions
from commands.router import dispatch
from tests.app_server import running_app
from tests.fakes.opsgenie_api import FakeOpsgenie
from tests.fakes.pagerduty_api import FakePagerDuty
from tests.helpers import answered, delivered, request_row, rows, the_request, wait_until
from tests.paging_support import Clock

CHANNEL = "C_INC"
ALICE, BOB, CAROL, DAVE, ERIN = "UALICE", "UBOB", "UCAROL", "UDAVE", "UERIN"
SRE = "SSRE"
PD_KEY = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
PD_TOKEN = "pd-rest-token-42"
OG_KEY = "og-key-oncall"

SERVICE = """
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    database: {source: sim}
    runbooks:
      failover:
        - name: Shift traffic
          action: traffic.shift
          timeout: 5s
          verify: {traffic_in: target, within: 5s, interval: 100ms}
permissions:
  incident_open: [UALICE]
  incident_update: [UALICE]
"""

PD_CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 1.0, profiles: {orders: {lag: 20, jitter: 0}}}
  pd:
    kind: pagerduty
    routing_key: ${PD_KEY}
    events_url: ${PD_URL}
    api_url: ${PD_URL}
    api_token: ${PD_TOKEN}
    timeout: 2
paging:
  source: pd
  schedules:
    orders-primary: {schedule: PORDERS, description: the orders primary on-call}
  people:
    Carol@Example.com: UCAROL
    erin@example.com: UERIN
  on_call_cache: 60s
approvals:
  expires: 30m
  slots:
    - {name: sre, from: [SSRE]}
    - {name: on-call, on_call: orders-primary}
""" + SERVICE

OG_CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 1.0, profiles: {orders: {lag: 20, jitter: 0}}}
  og:
    kind: opsgenie
    api_key: ${OG_KEY}
    api_url: ${OG_URL}
    timeout: 2
paging:
  source: og
  schedules:
    orders-primary: {schedule: orders_schedule}
  people:
    erin@example.com: UERIN
approvals:
  slots:
    - {name: sre, from: [SSRE]}
    - {name: on-call, on_call: orders-primary}
""" + SERVICE

RELAXED_CONFIG = PD_CONFIG.replace("""  slots:
    - {name: sre, from: [SSRE]}""", """  relaxations:
    - when: {severity: sev1, rto_breach_within: 10m}
      required: 1
  slots:
    - {name: sre, from: [SSRE]}""")


@pytest.fixture
def pd():
    with FakePagerDuty(api_token=PD_TOKEN) as fake:
        fake.on_call["PORDERS"] = [("PCAROL1", "Carol", "carol@example.com")]
        yield fake


def services_for(text: str, db_url: str, env: dict, clock=None):
    loaded = parse_config(text, "oncall-test.yaml", env)
    return build_services(loaded, db_url=db_url, **({"clock": clock} if clock else {}))


def pd_env(pd: FakePagerDuty) -> dict:
    return {"PD_KEY": PD_KEY, "PD_URL": pd.url, "PD_TOKEN": PD_TOKEN}


def shutdown(services) -> None:
    services.runner.executor.shutdown(wait=True)
    services.engine.dispose()


def texts(message: dict) -> str:
    out = []
    for b in message.get("blocks", []):
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
        for e in b.get("elements", []):
            if isinstance(e, dict) and isinstance(e.get("text"), str):
                out.append(e["text"])
    return "\n".join(out)


def ask(app, fake, services, text: str = "failover orders region us-east-1 degraded") -> ChangeRequest:
    r = app.sender.slash_command(text, user_id=ALICE, user_name="alice", channel_id=CHANNEL,
                                 response_url=fake.response_url("ask"))
    assert r.status_code == 200
    answered(fake, "ask")
    return wait_until("the request's message", lambda: (q := the_request(services, "orders")).message_ts and q)


def click(app, fake, req: ChangeRequest, user: str, name: str) -> str:
    """Alice's request, clicked by ``user``; the ephemeral answer's text ('' when none)."""
    r = app.sender.block_action("cr_approve", str(req.id), user_id=user, user_name=user[1:].lower(),
                                channel_id=CHANNEL, response_url=fake.response_url(name),
                                message=fake.message(CHANNEL, req.message_ts))
    assert r.status_code == 200
    return r


def refusal(fake, name: str) -> str:
    return answered(fake, name).params["text"]


def message_text(fake, services, req) -> str:
    delivered(services)
    return texts(fake.message(CHANNEL, req.message_ts))


def slots_of(services, request_id: int) -> dict[str, str]:
    return {a.slot: a.approver for a in rows(services, Approval, Approval.request_id == request_id) if a.approve}


# -- 1. SRE + on-call over HTTP, PagerDuty -----------------------------------------------------

def test_sre_and_on_call_fill_their_slots_and_the_message_shows_what_is_open(pd, fake_slack, tmp_path):
    clock = Clock()
    services = services_for(PD_CONFIG, f"sqlite:///{tmp_path}/drbot.db", pd_env(pd), clock)
    fake_slack.usergroups[SRE] = [BOB, DAVE]
    try:
        with running_app(services, fake_slack) as app:
            req = ask(app, fake_slack, services)
            assert req.required_approvals == 2
            text = message_text(fake_slack, services, req)
            assert "*Approval slots*: all 2" in text
            assert "○ sre: OPEN, for one of <!subteam^SSRE>" in text
            assert "○ on-call: OPEN, for the person on call in orders-primary (now <@UCAROL>)" in text

            # Erin is neither SRE nor on call: refused, naming the open slots.
            click(app, fake_slack, req, ERIN, "erin")
            said = refusal(fake_slack, "erin")
            assert "you cannot fill any open approval slot" in said and "*sre*" in said and "*on-call*" in said

            # Bob (SRE) fills the SRE slot; the on-call slot stays open.
            click(app, fake_slack, req, BOB, "bob")
            wait_until("bob's approval", lambda: slots_of(services, req.id) == {"sre": BOB})
            text = message_text(fake_slack, services, req)
            assert "✓ sre: <@UBOB>" in text and "○ on-call: OPEN" in text
            assert request_row(services, req.id).state is RequestState.PENDING

            # Dave is SRE too, but that slot is taken and he is not on call.
            click(app, fake_slack, req, DAVE, "dave")
            said = refusal(fake_slack, "dave")
            assert "still open: *on-call*" in said and "*sre*" not in said

            # Carol is on call (the pager says carol@example.com; paging.people maps it, any case).
            click(app, fake_slack, req, CAROL, "carol")
            wait_until("approved", lambda: request_row(services, req.id).state is not RequestState.PENDING)
            assert slots_of(services, req.id) == {"sre": BOB, "on-call": CAROL}
            approved = [json.loads(a.detail) for a in rows(services, AuditEntry, AuditEntry.action == "request.approved")]
            assert [(d["slot"], d["count"], d["required"]) for d in approved] == [("sre", 1, 2), ("on-call", 2, 2)]
            assert len(rows(services, Run, Run.request_id == req.id)) == 1

            # Every render and click above read the schedule once: cached for 60 s of the clock.
            assert len(pd.oncall_reads()) == 1
            read = pd.oncall_reads()[0]
            assert read.query["schedule_ids[]"] == ["PORDERS"] and read.query["include[]"] == ["users"]
            assert read.headers["authorization"] == f"Token token={PD_TOKEN}"
            clock.advance(61)  # the cache has aged out: the next read asks the pager again
            assert on_call(services, "orders-primary").users == {CAROL}
            assert len(pd.oncall_reads()) == 2
    finally:
        shutdown(services)


def test_on_call_slot_is_only_for_who_is_on_call_now(pd, fake_slack, tmp_path):
    clock = Clock()
    services = services_for(PD_CONFIG, f"sqlite:///{tmp_path}/drbot.db", pd_env(pd), clock)
    fake_slack.usergroups[SRE] = [BOB]
    try:
        with running_app(services, fake_slack) as app:
            req = ask(app, fake_slack, services)
            delivered(services)
            # The rotation hands over to Erin; Carol's cached shift ends with the cache.
            pd.on_call["PORDERS"] = [("PERIN01", "Erin", "erin@example.com")]
            clock.advance(61)
            click(app, fake_slack, req, CAROL, "carol")
            assert "still open: *sre*, *on-call*" in refusal(fake_slack, "carol")
            click(app, fake_slack, req, ERIN, "erin")
            wait_until("erin's approval", lambda: slots_of(services, req.id) == {"on-call": ERIN})
            assert request_row(services, req.id).state is RequestState.PENDING
            refused = [json.loads(a.detail) for a in rows(services, AuditEntry, AuditEntry.action == "approval.refused")]
            assert refused and refused[0]["why"] == "no open slot"
    finally:
        shutdown(services)


def test_pager_down_leaves_the_on_call_slot_open_and_says_why(pd, fake_slack, tmp_path):
    services = services_for(PD_CONFIG, f"sqlite:///{tmp_path}/drbot.db", pd_env(pd), Clock())
    fake_slack.usergroups[SRE] = [BOB]
    pd.schedule_faults.fail(503, times=50)
    try:
        with running_app(services, fake_slack) as app:
            req = ask(app, fake_slack, services)
            text = message_text(fake_slack, services, req)
            assert "○ on-call: OPEN, for the person on call in orders-primary; cannot be filled now:" in text
            assert "HTTP 503" in text
            click(app, fake_slack, req, CAROL, "carol")
            said = refusal(fake_slack, "carol")
            assert "*on-call* (cannot be filled now:" in said and "HTTP 503" in said
            click(app, fake_slack, req, BOB, "bob")
            wait_until("bob's approval", lambda: slots_of(services, req.id) == {"sre": BOB})
            # never approved without the on-call slot; failures are not cached (asked again each time)
            assert request_row(services, req.id).state is RequestState.PENDING
            assert len(pd.oncall_reads()) >= 2
            assert not rows(services, Run, Run.request_id == req.id)
    finally:
        shutdown(services)


def test_opsgenie_schedule_fills_the_on_call_slot(fake_slack, tmp_path):
    with FakeOpsgenie(OG_KEY) as og:
        og.on_call["orders_schedule"] = ["erin@example.com", "nobody-mapped@example.com"]
        services = services_for(OG_CONFIG, f"sqlite:///{tmp_path}/drbot.db", {"OG_KEY": OG_KEY, "OG_URL": og.url})
        fake_slack.usergroups[SRE] = [BOB]
        try:
            with running_app(services, fake_slack) as app:
                req = ask(app, fake_slack, services)
                assert "(now <@UERIN>)" in message_text(fake_slack, services, req)
                click(app, fake_slack, req, ERIN, "erin")
                click(app, fake_slack, req, BOB, "bob")
                wait_until("approved", lambda: request_row(services, req.id).state is not RequestState.PENDING)
                assert slots_of(services, req.id) == {"sre": BOB, "on-call": ERIN}
                [read, *_] = og.oncall_reads()
                assert read.query["flat"] == ["true"] and read.query["scheduleIdentifierType"] == ["name"]
                assert read.headers["authorization"] == f"GenieKey {OG_KEY}"
        finally:
            shutdown(services)


# -- 2. concurrency: SQLite and PostgreSQL -----------------------------------------------------

def test_concurrent_clicks_fill_each_slot_once_and_each_person_once(pd, db_url):
    # Carol is in SRE *and* on call: she may fill either slot, never both.
    pd.on_call["PORDERS"] = [("PCAROL1", "Carol", "carol@example.com"), ("PERIN01", "Erin", "erin@example.com")]
    services = services_for(PD_CONFIG, db_url, pd_env(pd))
    services.directory = Directory(lambda group: {SRE: [BOB, CAROL, DAVE]}[group])
    try:
        created = dispatch(services, Actor(ALICE, "alice", "slack", CHANNEL), "failover orders region us-east-1 down")
        assert created.template == "request_created", created
        req_id = created.context["req"].id
        people = [BOB, CAROL, DAVE, ERIN]
        barrier = threading.Barrier(32)
        replies: list = [None] * 32
        errors: list[BaseException] = []

        def approve(i: int) -> None:
            user = people[i % len(people)]
            try:
                barrier.wait(timeout=30)
                replies[i] = actions.click(services, Actor(user, user.lower(), "slack", CHANNEL), "cr_approve",
                                           str(req_id))
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=approve, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads) and errors == []
        filled = rows(services, Approval, Approval.request_id == req_id)
        assert sorted(a.slot for a in filled) == ["on-call", "sre"]
        assert len({a.approver for a in filled}) == 2
        by_slot = {a.slot: a.approver for a in filled}
        assert by_slot["sre"] in (BOB, CAROL, DAVE) and by_slot["on-call"] in (CAROL, ERIN)
        assert sum(r is None for r in replies) == 2
        codes = Counter(r.context["code"] for r in replies if r is not None)
        assert set(codes) <= {"not_pending", "already_approved", "no_open_slot"}, codes
        wait_until("one run", lambda: len(rows(services, Run, Run.request_id == req_id)) == 1, 30)
    finally:
        shutdown(services)


# -- 3. severity-gated relaxation -------------------------------------------------------------

def test_sev1_near_its_rto_needs_one_slot_and_says_so_loudly(pd, fake_slack, tmp_path):
    clock = Clock()
    services = services_for(RELAXED_CONFIG, f"sqlite:///{tmp_path}/drbot.db", pd_env(pd), clock)
    fake_slack.usergroups[SRE] = [BOB]
    try:
        with running_app(services, fake_slack) as app:
            inc = open_by_hand(services, Actor(ALICE, "alice", "slack", CHANNEL), "orders down", "sev1", ["orders"])
            delivered(services)
            policy = policy_for(services.config, "orders")
            with read_scope(services.engine) as s:  # 15 min RTO left: outside the 10 min window
                assert relaxation_for(services, s, policy, clock()) is None
            clock.advance(6 * 60)  # 9 min left
            req = ask(app, fake_slack, services)
            assert req.required_approvals == 1
            text = message_text(fake_slack, services, req)
            assert "*RELAXED APPROVAL*: needs 1 approval instead of 2, by policy: incident #" in text
            assert "is sev1 and its RTO of 15m runs out in" in text and "any 1 of 2" in text
            channel = rows(services, type(inc), type(inc).id == inc.id)[0].channel_id
            loud = wait_until("the incident channel told", lambda: [
                c for c in fake_slack.calls("chat.postMessage") if c.params.get("channel") == channel
                and "RELAXED APPROVAL" in c.params.get("text", "")])
            assert "needs 1 approval(s) instead of 2" in loud[0].params["text"]
            [entry] = rows(services, AuditEntry, AuditEntry.action == "approval.relaxed")
            assert json.loads(entry.detail)["required"] == 1
            assert rows(services, TimelineEvent, TimelineEvent.incident_id == inc.id,
                        TimelineEvent.kind == "approval.relaxed")
            click(app, fake_slack, req, BOB, "bob")
            wait_until("approved", lambda: request_row(services, req.id).state is not RequestState.PENDING)
            assert slots_of(services, req.id) == {"sre": BOB}
    finally:
        shutdown(services)


def test_slots_name_schedules_that_exist():
    bad = PD_CONFIG.replace("on_call: orders-primary", "on_call: orders-primry")
    with pytest.raises(Exception) as e:
        parse_config(bad, "oncall-test.yaml", {"PD_KEY": PD_KEY, "PD_URL": "http://127.0.0.1:9", "PD_TOKEN": "t"})
    said = str(e.value)
    assert "approvals.slots[1].on_call" in said and "did you mean 'orders-primary'" in said
    both = PD_CONFIG.replace("{name: sre, from: [SSRE]}", "{name: sre, from: [SSRE], on_call: orders-primary}")
    with pytest.raises(Exception) as e:
        parse_config(both, "oncall-test.yaml", {"PD_KEY": PD_KEY, "PD_URL": "http://127.0.0.1:9", "PD_TOKEN": "t"})
    assert "needs exactly one of 'from'" in str(e.value)
    tokenless = PD_CONFIG.replace("    api_token: ${PD_TOKEN}\n", "")
    with pytest.raises(Exception) as e:
        parse_config(tokenless, "oncall-test.yaml", {"PD_KEY": PD_KEY, "PD_URL": "http://127.0.0.1:9"})
    assert "paging.schedules.orders-primary" in str(e.value) and "has no api_token" in str(e.value)


def test_an_on_call_person_not_in_paging_people_is_found_by_their_slack_e_mail(pd, fake_slack, tmp_path):
    """Whoever the pager says is on call fills the slot when the Slack workspace has a user
    with that e-mail address (users.lookupByEmail); nobody else is guessed."""
    services = services_for(PD_CONFIG, f"sqlite:///{tmp_path}/drbot.db", pd_env(pd))
    fake_slack.usergroups[SRE] = [BOB]
    pd.on_call["PORDERS"] = [("PFRANK1", "Frank", "Frank@Example.com")]
    try:
        with running_app(services, fake_slack) as app:
            req = ask(app, fake_slack, services)
            delivered(services)
            click(app, fake_slack, req, "UMALLORY", "mallory")  # not Frank: no slot for her
            assert "still open: *sre*, *on-call*" in refusal(fake_slack, "mallory")
            fake_slack.emails["frank@example.com"] = "UFRANK"
            services.extras["on_call_cache"].hits.clear()  # the next read of the rotation
            click(app, fake_slack, req, "UFRANK", "frank")
            wait_until("frank's approval", lambda: slots_of(services, req.id) == {"on-call": "UFRANK"})
            lookups = [c.params.get("email") for c in fake_slack.calls("users.lookupByEmail")]
            assert lookups and set(lookups) == {"frank@example.com"}
    finally:
        shutdown(services)


def test_check_config_reads_every_schedule_and_names_who_paging_people_misses(pd, tmp_path):
    """`drbot check-config` asks the pager for each schedule once: who is on call now, and
    whom `paging.people` does not name; an unreadable schedule fails the check."""
    loaded = parse_config(PD_CONFIG, "oncall-test.yaml", pd_env(pd))
    pd.on_call["PORDERS"] = [("PCAROL1", "Carol", "carol@example.com"), ("PFRANK1", "Frank", "frank@example.com")]
    out = io.StringIO()
    check_config(loaded, build_backends(loaded), out)
    line = next(x for x in out.getvalue().splitlines() if "schedule orders-primary" in x)
    assert line.strip().startswith("ok   schedule orders-primary (pd PORDERS): 2 on call now")
    assert line.endswith("not in paging.people (looked up by e-mail in Slack when drbot runs): frank@example.com")

    pd.schedule_faults.fail(503, times=5)
    out = io.StringIO()
    assert check_config(loaded, build_backends(loaded), out) == 2
    assert "FAIL schedule orders-primary (pd PORDERS):" in out.getvalue()
