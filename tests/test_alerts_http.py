"""Alert intake end to end: the real app over HTTP (uvicorn) serving the alert routes,
Alertmanager's v4 webhook payloads, the generic HMAC-signed webhook, CloudWatch alarms
through SNS (signed with a locally generated key and certificate), the outbox worker
delivering to the FakeSlack, and a signed Slack click on the failover suggestion.

Nothing of drbot is mocked: the sandbox only supplies lag and health readings (the
readiness summary in the incident channel); SNS's certificate download is replaced by a
fetch_pem returning the test certificate, and the subscription confirmation by a recorder.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from bot.config import parse_config
from bot.store.incident_tables import Alert, Incident
from bot.store.models import AuditEntry, ChangeRequest, Run, TimelineEvent
from bot.wiring import build_services
from integrations.aws.sns_verify import SnsVerifier, canonical_string
from tests.app_server import running_app
from tests.helpers import rows

AM_TOKEN = "am-token-5b1c"
WEBHOOK_SECRET = "wh-secret-0d9e"
TOPIC = "arn:aws:sns:us-east-1:123456789012:drbot-alerts"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem"
RESPONDERS = ["UALICE", "UBOB"]

CONFIG = f"""
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {{lag: 20, jitter: 0}}
      payments: {{lag: 100, jitter: 0}}
services:
  - name: orders
    tier: critical
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
        - name: Shift traffic
          action: traffic.shift
          timeout: 5s
          verify: {{traffic_in: target, within: 5s, interval: 100ms}}
        - name: Switch the database over
          action: database.switchover
          timeout: 5s
          verify: {{writer_in: target, within: 5s, interval: 100ms}}
  - name: payments
    rpo: 5m
    rto: 30m
    active: us-east-1
    standby: us-west-2
    lag: {{source: sim}}
    health: {{us-east-1: sim, us-west-2: sim}}
alerts:
  alertmanager_token: {AM_TOKEN}
  webhook_secret: {WEBHOOK_SECRET}
  sns_topics: [{TOPIC}]
incidents:
  responders: [{", ".join(RESPONDERS)}]
"""


# -- fixtures and helpers ----------------------------------------------------------------

@pytest.fixture
def alert_services(tmp_path):
    svc = build_services(parse_config(CONFIG, "alerts-test.yaml", {}), db_url=f"sqlite:///{tmp_path}/drbot.db")
    yield svc
    svc.engine.dispose()


@pytest.fixture
def app(alert_services, fake_slack):
    with running_app(alert_services, fake_slack) as running:
        yield running


@pytest.fixture
def http():
    with httpx.Client(timeout=10) as client:
        yield client


def events(services, incident_id: int, kind: str) -> list[TimelineEvent]:
    return rows(services, TimelineEvent, TimelineEvent.incident_id == incident_id, TimelineEvent.kind == kind)


def am_alert(alertname: str, fingerprint: str, *, service: str = "orders", region: str = "us-west-2",
             severity: str = "critical", status: str = "firing", instance: str = "orders-db-replica-1",
             summary: str | None = None) -> dict:
    """One alert of an Alertmanager v4 webhook, as Alertmanager sends it."""
    starts = "2024-05-01T12:00:00.000Z"
    return {
        "status": status,
        "labels": {"alertname": alertname, "service": service, "severity": severity, "region": region,
                   "instance": instance, "job": "mysqld"},
        "annotations": {"summary": summary or f"{alertname} on {instance}",
                        "description": f"{alertname} has been firing for 5 minutes.",
                        "runbook_url": f"https://runbooks.example.com/{alertname}"},
        "startsAt": starts,
        "endsAt": "2024-05-01T12:20:00.000Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": f"http://prometheus.example:9090/graph?g0.expr={alertname}&g0.tab=1",
        "fingerprint": fingerprint,
    }


def am_payload(alerts: list[dict], status: str | None = None) -> dict:
    """The Alertmanager webhook (version 4) around ``alerts``, grouped by service."""
    status = status or ("firing" if any(a["status"] == "firing" for a in alerts) else "resolved")
    common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    common_ann = {k: v for k, v in alerts[0]["annotations"].items()
                  if all(a["annotations"].get(k) == v for a in alerts)}
    service = alerts[0]["labels"]["service"]
    return {
        "version": "4",
        "groupKey": f'{{}}/{{severity="critical"}}:{{service="{service}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "drbot",
        "groupLabels": {"service": service},
        "commonLabels": common,
        "commonAnnotations": common_ann,
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }


def post_am(http: httpx.Client, app, payload: dict, token: str | None = AM_TOKEN) -> httpx.Response:
    headers = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.27.0"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http.post(f"{app.url}/alerts/alertmanager", content=json.dumps(payload), headers=headers)


def processed(services) -> None:
    """Wait until the drain has processed every accepted payload."""
    assert services.inbox.drain(timeout=30), services.inbox.waiting()


def accepted(r: httpx.Response, alerts: int) -> int:
    """The inbox id of an answer that accepted ``alerts`` alerts."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True and body["accepted"] == alerts and isinstance(body["id"], int), body
    return body["id"]


