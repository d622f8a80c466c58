"""Hostile and careless input at every edge, over real HTTP (the app under uvicorn, Slack
requests signed as Slack signs them, the FakeSlack), on SQLite and PostgreSQL where state is
involved (issue 9, Found 6-9).

Every test checks the same four things: no answer is >= 500; the log has no traceback
(the ``log`` fixture fails the test at teardown otherwise, uvicorn's own logger included);
every bad input is answered with what was wrong; nothing is stored or posted for a
malformed or unauthorised request. ``hypothesis`` then throws random bodies at the
endpoints with the same checks.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace as NS
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import parse_config
from bot.render import Renderer, Reply
from bot.store.incident_tables import Alert, AlertInbox, Incident
from bot.store.models import Approval, AuditEntry, ChangeRequest, RequestKind, RequestState
from bot.wiring import build_services
from commands import router
from tests.app_server import SIGNING_SECRET, running_app
from tests.helpers import rows, wait_until
from tests.slack_client import sign
from transports import limits, webhooks

AM_TOKEN = "am-hostile-7c1d"
WEBHOOK_SECRET = "wh-hostile-2f9a"
ALICE, BOB = "UALICE", "UBOB"
CHANNEL = "C_INC"

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
    lag: {{source: sim}}
    health: {{us-east-1: sim, us-west-2: sim}}
    traffic: {{source: sim}}
    database: {{source: sim}}
    runbooks:
      failover:
        - {{name: switch writer, action: database.switchover}}
        - {{name: shift traffic, action: traffic.shift}}
approvals:
  required_approvals: 1
  approvers: [{BOB}]
  expires: 30m
alerts:
  alertmanager_token: {AM_TOKEN}
  webhook_secret: {WEBHOOK_SECRET}
incidents:
  responders: [{ALICE}, {BOB}]
"""


# -- fixtures ----------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def log(caplog):
    """Everything logged, uvicorn's own logger too; a traceback anywhere fails the test."""
    caplog.set_level(logging.INFO)
    uvicorn = logging.getLogger("uvicorn")
    uvicorn.addHandler(caplog.handler)
    yield caplog
    uvicorn.removeHandler(caplog.handler)
    bad = [f"{r.name}: {r.getMessage()[:300]}" for r in caplog.records
           if r.exc_info or "Traceback" in r.getMessage()]
    assert not bad, "tracebacks in the log:\n" + "\n".join(bad)


def _services(db_url: str):
    return build_services(parse_config(CONFIG, "hostile.yaml", {}), db_url=db_url)


@pytest.fixture
def app(tmp_path, fake_slack):
    """The app on SQLite: for input rejected before any state is read."""
    services = _services(f"sqlite:///{tmp_path}/drbot.db")
    try:
        with running_app(services, fake_slack) as running:
            yield running
    finally:
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()


@pytest.fixture
def any_db_app(db_url, fake_slack):
    """The app on SQLite and on PostgreSQL: for input that reaches the store."""
    services = _services(db_url)
    try:
        with running_app(services, fake_slack) as running:
            yield running
    finally:
        services.runner.executor.shutdown(wait=True)
        services.engine.dispose()


@pytest.fixture
def http():
    with httpx.Client(timeout=30) as client:
        yield client


# -- helpers -----------------------------------------------------------------------------

