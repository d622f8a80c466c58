"""The public status page and the incident's closing posts, delivered through the outbox.

The real worker (``Worker.start`` / ``drain``) delivers to a FakeStatuspage over HTTP
(tests/fakes/statuspage_api.py), to the FakeSlack through the running app, and to moto's
S3 server. Commands go through ``commands.router.dispatch`` (or signed slash commands),
exactly as the transports call them. "Restarting the bot" stops the worker, disposes the
engine and builds new services on the same database, as a new process would.

What is proven: one status-page incident per drbot incident, every status change
delivered once and in order, through server errors, rate limits (Retry-After) and
restarts, never more than one request per second to the page; an undeliverable item is
visible in ``/dr outbox`` and can be retried; resolving posts the timeline and uploads and
archives the postmortem draft.
"""
from __future__ import annotations

import json
import threading

import pytest
from sqlmodel import Session, col, select

from bot.actor import Actor
from bot.config import parse_config
from bot.store.incident_tables import Incident, IncidentStatus, OutboxItem, OutboxState
from bot.store.models import TimelineEvent
from bot.wiring import build_services
from commands.router import dispatch, submit
from integrations.aws.session import make_client
from tests import helpers
from tests.app_server import running_app
from tests.fakes.statuspage_api import FakeStatuspage
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401

SP_KEY = "sp-key-4f2a9c"
COMPONENT = "cmp0orders01"
ALICE = Actor(id="UALICE", name="alice", origin="shell")
INTERVAL = 1.0  # Statuspage: one request per second per API key (over a rolling minute)
SLACK = 0.3
"""Seconds a request may reach the page later than the slot it took (a commit, the HTTP
client, a loaded machine): the pacer's slots are exact (tests/test_pacing.py); arrivals
are measured here, at the page."""

SERVICES = """
regions: [us-east-1, us-west-2]
services:
  - name: orders
    tier: critical
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
"""

SP_CONFIG = SERVICES + """
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 20, jitter: 0}
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
  publish: {sev1: auto, sev2: auto, sev3: preview, sev4: skip}
  publish_typed_text: {sev2: auto}  # the typed title and messages go out without a preview
permissions:
  incident_open: [UALICE]
  incident_update: [UALICE]
  outbox_retry: [UALICE]
"""


# -- helpers -----------------------------------------------------------------------------

@pytest.fixture
def fake_page():
    with FakeStatuspage(page_id="pg1", api_key=SP_KEY) as fake:
        fake.add_component(COMPONENT, "Orders API")
        yield fake


def build(db_url: str, fake: FakeStatuspage, component: str = COMPONENT, timeout: float = 5):
    env = {"SP_KEY": SP_KEY, "SP_URL": fake.url, "SP_COMPONENT": component, "SP_TIMEOUT": str(timeout)}
    return build_services(parse_config(SP_CONFIG, "statuspage-test.yaml", env), db_url=db_url)


def shut_down(services, thread: threading.Thread | None = None) -> None:
    """What stopping the process does: the worker ends, clients and connections close."""
    services.outbox.stop()
    if thread is not None:
        thread.join(timeout=20)
        assert not thread.is_alive(), "the outbox worker did not stop"
    services.backends["sp"].close()
    services.engine.dispose()


def start_worker(services) -> threading.Thread:
    before = set(threading.enumerate())
    services.outbox.start(interval=0.05)
    [thread] = [t for t in threading.enumerate() if t not in before and t.name == "drbot-outbox"]
    return thread


def run(services, text: str, actor: Actor = ALICE):
    reply = dispatch(services, actor, text)
    assert reply.template not in ("usage", "error", "refused"), (text, reply.template, reply.context)
    return reply


def wait_until(what: str, predicate, timeout: float, interval: float = 0.02):
    return helpers.wait_until(what, predicate, timeout, interval)


def writes(fake: FakeStatuspage, ok_only: bool = True) -> list:
    """POST and PATCH requests (creations and updates), in arrival order."""
    return [r for r in fake.requests if r.method in ("POST", "PATCH", "PUT") and (not ok_only or r.status < 300)]


def statuses(requests) -> list[str]:
    return [r.json["incident"]["status"] for r in requests]