def only_incident(services) -> int:
    [inc] = rows(services, Incident)
    return inc.id


def posted(fake_slack, channel: str | None = None) -> list:
    return [c for c in fake_slack.calls("chat.postMessage") if channel is None or c.params.get("channel") == channel]


def with_button(calls, action_id: str) -> list:
    return [c for c in calls if any(e.get("action_id") == action_id
                                    for b in c.blocks for e in b.get("elements", []))]


LAG_1 = "3b1f6fa0d1c2e4a1"
LAG_2 = "7a9e0c44b2d81f35"


# -- Alertmanager ------------------------------------------------------------------------

def test_alertmanager_firing_opens_incident_channel_timeline_then_resolves(app, alert_services, fake_slack, http):
    services = alert_services
    firing = am_payload([am_alert("OrdersReplicaLagHigh", LAG_1, instance="orders-db-replica-1"),
                         am_alert("OrdersReplicaLagHigh", LAG_2, instance="orders-db-replica-2")])

    first = accepted(post_am(http, app, firing), 2)
    processed(services)
    incident_id = only_incident(services)

    # Alertmanager re-sends the group (repeat_interval, or after a restart): no duplicate
    assert accepted(post_am(http, app, firing), 2) > first
    processed(services)
    assert only_incident(services) == incident_id

    alerts = rows(services, Alert)
    assert len(alerts) == 2
    assert {a.fingerprint for a in alerts} == {f"am:{LAG_1}", f"am:{LAG_2}"}
    for a in alerts:
        assert (a.service, a.region, a.severity, a.signal, a.status) == ("orders", "us-west-2", "critical",
                                                                        "lag", "firing")
        assert a.times_seen == 2 and a.incident_id == incident_id
        assert a.starts_at == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
        assert any(link.startswith("http://prometheus.example:9090/graph") for link in json.loads(a.links))
    [fired] = events(services, incident_id, "alert.firing")  # one for the batch, none for the repeat
    assert json.loads(fired.data)["alerts"] == 2
    assert set(json.loads(fired.data)["fingerprints"]) == {f"am:{LAG_1}", f"am:{LAG_2}"}

    [inc] = rows(services, Incident)
    assert inc.id == incident_id and inc.severity == "sev2" and json.loads(inc.services) == ["orders"]
    assert inc.detected_at == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)

    # the worker creates the incident channel at Slack
    assert services.outbox.drain(timeout=30)
    [create] = fake_slack.calls("conversations.create")
    name = create.params["name"]
    assert re.fullmatch(r"inc-\d{4}-\d{2}-\d{2}-orders", name), name
    assert name == f"inc-{inc.opened_at:%Y-%m-%d}-orders"
    [inc] = rows(services, Incident)
    channel = inc.channel_id
    assert channel and inc.channel_name == name
    [invite] = fake_slack.calls("conversations.invite")
    assert invite.params["channel"] == channel and invite.params["users"].split(",") == RESPONDERS
    in_channel = posted(fake_slack, channel)
    opened = [c for c in in_channel if c.params["text"].startswith(f"Incident #{incident_id}")]
    assert len(opened) == 1
    summary = json.dumps(opened[0].blocks)
    assert "Readiness of the affected services" in summary and "*orders*" in summary
    assert "payments" not in summary  # only the incident's services
    [pin] = fake_slack.calls("pins.add")
    assert pin.params["channel"] == channel
    assert fake_slack.message(channel, pin.params["timestamp"])["text"].startswith(f"Incident #{incident_id}")
    digest = [c for c in in_channel if c is not opened[0]]
    assert len(digest) == 1 and "OrdersReplicaLagHigh" in json.dumps(digest[0].blocks)
    assert events(services, incident_id, "incident.channel")

    # resolved: Alertmanager sends the group again, each alert resolved with endsAt
    resolved = am_payload([am_alert("OrdersReplicaLagHigh", LAG_1, status="resolved",
                                    instance="orders-db-replica-1"),
                           am_alert("OrdersReplicaLagHigh", LAG_2, status="resolved",
                                    instance="orders-db-replica-2")])
    accepted(post_am(http, app, resolved), 2)
    processed(services)
    accepted(post_am(http, app, resolved), 2)  # and again: counted, not recorded twice
    processed(services)
    [ended] = events(services, incident_id, "alert.resolved")
    assert set(json.loads(ended.data)["fingerprints"]) == {f"am:{LAG_1}", f"am:{LAG_2}"}
    assert len(events(services, incident_id, "alert.firing")) == 1
    for a in rows(services, Alert):
        assert a.status == "resolved" and a.ends_at == datetime(2024, 5, 1, 12, 20, tzinfo=timezone.utc)
        assert a.times_seen == 3  # the first resolved changed it; the repeat counted
    assert len(rows(services, Incident)) == 1

    # the digest message in the channel is updated in place, no second channel
    assert services.outbox.drain(timeout=30)
    assert len(fake_slack.calls("conversations.create")) == 1
    [inc] = rows(services, Incident)
    updates = [c for c in fake_slack.calls("chat.update") if c.params["channel"] == channel]
    assert updates and {u.params["ts"] for u in updates} == {inc.alerts_ts}
    assert "resolved" in fake_slack.message(channel, inc.alerts_ts)["text"] + json.dumps(
        fake_slack.message(channel, inc.alerts_ts)["blocks"])