def refused(r: httpx.Response, status: int, *words: str) -> dict:
    """``r`` is a JSON refusal with ``status`` whose error names each of ``words``."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["ok"] is False and len(body["error"]) < 400, body  # a reason, not an echo of the input
    for word in words:
        assert word.lower() in body["error"].lower(), (word, body["error"])
    return body


def nothing_happened(app, fake) -> None:
    """Nothing stored, nothing posted."""
    services = app.services
    assert rows(services, ChangeRequest) == [] and rows(services, Approval) == []
    assert rows(services, Alert) == [] and rows(services, Incident) == []
    assert rows(services, AuditEntry) == []
    assert [c for c in fake.calls() if c.method not in ("auth.test", "users.info")] == []


def signed_post(app, body: bytes, content_type: str = "application/json", **headers) -> httpx.Response:
    ts = str(int(time.time()))
    sent = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(SIGNING_SECRET, ts, body), **headers}
    return app.sender.http.post(app.sender.url, content=body, headers=sent)


def signed_payload(app, payload, **headers) -> httpx.Response:
    """An interaction as Slack sends it: ``payload=<JSON>`` in a signed form."""
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return signed_post(app, urlencode({"payload": raw}).encode(), "application/x-www-form-urlencoded", **headers)


def click_payload(action_id: str, value: str, user: str, fake, name: str) -> dict:
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user[1:].lower(), "name": user[1:].lower(), "team_id": "T1"},
        "api_app_id": "A_DRBOT", "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": CHANNEL,
                      "is_ephemeral": False},
        "trigger_id": "1.2.abc", "team": {"id": "T1", "domain": "drbot-test"},
        "channel": {"id": CHANNEL, "name": "inc-test"},
        "message": {"type": "message", "ts": "1700000000.000100", "text": "", "blocks": []},
        "response_url": fake.response_url(name),
        "actions": [{"action_id": action_id, "block_id": "b1", "value": value, "type": "button",
                     "text": {"type": "plain_text", "text": "x"}, "action_ts": "1700000001.0"}],
    }


def answer(fake, name: str) -> dict:
    """The one ephemeral answer the app posted to fake.response_url(name)."""
    path = f"/response/{name}"
    found = wait_until(f"an answer at {path}",
                       lambda: [c for c in fake.calls("response_url") if c.params["_path"] == path])
    assert len(found) == 1, found
    return found[0].params


def webhook_headers(body: bytes, ts: str | bytes | None = None) -> dict:
    ts = str(int(time.time())) if ts is None else ts
    ts_bytes = ts if isinstance(ts, bytes) else ts.encode()
    signature = "v0=" + hmac.new(WEBHOOK_SECRET.encode(), b"v0:" + ts_bytes + b":" + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Drbot-Timestamp": ts, "X-Drbot-Signature": signature}


def am_alert(fingerprint: str, **over) -> dict:
    alert = {"status": "firing",
             "labels": {"alertname": "OrdersReplicaLagHigh", "service": "orders", "severity": "critical",
                        "region": "us-west-2", "instance": f"db-{fingerprint}"},
             "annotations": {"summary": f"replica lag high on {fingerprint}"},
             "startsAt": "2024-05-01T12:00:00.000Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "http://prometheus.example:9090/graph", "fingerprint": fingerprint}
    return alert | over


def am_payload(alerts: list) -> dict:
    return {"version": "4", "groupKey": "{}:{service=\"orders\"}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "drbot", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager.example:9093", "alerts": alerts}


def post_am(http, app, payload, token: str = AM_TOKEN) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return http.post(f"{app.url}/alerts/alertmanager", content=body,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = ('{"a":' * 70 + "1" + "}" * 70).encode()  # under Python's recursion limit, over drbot's


# -- /slack/events: unsigned and malformed ----------------------------------------------

MALFORMED = [
    (b"\xff\xfe{}", "application/json", {}, 400, ["UTF-8"]),
    (b"{", "application/json", {}, 400, ["not JSON"]),
    (b"payload=not-json", "application/x-www-form-urlencoded", {}, 400, ["payload", "not JSON"]),
    (b"[1, 2]", "application/json", {}, 400, ["JSON object", "list"]),
    (b'"just a string"', "application/json", {}, 400, ["JSON object"]),
    (DEEP_ARRAY, "application/json", {}, 400, ["nested deeper than 64"]),
    (DEEP_OBJECT, "application/json", {}, 400, ["nested deeper than 64"]),
    (b'{"n": NaN}', "application/json", {}, 400, ["NaN"]),
    (b"", "application/json", {}, 400, ["empty"]),
    (b'{"type": "url_verification", "challenge": "x"}', "application/json", {}, 401, ["missing"]),
    (b'{"type": "url_verification", "challenge": "x"}', "application/json",
     {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}, 400, ["X-Slack-Request-Timestamp"]),
    (b'{"type": "url_verification", "challenge": "x"}', "application/json",
     {"X-Slack-Request-Timestamp": "²".encode(), "X-Slack-Signature": "v0=00"}, 400, ["ASCII digits"]),
    (b'{"type": "url_verification", "challenge": "x"}', "application/json",
     {"X-Slack-Request-Timestamp": "¹²³".encode(), "X-Slack-Signature": "v0=00"}, 400, ["ASCII digits"]),
    (b'{"type": "url_verification", "challenge": "x"}', "application/json",
     {"X-Slack-Request-Timestamp": "1.5", "X-Slack-Signature": "v0=00"}, 400, ["Unix time"]),
    (b'{"type": "url_verification", "challenge": "x"}', "application/json",
     {"X-Slack-Request-Timestamp": "9" * 400, "X-Slack-Signature": "v0=00"}, 400, ["Unix time"]),
    (b'{"type": "url_verification", "challenge": "x"}', "application/json",
     {"X-Slack-Request-Timestamp": "1700000000", "X-Slack-Signature": "v0=" + "0" * 64}, 401, ["5 minutes"]),
]
MALFORMED_IDS = ["not-utf8", "brace", "payload-not-json", "array", "string", "deep-array", "deep-object", "nan",
                 "empty", "unsigned", "ts-abc", "ts-superscript", "ts-superscripts", "ts-float", "ts-400-digits",
                 "ts-stale"]


def test_unsigned_or_malformed_slack_requests_are_4xx_saying_why(app, fake_slack):
    for case, (body, content_type, headers, status, words) in zip(MALFORMED_IDS, MALFORMED):
        r = app.sender.http.post(app.sender.url, content=body, headers={"Content-Type": content_type, **headers})
        assert r.status_code == status, (case, r.text)
        refused(r, status, *words)
    nothing_happened(app, fake_slack)


def test_a_request_signed_with_another_secret_is_401(app, fake_slack):
    body = json.dumps({"type": "url_verification", "challenge": "c"}).encode()
    ts = str(int(time.time()))
    r = app.sender.http.post(app.sender.url, content=body, headers={
        "Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign("not-the-secret", ts, body)})
    refused(r, 401, "signature")
    r = signed_post(app, body)  # the same, signed right: answered
    assert r.status_code == 200 and r.json() == {"challenge": "c"}


def test_bodies_over_each_endpoints_limit_are_413(app, http, fake_slack):
    too_big = b"x" * (limits.SLACK_BODY + 1)
    refused(app.sender.http.post(app.sender.url, content=too_big, headers={"Content-Type": "application/json"}),
            413, "1 MiB")

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(20):
            yield b"y" * 65536
    refused(app.sender.http.post(app.sender.url, content=chunks(), headers={"Content-Type": "application/json"}),
            413, "1 MiB")
    refused(post_am(http, app, b" " * (limits.ALERTS_BODY + 1)), 413, "16 MiB")
    refused(post_am(http, app, b"{}", token="wrong"), 401, "bearer")  # the token is checked before the body
    nothing_happened(app, fake_slack)


# -- /slack/events: signed, but not Slack's shapes ---------------------------------------

def test_signed_payloads_of_the_wrong_shape_are_400_naming_the_field(app, fake_slack):
    base = click_payload("cr_approve", "1", BOB, fake_slack, "x")
    cases = [
        ("[1, 2]", ["payload", "JSON object", "list"]),
        ('"approve"', ["payload", "JSON object", "str"]),
        (base | {"actions": []}, ["payload.actions", "at least 1"]),
        ({k: v for k, v in base.items() if k != "user"}, ["payload.user"]),
        (base | {"user": {"id": 42}}, ["payload.user"]),
        (base | {"user": "U1 U2"}, ["payload.user"]),
        (base | {"actions": [{"value": "1"}]}, ["payload.actions.0.action_id"]),
        (base | {"actions": [{"action_id": "cr_approve", "value": "1" * 5000}]}, ["payload.actions.0.value", "2000"]),
        (base | {"actions": "cr_approve"}, ["payload.actions"]),
        (base | {"channel": 7}, ["payload.channel"]),
        (base | {"response_url": ["http://x"]}, ["payload.response_url"]),
        (base | {"authorizations": 5}, ["payload.authorizations"]),
        ({"user": {"id": BOB}}, ["payload", "type"]),
        ({"type": "view_submission", "user": {"id": BOB}, "view": {"callback_id": "inc_update",
                                                                 "state": {"values": {"b": {"status": {"value": 3}}}}}},
         ["payload.view.state.values.b.status.value"]),
    ]
    for payload, words in cases:
        refused(signed_payload(app, payload), 400, *words)
    event = {"type": "event_callback", "team_id": "T1", "event": {"type": "message", "text": 5, "channel": "C1"}}
    refused(signed_post(app, json.dumps(event).encode()), 400, "event.text")
    refused(signed_post(app, json.dumps(event | {"event": ["message"]}).encode()), 400, "event")
    command = {"command": "/dr", "text": "status", "user_name": "alice"}
    refused(signed_post(app, urlencode(command).encode(), "application/x-www-form-urlencoded"), 400, "user_id")
    nothing_happened(app, fake_slack)


def test_events_and_interactions_drbot_does_not_handle_are_acknowledged_and_ignored(app, fake_slack):
    event = {"type": "event_callback", "team_id": "T1", "event": {"type": "member_joined_channel", "user": ALICE}}
    r = signed_post(app, json.dumps(event).encode())
    assert r.status_code == 200 and r.json()["ok"] is True
    r = signed_payload(app, {"type": "view_closed", "user": {"id": ALICE}, "view": {"callback_id": "x"}})
    assert r.status_code == 200 and r.json()["ok"] is True
    nothing_happened(app, fake_slack)


def test_a_slash_command_mentioning_payload_is_still_a_command(app, fake_slack):
    """Bolt's own parser reads a form whose text contains "payload" as empty; drbot hands
    Bolt the form it parsed."""
    r = app.sender.slash_command("help payload", user_id=ALICE, response_url=fake_slack.response_url("help"))
    assert r.status_code == 200
    assert "Usage: /dr" in answer(fake_slack, "help")["text"]


# -- clicks and commands with values that are not what they claim -------------------------

def _ask_failover(app, fake) -> ChangeRequest:
    r = app.sender.slash_command("failover orders to us-west-2 region degraded", user_id=ALICE,
                                 channel_id=CHANNEL, response_url=fake.response_url("ask"))
    assert r.status_code == 200
    assert "posted for approval" in answer(fake, "ask")["text"]
    return wait_until("the request's message", lambda: (q := rows(app.services, ChangeRequest)) and q[0].message_ts
                      and q[0])


BAD_NUMBERS = ["²", "١", "¹²³", "1" * 11, "99999999999", "2147483648", "-1", " 1", "1.0", "0x1", "", "1\x00"]


def test_clicks_whose_value_is_not_a_request_number_are_answered_and_change_nothing(any_db_app, fake_slack):
    app = any_db_app
    req = _ask_failover(app, fake_slack)
    assert req.id == 1  # so that '١' (Arabic-Indic one, int('١') == 1) would have approved it
    for i, value in enumerate(BAD_NUMBERS + ["1" * 2000]):
        for action in ("cr_approve", "run_resume", "sp_publish"):
            name = f"v{i}-{action}"
            r = signed_payload(app, click_payload(action, value, BOB, fake_slack, name))
            assert r.status_code == 200, (value, r.text)
            said = answer(fake_slack, name)
            assert said["response_type"] == "ephemeral"
            assert "carries no request number" in said["text"], (value, said["text"])
    req_now = rows(app.services, ChangeRequest)[0]
    assert req_now.state is RequestState.PENDING and rows(app.services, Approval) == []


def test_a_click_without_a_channel_or_a_response_url_is_not_an_error(any_db_app, fake_slack, log):
    app = any_db_app
    _ask_failover(app, fake_slack)
    payload = click_payload("cr_approve", "١", BOB, fake_slack, "nochan")
    del payload["channel"]
    r = signed_payload(app, payload)
    assert r.status_code == 200
    assert "carries no request number" in answer(fake_slack, "nochan")["text"]
    payload = click_payload("cr_approve", "²", BOB, fake_slack, "nourl")
    del payload["response_url"]
    r = signed_payload(app, payload)
    assert r.status_code == 200
    wait_until("the click is logged as unanswerable",
               lambda: any("could not answer" in r.getMessage() for r in log.records))
    assert rows(app.services, Approval) == []


def test_a_form_with_a_bad_id_or_a_control_character_is_refused(any_db_app, fake_slack):
    app = any_db_app
    values = {"b": {"status": {"type": "static_select", "selected_option": {"value": "identified"}}},
              "m": {"message": {"type": "plain_text_input", "value": "fixed\x00"}}}
    r = app.sender.view_submission("inc_update", values, user_id=ALICE, private_metadata="1")
    assert r.status_code == 200 and r.json()["response_action"] == "errors"
    assert "U+0000" in r.json()["errors"]["message"]
    values["m"]["message"]["value"] = "fixed"
    for metadata in ("²", "١", "9" * 40):
        r = app.sender.view_submission("inc_update", values, user_id=ALICE, private_metadata=metadata)
        assert r.status_code == 200
    when = {"b": {"when": {"type": "datetimepicker", "selected_date_time": 10 ** 15}},
            "r": {"reason": {"type": "plain_text_input", "value": "holiday"}}}
    r = app.sender.view_submission("drill_postpone", when, user_id=ALICE, private_metadata="1")
    assert r.status_code == 200 and r.json()["response_action"] == "errors" and "when" in r.json()["errors"]
    # the submissions with a bad id are told so by DM; nothing else comes of any of them
    dms = fake_slack.wait_for("chat.postMessage", 3)
    assert all(c.params["channel"] == ALICE and "is not known" in c.params["text"] for c in dms), dms
    assert rows(app.services, Incident) == [] and rows(app.services, ChangeRequest) == []
    time.sleep(0.3)
    assert len(fake_slack.calls("chat.postMessage")) == 3


def test_nul_in_a_command_is_refused_before_the_database(any_db_app, fake_slack):
    app = any_db_app
    for i, text in enumerate(["failover orders to us-west-2 region\x00 down", "incident open db\x00 on fire sev1",
                              "cancel 1\x00", "status orders\x1b[2J"]):
        r = app.sender.slash_command(text, user_id=ALICE, channel_id=CHANNEL,
                                     response_url=fake_slack.response_url(f"nul{i}"))
        assert r.status_code == 200
        said = answer(fake_slack, f"nul{i}")
        assert said["response_type"] == "ephemeral"
        assert "control character" in said["text"] and "U+00" in said["text"], said["text"]
        assert "SQL" not in said["text"] and "INSERT" not in said["text"]
    assert rows(app.services, ChangeRequest) == [] and rows(app.services, Incident) == []


def test_numbers_in_commands_are_ascii_and_in_range(any_db_app, fake_slack):
    texts = ["cancel ²", "cancel ١", "cancel 99999999999", "cancel #" + "9" * 5000, "outbox retry ²",
             "outbox retry 99999999999"]
    for i, text in enumerate(texts):
        r = any_db_app.sender.slash_command(text, user_id=ALICE, response_url=fake_slack.response_url(f"n{i}"))
        assert r.status_code == 200
        said = answer(fake_slack, f"n{i}")
        assert "request number" in said["text"] or "retries one" in said["text"], (text, said["text"])


def test_an_internal_error_shows_a_reference_never_the_exception(app, fake_slack, monkeypatch, log):
    secret_sql = "DataError: (psycopg.DataError) PostgreSQL text fields cannot contain NUL [SQL: INSERT INTO x]"

    def boom(_inv):
        raise RuntimeError(secret_sql)
    status = router._BY_NAME["status"]
    monkeypatch.setitem(router._BY_NAME, "status", type(status)(**{**status.__dict__, "run": boom}))
    r = app.sender.slash_command("status", user_id=ALICE, response_url=fake_slack.response_url("boom"))
    assert r.status_code == 200
    said = answer(fake_slack, "boom")
    assert "SQL" not in said["text"] and "DataError" not in said["text"] and "RuntimeError" not in said["text"]
    [failure] = [r for r in log.records if r.exc_info]
    ref = failure.getMessage().split("[")[1].split("]")[0]
    assert ref in said["text"] and "Something went wrong inside drbot" in said["text"]
    log.records.remove(failure)  # the one expected traceback: an internal error, with its reference


# -- alert webhooks ------------------------------------------------------------------------

def test_webhook_timestamps_must_be_ascii_digits(app, http, fake_slack):
    body = json.dumps({"service": "orders", "summary": "checkout errors"}).encode()
    for ts in ["²", "¹²³", "١٢٣", "abc", "1.5", "9" * 400, "", "-1", "0x65"]:
        r = http.post(f"{app.url}/alerts/webhook", content=body, headers=webhook_headers(body, ts.encode()))
        refused(r, 401, "X-Drbot-Timestamp")
    nothing_happened(app, fake_slack)


WRONG_TYPES = [
    ({"labels": ["service", "orders"]}, ["alerts[0].labels", "object"]),
    ({"annotations": ["summary"]}, ["alerts[0].annotations", "object"]),
    ({"fingerprint": {"a": 1}}, ["alerts[0].fingerprint", "text"]),
    ({"fingerprint": 12345}, ["alerts[0].fingerprint", "text"]),
    ({"fingerprint": "f" * 201}, ["alerts[0].fingerprint", "200"]),
    ({"labels": {"service": "orders", "severity": 3}}, ["alerts[0].labels.severity", "text"]),
    ({"annotations": {"summary": None}}, ["alerts[0].annotations.summary", "text"]),
    ({"status": "exploded"}, ["alerts[0].status", "firing"]),
    ({"generatorURL": 5}, ["alerts[0].generatorURL", "text"]),
    ({"labels": {"k" * 5000: "v"}}, ["alerts[0].labels.kkk", "1000"]),
]


def test_authenticated_alertmanager_alerts_of_the_wrong_types_are_400_naming_the_field(any_db_app, http, fake_slack):
    for change, words in WRONG_TYPES:
        payload = am_payload([am_alert("bbbb2222") | change, am_alert("aaaa1111")])
        refused(post_am(http, any_db_app, payload), 400, *words)
    nothing_happened(any_db_app, fake_slack)


@pytest.mark.parametrize("payload, words", [
    (b"\xff", ["UTF-8"]), (b"{", ["not JSON"]), (DEEP_ARRAY, ["nested"]), (DEEP_OBJECT, ["nested"]),
    (b"[]", ["version 4"]), (b'{"version": "4", "alerts": {}}', ["alerts", "list"]),
    (b'{"version": "4", "alerts": [7]}', ["alerts[0]", "object"]), (b'{"version": 5, "alerts": []}', ["version 4"]),
])
def test_malformed_alertmanager_bodies_are_400(app, http, fake_slack, payload, words):
    refused(post_am(http, app, payload), 400, *words)
    nothing_happened(app, fake_slack)


@pytest.mark.parametrize("payload, words", [
    ([{"summary": "x"}], ["JSON object"]), ({"summary": 5}, ["summary", "text"]), ({"summary": "  "}, ["summary"]),
    ({"summary": "x", "labels": []}, ["labels", "object"]), ({"alerts": [{"summary": "x", "links": "http://"}]},
                                                            ["alerts[0].links", "list"]),
    ({"summary": "x", "service": ["orders"]}, ["service", "text"]),
])
def test_generic_webhook_alerts_of_the_wrong_types_are_400(app, http, fake_slack, payload, words):
    body = json.dumps(payload).encode()
    refused(http.post(f"{app.url}/alerts/webhook", content=body, headers=webhook_headers(body)), 400, *words)
    nothing_happened(app, fake_slack)


def test_nul_and_broken_surrogates_in_alerts_are_cleaned_not_a_database_error(any_db_app, http):
    app = any_db_app
    alert = am_alert("cccc3333", annotations={"summary": "lag\x00 high \ud800 on db"},
                     labels={"alertname": "Lag\x00", "service": "orders", "severity": "critical", "n\x00": "v\x00"})
    r = post_am(http, app, am_payload([alert]))
    assert r.status_code == 200, r.text
    assert app.services.inbox.drain(timeout=30)
    [stored] = rows(app.services, Alert)
    assert stored.summary == "lag high \ufffd on db" and "\x00" not in stored.labels


def test_more_alerts_than_the_cap_are_413(app, http, fake_slack, monkeypatch):
    monkeypatch.setattr(webhooks, "MAX_ALERTS", 5)
    r = post_am(http, app, am_payload([am_alert(f"f{i:04d}") for i in range(6)]))
    refused(r, 413, "6 alerts", "at most 5", "max_alerts")
    nothing_happened(app, fake_slack)


def test_a_large_alert_batch_is_accepted_at_once_and_processed_in_parts_in_order(any_db_app, http, monkeypatch):
    app = any_db_app
    monkeypatch.setattr(app.services.inbox, "batch", 40)  # the mechanism, with fewer alerts to process
    r = post_am(http, app, am_payload([am_alert(f"fp{i:05d}") for i in range(120)]))
    assert r.status_code == 200 and r.json()["accepted"] == 120, r.text
    # behind a payload still in parts, a small one waits too: its 'resolved' cannot overtake
    resolved = post_am(http, app, am_payload([am_alert("fp00007", status="resolved",
                                                       endsAt="2024-05-01T12:20:00.000Z")]))
    assert resolved.status_code == 200, resolved.text
    assert app.services.inbox.drain(timeout=60)
    assert len(rows(app.services, Alert)) == 120
    assert rows(app.services, Alert, Alert.fingerprint == "am:fp00007")[0].status == "resolved"
    assert len(rows(app.services, Incident)) == 1


def test_ten_thousand_alerts_are_answered_once_stored_not_processed(app, http):
    app.services.inbox.stop()  # only the answer is looked at here; processing is tested above
    r = post_am(http, app, am_payload([am_alert(f"fp{i:05d}") for i in range(10_000)]))
    assert r.status_code == 200 and r.json()["accepted"] == 10_000, r.text
    [stored] = rows(app.services, AlertInbox)
    assert stored.alerts == 10_000 and stored.done == 0 and json.loads(stored.body)["alerts"][9_999]["fingerprint"]
    assert rows(app.services, Alert) == []


# -- logs ----------------------------------------------------------------------------------

def test_rejected_bodies_are_not_logged(app, log, fake_slack):
    log.set_level(logging.DEBUG)
    marker = b"SECRET-BODY-MARKER-"
    big = b'{"type": "event_callback", "x": "' + marker * (1_000_000 // len(marker)) + b'"}'
    before = sum(len(r.getMessage()) for r in log.records)
    for i in range(5):
        r = app.sender.http.post(app.sender.url, content=big, headers={"Content-Type": "application/json"})
        refused(r, 401)
        ts = str(int(time.time()))
        r = app.sender.http.post(app.sender.url, content=big, headers={
            "Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign("wrong-secret", ts, big)})
        refused(r, 401)
    grown = sum(len(r.getMessage()) for r in log.records) - before
    assert grown < 20_000, f"the log grew by {grown} characters for 10 rejected 1 MB bodies"
    assert not any("SECRET-BODY-MARKER" in r.getMessage() for r in log.records)
    assert any("rejected" in r.getMessage() and "bytes" in r.getMessage() for r in log.records)
    assert SIGNING_SECRET not in "".join(r.getMessage() for r in log.records)


def test_bolts_body_logging_is_cut(app, log):
    """Defence in depth: should Bolt itself log a body, drbot's filter cuts it."""
    bolt_logger = logging.getLogger("drbot.slack")
    bolt_logger.info("Invalid request signature detected (signature: v0=1, timestamp: 1, body: %s)",
                     "SECRET-BODY-MARKER" * 100)
    [record] = [r for r in log.records if r.name == "drbot.slack"]
    assert "SECRET-BODY-MARKER" not in record.getMessage() and "not logged" in record.getMessage()