def gaps(fake: FakeStatuspage) -> list[float]:
    ats = [r.at for r in fake.requests]
    return [round(b - a, 3) for a, b in zip(ats, ats[1:])]


def assert_paced(fake: FakeStatuspage) -> None:
    """Any two requests k apart reach the page at least k seconds apart, less SLACK: one
    request per second, however they bunch (unpaced, a GET and its PATCH are ms apart)."""
    assert fake.requests, "no request reached the page"
    ats = [r.at for r in fake.requests]
    close = [(i, j, round(ats[j] - ats[i], 3)) for i in range(len(ats)) for j in range(i + 1, len(ats))
             if ats[j] - ats[i] < (j - i) * INTERVAL - SLACK]
    assert not close, (
        f"more than one request per second to the page: (i, j, seconds) {close[:5]}; gaps {gaps(fake)} between "
        f"{[(r.method, r.path.rsplit('/', 1)[-1], r.status) for r in fake.requests]}")


def assert_one_incident_in_order(fake: FakeStatuspage) -> dict:
    """Exactly one incident, created degraded, updated on each change, resolved operational."""
    assert len(fake.incidents) == 1, list(fake.incidents)
    [incident] = fake.incidents.values()
    assert incident["status"] == "resolved" and incident["resolved_at"]
    # the key it was created with, and the marker of the last update applied (its outbox item)
    assert incident["metadata"]["drbot"]["key"] == "drbot-incident-1" and set(incident["metadata"]) == {"drbot"}
    updates = list(reversed(incident["incident_updates"]))  # the API lists them newest first
    assert [u["status"] for u in updates] == ["investigating", "identified", "monitoring", "resolved"]
    assert fake.components[COMPONENT]["status"] == "operational"

    done = writes(fake)
    assert [r.method for r in done] == ["POST", "PATCH", "PATCH", "PATCH"]
    assert statuses(done) == ["investigating", "identified", "monitoring", "resolved"]
    created = done[0].json["incident"]
    assert created["components"] == {COMPONENT: "partial_outage"}  # sev2
    assert created["component_ids"] == [COMPONENT]
    assert created["name"] == "Checkout failing"
    for r in done[1:3]:
        assert r.json["incident"]["components"] == {COMPONENT: "partial_outage"}
    assert done[3].json["incident"]["components"] == {COMPONENT: "operational"}
    assert {r.path for r in done[1:]} == {f"/v1/pages/pg1/incidents/{incident['id']}"}
    markers = [r.json["incident"]["metadata"]["drbot"]["update"] for r in done[1:]]
    assert len(set(markers)) == 3 and all(m.startswith("drbot-outbox-") for m in markers)
    assert incident["metadata"]["drbot"]["update"] == markers[-1]
    # every request, failed ones included, carried the key
    assert {r.headers.get("authorization") for r in fake.requests} == {f"OAuth {SP_KEY}"}
    return incident


def queue_the_incident(services) -> int:
    reply = run(services, "incident open Checkout failing sev2 orders")
    inc_id = reply.context["inc"].id
    # the incident's channel is created by the outbox, not yet here: the update form names the incident
    for status, message in (("identified", "A bad deploy of the orders API"),
                            ("monitoring", "Rolled back; error rate falling"),
                            ("resolved", "Error rate normal for 30 minutes")):
        assert submit(services, ALICE, "inc_update", str(inc_id), {"status": status, "message": message}) is None
    return inc_id


def publish_items(services) -> list[OutboxItem]:
    with Session(services.engine) as s:
        return list(s.exec(select(OutboxItem).where(OutboxItem.kind == "statuspage.publish")
                           .order_by(col(OutboxItem.id))))


# -- the status page -----------------------------------------------------------------------