def test_bad_or_missing_token_is_refused_and_nothing_is_stored(app, alert_services, http):
    payload = am_payload([am_alert("OrdersReplicaLagHigh", LAG_1)])
    for token in ("wrong-token", AM_TOKEN + "x", None):
        r = post_am(http, app, payload, token=token)
        assert r.status_code == 401, (token, r.text)
        assert r.json()["ok"] is False
    r = http.post(f"{app.url}/alerts/alertmanager", content=json.dumps(payload),
                  headers={"Authorization": f"Basic {AM_TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 401
    assert rows(alert_services, Alert) == []
    assert rows(alert_services, Incident) == []
    assert alert_services.metrics.registry.get_sample_value(
        "drbot_alerts_rejected_total", {"endpoint": "alertmanager", "reason": "unauthenticated"}) == 4


def test_unknown_service_is_stored_and_reported(app, alert_services, http):
    payload = am_payload([am_alert("InventoryDiskFull", "c0ffee0123456789", service="inventory",
                                   instance="inventory-db-1")])
    accepted(post_am(http, app, payload), 1)
    processed(alert_services)
    [alert] = rows(alert_services, Alert)
    assert alert.service is None and alert.service_hint == "inventory"
    assert alert.summary == "InventoryDiskFull on inventory-db-1"
    assert rows(alert_services, Incident) == []
    [unknown] = rows(alert_services, AuditEntry, AuditEntry.action == "alert.unknown_service")
    assert unknown.target == "inventory"


def test_two_signal_classes_suggest_a_failover_once_and_the_button_only_plans(app, alert_services,
                                                                              fake_slack, http):
    services = alert_services
    accepted(post_am(http, app, am_payload([am_alert("OrdersReplicaLagHigh", LAG_1)])), 1)
    processed(services)
    incident_id = only_incident(services)
    assert services.outbox.drain(timeout=30)
    assert with_button(posted(fake_slack), "plan_failover") == []  # one signal class: no suggestion

    health = am_alert("OrdersEndpointDown", "9d0e8a7b6c5d4e3f", region="us-east-1",
                      instance="orders-api.us-east-1", summary="orders API in us-east-1 is down")
    accepted(post_am(http, app, am_payload([health])), 1)
    processed(services)
    assert only_incident(services) == incident_id
    assert services.outbox.drain(timeout=30)
    [inc] = rows(services, Incident)
    suggestions = with_button(posted(fake_slack, inc.channel_id), "plan_failover")
    assert len(suggestions) == 1
    text = json.dumps(suggestions[0].blocks)
    assert "health" in text and "lag" in text and "orders" in text
    assert inc.failover_suggested
    [suggested] = events(services, incident_id, "failover.suggested")
    assert json.loads(suggested.data)["signals"] == ["health", "lag"]

    # a second lag alert joins the incident, but does not suggest again
    accepted(post_am(http, app, am_payload([am_alert("OrdersReplicaLagHigh", LAG_2,
                                                     instance="orders-db-replica-2")])), 1)
    processed(services)
    assert len(rows(services, Alert, Alert.incident_id == incident_id)) == 3
    assert services.outbox.drain(timeout=30)
    assert len(with_button(posted(fake_slack), "plan_failover")) == 1
    assert len(events(services, incident_id, "failover.suggested")) == 1
    assert len(events(services, incident_id, "alert.firing")) == 3

    # clicking "Plan failover" answers with the dry-run plan, only to the clicker
    message = fake_slack.message(inc.channel_id, _ts_of(fake_slack, inc.channel_id, "plan_failover"))
    r = app.sender.block_action("plan_failover", "orders", user_id="UALICE", channel_id=inc.channel_id,
                                message=message, response_url=fake_slack.response_url("plan"))
    assert r.status_code == 200
    [answer] = fake_slack.wait_for("response_url", timeout=10)
    assert answer.params["_path"] == "/response/plan"
    assert answer.params["response_type"] == "ephemeral"
    assert answer.params.get("replace_original") in (False, "false", None)
    assert "Plan: failover of orders from us-east-1 to us-west-2" in answer.params["text"]
    plan_text = json.dumps(answer.params["blocks"])
    assert "Shift traffic" in plan_text and "nothing was changed" in plan_text

    # nothing was failed over: no request, no run, the estate is where it was
    time.sleep(0.3)
    assert rows(services, ChangeRequest) == [] and rows(services, Run) == []
    estate = services.backends["sim"].estate
    assert estate.active("orders") == "us-east-1" and estate.writer("orders") == "us-east-1"
    assert not [e for e in rows(services, TimelineEvent) if e.kind.startswith(("request.", "run.", "step."))]


def _ts_of(fake_slack, channel: str, action_id: str) -> str:
    """ts of the message in ``channel`` that carries the button ``action_id``."""
    with fake_slack._lock:
        found = [ts for (ch, ts), m in fake_slack.messages.items() if ch == channel
                 and any(e.get("action_id") == action_id for b in m.get("blocks") or []
                         for e in b.get("elements", []))]
    assert len(found) == 1, found
    return found[0]


# -- the generic webhook -----------------------------------------------------------------

def webhook_headers(body: bytes, ts: int | None = None, secret: str = WEBHOOK_SECRET) -> dict:
    ts = int(time.time()) if ts is None else ts
    signature = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Drbot-Timestamp": str(ts), "X-Drbot-Signature": signature}


def test_generic_webhook_checks_the_signature_and_its_age(app, alert_services, http):
    url = f"{app.url}/alerts/webhook"
    body = json.dumps({"service": "orders", "summary": "orders checkout error rate 7%", "severity": "warning",
                       "signal": "slo", "region": "us-east-1", "fingerprint": "checkout-errors"}).encode()

    accepted(http.post(url, content=body, headers=webhook_headers(body)), 1)
    processed(alert_services)
    [alert] = rows(alert_services, Alert)
    assert (alert.fingerprint, alert.source, alert.service, alert.signal, alert.severity) == (
        "wh:checkout-errors", "webhook", "orders", "slo", "warning")
    assert rows(alert_services, Incident) == []  # a warning opens no incident by default

    tampered = body.replace(b"7%", b"70%")
    assert tampered != body
    r = http.post(url, content=tampered, headers=webhook_headers(body))
    assert r.status_code == 401 and "signature" in r.json()["error"].lower()

    stale = int(time.time()) - 6 * 60
    r = http.post(url, content=body, headers=webhook_headers(body, ts=stale))  # correctly signed, too old
    assert r.status_code == 401 and "stale" in r.json()["error"]

    r = http.post(url, content=body, headers=webhook_headers(body, secret="not-the-secret"))
    assert r.status_code == 401

    [alert] = rows(alert_services, Alert)
    assert alert.times_seen == 1 and alert.summary == "orders checkout error rate 7%"


# -- SNS -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sns_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def sns_pem(sns_key):
    now = datetime.now(timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(sns_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .sign(sns_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


class PemFetcher:
    def __init__(self, pem: bytes):
        self.pem, self.calls = pem, []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if url != CERT_URL:
            raise AssertionError(f"fetched an unexpected certificate URL {url}")
        return self.pem


def sns_sign(message: dict, key) -> dict:
    algorithm = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()
    signature = key.sign(canonical_string(message), padding.PKCS1v15(), algorithm)
    return {**message, "Signature": base64.b64encode(signature).decode()}


def cloudwatch_alarm(state: str = "ALARM") -> dict:
    return {
        "AlarmName": "orders-replica-lag",
        "AlarmDescription": "Aurora replica lag of the orders standby above 60 s",
        "AWSAccountId": "123",
        "AlarmConfigurationUpdatedTimestamp": "2024-04-30T09:00:00.000+0000",
        "NewStateValue": state,
        "NewStateReason": "Threshold Crossed: 1 out of the last 1 datapoints [95.0 (01/05/24 11:59:00)] was "
                          "greater than the threshold (60.0) (minimum 1 datapoint for OK -> ALARM transition).",
        "StateChangeTime": "2024-05-01T12:00:00.000+0000",
        "Region": "US East (N. Virginia)",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123:alarm:orders-replica-lag",
        "OldStateValue": "OK",
        "OKActions": [],
        "AlarmActions": [TOPIC],
        "InsufficientDataActions": [],
        "Trigger": {"MetricName": "AuroraReplicaLag", "Namespace": "AWS/RDS", "StatisticType": "Statistic",
                    "Statistic": "MAXIMUM", "Unit": None,
                    "Dimensions": [{"value": "orders-west", "name": "DBClusterIdentifier"}],
                    "Period": 60, "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold",
                    "Threshold": 60.0, "TreatMissingData": "missing", "EvaluateLowSampleCountPercentile": ""},
    }


def sns_notification(alarm: dict) -> dict:
    return {"Type": "Notification", "MessageId": "5a8d1f3e-7b1c-5f0a-9e4d-2c6b8a0f1e3d", "TopicArn": TOPIC,
            "Subject": f'ALARM: "{alarm["AlarmName"]}" in US East (N. Virginia)',
            "Message": json.dumps(alarm), "Timestamp": "2024-05-01T12:00:01.123Z", "SignatureVersion": "1",
            "SigningCertURL": CERT_URL,
            "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC}:1"}


def sns_confirmation() -> dict:
    return {"Type": "SubscriptionConfirmation", "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a",
            "TopicArn": TOPIC,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, "
                       "visit the SubscribeURL included in this message.",
            "SubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}"
                            "&Token=2336412f37fb",
            "Timestamp": "2024-05-01T11:59:00.000Z", "SignatureVersion": "1", "SigningCertURL": CERT_URL}


@pytest.fixture
def sns(app, alert_services, sns_pem):
    """The SNS endpoint with the test certificate and a recording confirm function."""
    fetcher = PemFetcher(sns_pem)
    confirmed: list[str] = []
    alert_services.extras["sns_verifier"] = SnsVerifier(fetch_pem=fetcher)
    alert_services.extras["sns_confirm"] = confirmed.append
    return fetcher, confirmed


def post_sns(http: httpx.Client, app, message: dict) -> httpx.Response:
    """As SNS posts to an HTTP(S) endpoint: JSON sent as text/plain, with its x-amz-sns-* headers."""
    headers = {"Content-Type": "text/plain; charset=UTF-8",
               "x-amz-sns-message-type": message.get("Type", ""),
               "x-amz-sns-topic-arn": message.get("TopicArn", ""),
               "User-Agent": "Amazon Simple Notification Service Agent"}
    return http.post(f"{app.url}/alerts/sns", content=json.dumps(message), headers=headers)


def test_sns_subscription_confirmation_is_answered(app, alert_services, sns, sns_key, http):
    fetcher, confirmed = sns
    message = sns_sign(sns_confirmation(), sns_key)
    r = post_sns(http, app, message)
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "confirmed": TOPIC}
    assert confirmed == [message["SubscribeURL"]]
    assert fetcher.calls == [CERT_URL]
    assert rows(alert_services, Alert) == []


def test_sns_cloudwatch_alarm_is_verified_and_stored(app, alert_services, sns, sns_key, http):
    fetcher, confirmed = sns
    def sns_rejected() -> float:
        return sum(alert_services.metrics.registry.get_sample_value(
            "drbot_alerts_rejected_total", {"endpoint": "sns", "reason": why}) or 0 for why in ("forbidden", "unavailable"))

    accepted(post_sns(http, app, sns_sign(sns_notification(cloudwatch_alarm()), sns_key)), 1)
    processed(alert_services)
    [alert] = rows(alert_services, Alert)
    assert (alert.source, alert.service, alert.region, alert.status, alert.signal, alert.severity) == (
        "sns", "orders", "us-east-1", "firing", "lag", "critical")
    assert alert.fingerprint == "cw:arn:aws:cloudwatch:us-east-1:123:alarm:orders-replica-lag"
    assert alert.summary.startswith("orders-replica-lag: Threshold Crossed")
    assert json.loads(alert.labels)["metric"] == "AuroraReplicaLag"
    assert alert.starts_at == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    [inc] = rows(alert_services, Incident)  # critical: it opens an incident
    assert alert.incident_id == inc.id
    assert sns_rejected() == 0

    # the same notification with the Message altered after signing
    signed = sns_sign(sns_notification(cloudwatch_alarm()), sns_key)
    tampered = {**signed, "Message": json.dumps(cloudwatch_alarm("OK"))}
    r = post_sns(http, app, tampered)
    assert r.status_code == 403 and "signature" in r.json()["error"]
    assert sns_rejected() == 1

    # a certificate outside SNS is refused before anything is fetched
    fetched = len(fetcher.calls)
    evil = sns_sign({**sns_notification(cloudwatch_alarm("OK")), "SigningCertURL": "https://evil.example/cert.pem"},
                    sns_key)
    r = post_sns(http, app, evil)
    assert r.status_code == 403 and "not on an Amazon SNS host" in r.json()["error"]
    assert len(fetcher.calls) == fetched
    assert sns_rejected() == 2

    # a topic drbot does not subscribe to
    other = sns_sign({**sns_notification(cloudwatch_alarm("OK")),
                      "TopicArn": "arn:aws:sns:us-east-1:999999999999:someone-else"}, sns_key)
    r = post_sns(http, app, other)
    assert r.status_code == 403 and "topic" in r.json()["error"]
    assert sns_rejected() == 3

    assert confirmed == []
    processed(alert_services)
    [alert] = rows(alert_services, Alert)  # none of the refused messages changed anything
    assert alert.status == "firing" and alert.times_seen == 1