# -- confirm dialogs -------------------------------------------------------------------------

def _buttons(blocks: list[dict]) -> dict[str, dict]:
    return {e["action_id"]: e for b in blocks for e in b.get("elements", []) if e.get("type") == "button"}


def _assert_dialog(button: dict) -> None:
    confirm = button["confirm"]
    assert len(confirm["title"]["text"]) <= 100 and len(confirm["text"]["text"]) <= 300
    assert len(confirm["confirm"]["text"]) <= 30 and len(confirm["deny"]["text"]) <= 30
    assert all(confirm[k]["type"] == "plain_text" for k in ("title", "text", "confirm", "deny"))


def test_approve_on_a_posted_request_asks_for_confirmation(app, fake_slack):
    req = _ask_failover(app, fake_slack)
    buttons = _buttons(fake_slack.message(CHANNEL, req.message_ts)["blocks"])
    _assert_dialog(buttons["cr_approve"])
    assert "us-west-2" in buttons["cr_approve"]["confirm"]["text"]["text"]
    assert "confirm" not in buttons["cr_deny"]  # deciding against a change needs no second thought


def test_buttons_that_change_production_carry_a_confirm_dialog():
    renderer = Renderer("UTC")
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    req = NS(id=7, kind=RequestKind.FAILOVER, service="orders" * 40, from_region="us-east-1", to_region="us-west-2",
             scenario=None, state=RequestState.RUNNING)
    line = NS(state="failed", name="shift", seconds=1.0, error="boom", summary="", attempt=1, action="x", region="y")
    for state, expected in ((RequestState.FAILED, {"run_rollback", "run_abort"}),
                            (RequestState.INTERRUPTED, {"run_resume", "run_abort"})):
        run = NS(state=state, measured_rto_s=None, error="", started_at=now, ended_at=None)
        blocks, _ = renderer.blocks(Reply("run_progress", {"req": req, "run": run, "lines": [line], "svc": None}))
        buttons = _buttons(blocks)
        assert set(buttons) == expected
        for button in buttons.values():
            _assert_dialog(button)
    blocks, _ = renderer.blocks(Reply("run_interrupted", {"req": req, "running": []}))
    for button in _buttons(blocks).values():
        _assert_dialog(button)
    inc = NS(id=3, title="db down", statuspage_id=None)
    blocks, _ = renderer.blocks(Reply("statuspage_preview", {"inc": inc, "status": "identified", "body": "x",
                                                             "item": 9}))
    _assert_dialog(_buttons(blocks)["sp_publish"])
    assert "confirm" not in _buttons(blocks)["sp_skip"]
    drill = NS(id=8, kind=RequestKind.DRILL, service="orders", from_region="us-east-1", to_region="us-west-2",
               scenario="az-loss", state=RequestState.PENDING, required_approvals=1, state_reason="")
    occ = NS(id=2, starts_at=now + timedelta(days=1), planned_for=now + timedelta(days=1),
             state=NS(value="planned"))
    blocks, _ = renderer.blocks(Reply("drill_announcement", {
        "req": drill, "occ": occ, "approvals": [], "lines": [], "preflight": None, "schedule": None,
        "policy": NS(approvers=[BOB]), "now": now, "run": None, "svc": None}))
    _assert_dialog(_buttons(blocks)["cr_approve"])