def test_each_status_change_reaches_the_page_once_and_in_order(db_url, fake_page):
    services = build(db_url, fake_page)
    try:
        inc_id = queue_the_incident(services)
        assert [json.loads(i.payload)["status"] for i in publish_items(services)] == [
            "investigating", "identified", "monitoring", "resolved"]
        assert fake_page.requests == []  # nothing is sent in the command's transaction

        assert services.outbox.drain(timeout=30)

        incident = assert_one_incident_in_order(fake_page)
        assert_paced(fake_page)
        updates = list(reversed(incident["incident_updates"]))
        assert "A bad deploy of the orders API" in updates[1]["body"]
        assert "Error rate normal for 30 minutes" in updates[3]["body"]
        assert all(i.state is OutboxState.DELIVERED and i.attempts == 1 for i in publish_items(services))
        with Session(services.engine) as s:
            inc = s.get(Incident, inc_id)
            assert inc.statuspage_id == incident["id"] and inc.status is IncidentStatus.RESOLVED
            published = s.exec(select(TimelineEvent).where(TimelineEvent.incident_id == inc_id,
                                                           TimelineEvent.kind == "statuspage.published")
                               .order_by(col(TimelineEvent.id))).all()
        assert [json.loads(e.data)["status"] for e in published] == [
            "investigating", "identified", "monitoring", "resolved"]

        # a second drain has nothing left to send
        before = len(fake_page.requests)
        assert services.outbox.drain(timeout=5)
        assert len(fake_page.requests) == before
    finally:
        shut_down(services)


def test_failures_rate_limits_and_restarts_lose_and_repeat_nothing(db_url, fake_page):
    fake_page.fail_next(500, times=3)
    fake_page.fail_next(429, times=2, retry_after=1)
    services = build(db_url, fake_page)
    thread = None
    try:
        inc_id = queue_the_incident(services)

        # first life: server errors (backoff), then the first rate limit; then the bot stops
        thread = start_worker(services)
        wait_until("three 500s and a 429", lambda: len(fake_page.requests) >= 4, timeout=40)
        shut_down(services, thread)
        assert [r.status for r in fake_page.requests[:4]] == [500, 500, 500, 429]
        [first, *rest] = publish_items(services)
        assert first.state is OutboxState.PENDING and first.attempts == 4
        assert "rate limiting" in first.last_error
        assert all(i.state is OutboxState.PENDING and i.attempts == 0 for i in rest)

        # second life: the rate limit again, then the incident is created; the bot stops again
        services = build(db_url, fake_page)
        thread = start_worker(services)
        wait_until("the incident to be created", lambda: writes(fake_page), timeout=30)
        shut_down(services, thread)
        assert len(fake_page.incidents) == 1

        # third life: the rest is delivered
        services = build(db_url, fake_page)
        assert services.outbox.drain(timeout=30)
    finally:
        shut_down(services)

    assert [r.status for r in fake_page.requests[:5]] == [500, 500, 500, 429, 429]
    assert_one_incident_in_order(fake_page)
    assert_paced(fake_page)
    # every attempt of a write that failed was an attempt of the next status in order
    attempted = statuses(writes(fake_page, ok_only=False))
    assert attempted == ["investigating", "identified", "monitoring", "resolved"]
    services = build(db_url, fake_page)
    try:
        items = publish_items(services)
        assert [i.state for i in items] == [OutboxState.DELIVERED] * 4
        assert items[0].attempts == 6 and [i.attempts for i in items[1:]] == [1, 1, 1]
        with Session(services.engine) as s:
            assert s.get(Incident, inc_id).statuspage_id == next(iter(fake_page.incidents))
    finally:
        shut_down(services)


def test_an_update_that_times_out_after_the_page_applied_it_is_applied_once(db_url, fake_page):
    services = build(db_url, fake_page, timeout=1)
    try:
        inc_id = run(services, "incident open Checkout failing sev2 orders").context["inc"].id
        assert services.outbox.drain(timeout=20)
        [incident] = fake_page.incidents.values()

        # the page applies the update, then answers after the client gave up (1 s)
        fake_page.slow_next(2.0, method="PATCH")
        assert submit(services, ALICE, "inc_update", str(inc_id),
                      {"status": "identified", "message": "A bad deploy of the orders API"}) is None
        assert services.outbox.drain(timeout=30)

        updates = list(reversed(incident["incident_updates"]))
        assert [u["status"] for u in updates] == ["investigating", "identified"]  # once, not twice
        assert [r.method for r in writes(fake_page, ok_only=False)] == ["POST", "PATCH"]
        first, update = publish_items(services)
        assert update.state is OutboxState.DELIVERED and update.attempts == 2  # the retry sent nothing
        assert incident["metadata"]["drbot"]["update"] == f"drbot-outbox-{update.id}"
        # the retry read the incident, saw its own marker, and recorded the update as published
        gets = [r for r in fake_page.requests_for("GET") if r.path.endswith(incident["id"])]
        assert len(gets) == 2
        with Session(services.engine) as s:
            published = s.exec(select(TimelineEvent).where(TimelineEvent.incident_id == inc_id,
                                                           TimelineEvent.kind == "statuspage.published")).all()
        assert [json.loads(e.data)["status"] for e in published] == ["investigating", "identified"]

        # the next status change goes out as usual
        assert submit(services, ALICE, "inc_update", str(inc_id),
                      {"status": "resolved", "message": "Error rate normal"}) is None
        assert services.outbox.drain(timeout=20)
        assert [u["status"] for u in reversed(incident["incident_updates"])] == [
            "investigating", "identified", "resolved"]
        assert_paced(fake_page)
    finally:
        shut_down(services)