# -- fuzzing -------------------------------------------------------------------------------

FUZZ = settings(max_examples=40, deadline=None, database=None,  # no .hypothesis/ in the work tree
                suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "user", "actions", "channel", "event", "view", "team", "command", "text",
                         "value", "action_id", "id", "payload", "authorizations", "response_url", "state",
                         "values", "container", "message", "item", "subtype", "callback_id"]) | st.text(max_size=8),
        inner, max_size=5),
    max_leaves=20)
slack_like = st.fixed_dictionaries({"type": st.sampled_from(["block_actions", "view_submission", "event_callback",
                                                              "url_verification", "shortcut"])},
                                   optional={"user": json_values, "actions": json_values, "channel": json_values,
                                             "event": json_values, "view": json_values, "team": json_values,
                                             "response_url": json_values, "container": json_values})


@FUZZ
@given(body=st.binary(max_size=300))
def test_fuzz_unsigned_bytes_never_5xx(app, body):
    r = app.sender.http.post(app.sender.url, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text


@FUZZ
@given(payload=slack_like | json_values, as_form=st.booleans())
def test_fuzz_signed_slack_payloads_never_5xx(app, payload, as_form):
    if isinstance(payload, dict) and payload.get("type") == "block_actions":
        payload.setdefault("response_url", "http://127.0.0.1:9/nowhere")
    r = signed_payload(app, payload) if as_form else signed_post(app, json.dumps(payload).encode())
    assert r.status_code < 500, (payload, r.text)
    if r.status_code >= 400:
        assert r.json()["error"]


@FUZZ
@given(alerts=st.lists(st.fixed_dictionaries({}, optional={
    "status": json_values | st.sampled_from(["firing", "resolved"]), "labels": json_values,
    "annotations": json_values, "fingerprint": json_values | st.text(max_size=30), "startsAt": json_values,
    "endsAt": json_values, "generatorURL": json_values}), max_size=4))
def test_fuzz_authenticated_alerts_never_5xx(app, http, alerts):
    r = post_am(http, app, am_payload(alerts))
    assert r.status_code in (200, 202, 400), r.text