def test_a_permanent_refusal_is_dead_visible_and_can_be_retried(tmp_path):
    with FakeStatuspage(page_id="pg1", api_key=SP_KEY, strict_components=True) as fake:
        services = build(f"sqlite:///{tmp_path}/drbot.db", fake)  # COMPONENT is not on the page yet
        try:
            run(services, "incident open Checkout failing sev2 orders")
            assert services.outbox.drain(timeout=20)
            [item] = publish_items(services)
            assert item.state is OutboxState.DEAD and item.attempts == 1
            assert "422" in item.last_error and f"Component {COMPONENT} not found" in item.last_error
            assert fake.incidents == {}

            listing = services.renderer.text(run(services, "outbox"))
            line = next(x for x in listing.splitlines() if x.strip().startswith(f"{item.id} "))
            assert "statuspage.publish" in line and "dead" in line and "422" in line
            blocks, _ = services.renderer.blocks(run(services, "outbox"))
            shown = json.dumps(blocks)
            assert f"`{item.id}` statuspage.publish" in shown and "outbox retry ID" in shown

            # someone fixes the page; the item is retried and delivered
            fake.add_component(COMPONENT, "Orders API")
            reply = dispatch(services, ALICE, f"outbox retry {item.id}")
            assert reply.template == "outbox"
            assert [i.id for i in reply.context["items"]] == [item.id]
            assert reply.context["items"][0].state is OutboxState.PENDING
            assert services.outbox.drain(timeout=20)
            [item] = publish_items(services)
            # a retry gives the item a fresh count of attempts: one more, and the page saw exactly two
            assert item.state is OutboxState.DELIVERED and item.attempts == 1
            assert [r.status for r in fake.requests_for("POST", "/incidents")] == [422, 201]
            [incident] = fake.incidents.values()
            assert incident["status"] == "investigating"
            assert fake.components[COMPONENT]["status"] == "partial_outage"
            assert "nothing pending" in services.renderer.text(run(services, "outbox"))

            # only a dead item can be retried
            again = dispatch(services, ALICE, f"outbox retry {item.id}")
            assert again.template == "usage" and "not one that gave up" in json.dumps(again.context, default=str)
        finally:
            shut_down(services)


# -- resolving: the timeline and the postmortem -----------------------------------------------

BUCKET = "drbot-evidence"
ANNOUNCE = "CANNOUNCE"
RESOLVE_CONFIG = SERVICES + """
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 20, jitter: 0}
  evidence:
    kind: s3_archive
    bucket: drbot-evidence
    region: us-east-1
    prefix: ""
    endpoint_url: ${MOTO_URL}
    timeout: 5
archive: {source: evidence}
slack:
  channels: {announcements: CANNOUNCE}
alerts:
  alertmanager_token: am-token
incidents:
  responders: [UALICE, UBOB]
permissions:
  incident_update: [everyone]
"""


def test_resolving_posts_the_timeline_and_uploads_and_archives_the_postmortem(tmp_path, fake_slack,
                                                                              moto_endpoint):  # noqa: F811
    reset_moto(moto_endpoint)
    s3 = make_client("s3", region="us-east-1", timeout=5, endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    loaded = parse_config(RESOLVE_CONFIG, "resolve-test.yaml", {"MOTO_URL": moto_endpoint})
    services = build_services(loaded, db_url=f"sqlite:///{tmp_path}/drbot.db")
    try:
        with running_app(services, fake_slack) as app:
            alert = {"status": "firing",
                     "labels": {"alertname": "OrdersReplicaLagHigh", "service": "orders", "severity": "critical",
                                "region": "us-west-2"},
                     "annotations": {"summary": "orders replica lag 95 s"},
                     "startsAt": "2024-05-01T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                     "generatorURL": "http://prometheus.example:9090/graph", "fingerprint": "aa11bb22cc33dd44"}
            payload = {"version": "4", "groupKey": "{}:{service=\"orders\"}", "status": "firing",
                       "receiver": "drbot", "groupLabels": {"service": "orders"},
                       "commonLabels": alert["labels"], "commonAnnotations": alert["annotations"],
                       "externalURL": "http://alertmanager.example:9093", "alerts": [alert]}
            r = app.sender.http.post(f"{app.url}/alerts/alertmanager", json=payload,
                                     headers={"Authorization": "Bearer am-token"})
            assert r.status_code == 200, r.text
            inc_id = helpers.incident_of_alert(services, "am:aa11bb22cc33dd44")
            assert services.outbox.drain(timeout=30)
            with Session(services.engine) as s:
                channel = s.get(Incident, inc_id).channel_id
            assert channel

            # people work the incident in its channel with slash commands
            r = app.sender.slash_command("incident note Lag started after the 11:55 deploy", channel_id=channel,
                                         response_url=fake_slack.response_url("note"))
            assert r.status_code == 200
            fake_slack.wait_for("response_url", 1)
            r = app.sender.slash_command("incident status resolved Replica caught up", channel_id=channel,
                                         response_url=fake_slack.response_url("resolve"))
            assert r.status_code == 200
            fake_slack.wait_for("response_url", 2)
            assert services.outbox.drain(timeout=30)

            timelines = [c for c in fake_slack.calls("chat.postMessage")
                         if c.params["text"].startswith(f"Timeline of incident #{inc_id}")]
            assert sorted(c.params["channel"] for c in timelines) == sorted([channel, ANNOUNCE])
            for c in timelines:
                shown = json.dumps(c.blocks, ensure_ascii=False)
                assert "alert firing (alertmanager, critical, lag): orders replica lag 95 s" in shown
                assert "note by U_ALICE: Lag started after the 11:55 deploy" in shown
                assert "status investigating → resolved: Replica caught up" in shown

            [complete] = fake_slack.calls("files.completeUploadExternal")
            assert complete.params["channel_id"] == channel
            [upload] = fake_slack.calls("files.getUploadURLExternal")
            assert upload.params["filename"] == f"postmortem-incident-{inc_id}.md"
            [content] = [c.decode() for c in fake_slack.uploads.values()]
            assert content.startswith("# Postmortem draft: orders: orders replica lag 95 s")
            assert "## Impact window" in content
            assert "- Detected: 2024-05-01 12:00:00 UTC" in content
            assert "- Resolved: " in content and "- Resolved: -" not in content
            assert "## Timeline (UTC)" in content
            for line in ("alert firing (alertmanager, critical, lag): orders replica lag 95 s",
                         "note by U_ALICE: Lag started after the 11:55 deploy",
                         "status investigating → resolved: Replica caught up"):
                assert line in content, line

        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"incidents/{inc_id}/")
        keys = [o["Key"] for o in listed.get("Contents", [])]
        assert keys == [f"incidents/{inc_id}/postmortem-incident-{inc_id}.md"]
        archived = s3.get_object(Bucket=BUCKET, Key=keys[0])
        body = archived["Body"].read().decode()
        assert body.startswith("# Postmortem draft") and "## Impact window" in body
        assert "status investigating → resolved: Replica caught up" in body
        assert archived["Metadata"] == {"incident": str(inc_id)}
        with Session(services.engine) as s:
            kinds = [e.kind for e in s.exec(select(TimelineEvent).where(TimelineEvent.incident_id == inc_id))]
            items = s.exec(select(OutboxItem)).all()
        assert "postmortem.archived" in kinds
        assert {i.state for i in items} == {OutboxState.DELIVERED}
    finally:
        services.engine.dispose()
