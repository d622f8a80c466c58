"""Statuspage backend against a real local HTTP server (tests/fakes/statuspage_api.py)."""
from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import httpx
import pydantic
import pytest

from integrations.base import STATUS, ErrorKind, IntegrationError
from integrations.statuspage import PublishedIncident, RateLimited, Statuspage
from tests.fakes.statuspage_api import fake_statuspage  # noqa: F401

ORDERS, PAYMENTS = "cmp_orders", "cmp_payments"


def backend(fake, **opts) -> Statuspage:
    options = {"page_id": fake.page_id, "api_key": fake.api_key, "base_url": fake.url,
               "timeout": 2.0, **opts}
    return Statuspage("public-status", Statuspage.Options.model_validate(options))


@pytest.fixture
def fake(fake_statuspage):  # noqa: F811
    fake_statuspage.add_component(ORDERS, "Orders API")
    fake_statuspage.add_component(PAYMENTS, "Payments")
    return fake_statuspage


def open_incident(sp, key="inc-1", **kw):
    args = {"name": "Elevated errors in us-east-1", "status": "investigating",
            "body": "We are investigating.", "components": {ORDERS: "partial_outage"}, **kw}
    return sp.create_incident(key, **args)


def test_declares_kind_capability_and_hides_the_key(fake):
    sp = backend(fake)
    assert (Statuspage.kind, Statuspage.capabilities) == ("statuspage", frozenset({STATUS}))
    assert "test-key" not in repr(sp.options)
    with pytest.raises(pydantic.ValidationError):
        Statuspage.Options.model_validate({"page_id": "p", "api_key": "k", "colour": "red"})
    with pytest.raises(pydantic.ValidationError):
        Statuspage.Options.model_validate({"page_id": "p", "api_key": "k", "base_url": "ftp://x"})


def test_create_update_resolve_with_component_statuses(fake):
    sp = backend(fake)
    created = open_incident(sp, impact="major")
    assert isinstance(created, PublishedIncident)
    assert (created.status, created.name, created.key) == (
        "investigating", "Elevated errors in us-east-1", "inc-1")
    assert created.shortlink and created.shortlink.startswith("https://stspg.io/")
    assert created.components == {ORDERS: "partial_outage"}
    assert created.impact == "major"

    [post] = fake.requests_for("POST")
    assert post.path == "/v1/pages/pg1/incidents"
    sent = post.json["incident"]
    assert sent == {"name": "Elevated errors in us-east-1", "status": "investigating",
                    "body": "We are investigating.", "component_ids": [ORDERS],
                    "components": {ORDERS: "partial_outage"}, "impact_override": "major",
                    "metadata": {"drbot": {"key": "inc-1"}}, "deliver_notifications": True}

    updated = sp.update_incident(created.id, "identified", "Failing over to us-west-2.",
                                 {ORDERS: "major_outage", PAYMENTS: "degraded_performance"})
    assert updated.id == created.id and updated.status == "identified"
    assert updated.components == {ORDERS: "major_outage", PAYMENTS: "degraded_performance"}
    [patch] = fake.requests_for("PATCH")
    assert patch.path == f"/v1/pages/pg1/incidents/{created.id}"

    resolved = sp.resolve_incident(created.id, "Recovered in us-west-2.", [ORDERS, PAYMENTS])
    assert resolved.status == "resolved"
    assert resolved.components == {ORDERS: "operational", PAYMENTS: "operational"}
    stored = fake.incidents[created.id]
    assert [u["status"] for u in stored["incident_updates"]] == [
        "resolved", "identified", "investigating"]
    assert stored["incident_updates"][0]["body"] == "Recovered in us-west-2."
    assert fake.components[ORDERS]["status"] == "operational"


def test_every_request_carries_the_oauth_header(fake):
    sp = backend(fake)
    created = open_incident(sp)
    sp.update_incident(created.id, "monitoring", "Watching.", {})
    sp.find_incident("nothing")
    sp.check()
    assert len(fake.requests) >= 6
    assert {r.headers.get("authorization") for r in fake.requests} == {"OAuth test-key"}


def test_create_is_idempotent_by_key(fake):
    sp = backend(fake)
    first = open_incident(sp)
    second = open_incident(sp, name="Another name", body="Another body")
    assert second == first
    assert len(fake.incidents) == 1
    assert len(fake.requests_for("POST")) == 1
    other = open_incident(sp, key="inc-2")
    assert other.id != first.id and len(fake.incidents) == 2


def test_find_sees_resolved_incidents_in_the_recent_list(fake):
    sp = backend(fake)
    created = open_incident(sp)
    sp.resolve_incident(created.id, "Fixed.", [ORDERS])
    found = sp.find_incident("inc-1")
    assert found is not None and (found.id, found.status) == (created.id, "resolved")
    assert open_incident(sp).id == created.id  # a late retry does not reopen it
    assert sp.find_incident("never-created") is None
    paths = [r.path for r in fake.requests_for("GET")][-2:]
    assert paths == ["/v1/pages/pg1/incidents/unresolved", "/v1/pages/pg1/incidents"]


def test_retry_after_a_timeout_finds_the_incident_the_server_created(fake):
    sp = backend(fake, timeout=0.3)
    fake.slow_next(1.0, method="POST")  # the server creates it, then answers too late
    with pytest.raises(IntegrationError) as caught:
        sp.create_incident("inc-timeout", "DB failover", "identified", "Switching.",
                           {ORDERS: "major_outage"})
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert "within 0.3 s" in str(caught.value) and "may have been made" in str(caught.value)
    assert len(fake.incidents) == 1  # it was created although the client gave up

    retried = sp.create_incident("inc-timeout", "DB failover", "identified", "Switching.",
                                 {ORDERS: "major_outage"})
    assert len(fake.incidents) == 1
    assert retried.id == next(iter(fake.incidents))
    assert len(fake.requests_for("POST")) == 1


def test_delay_holds_every_answer(fake):
    sp = backend(fake, timeout=0.2)
    fake.delay = 0.6
    with pytest.raises(IntegrationError) as caught:
        sp.find_incident("k")
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert "the change may have been made" not in str(caught.value)  # a GET changes nothing
    fake.delay = 0.0
    assert sp.find_incident("k") is None


@pytest.mark.parametrize("status", [429, 420])
def test_rate_limited_carries_retry_after(fake, status):
    sp = backend(fake)
    fake.fail_next(status, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        open_incident(sp)
    error = caught.value
    assert isinstance(error, IntegrationError)
    assert error.kind is ErrorKind.TRANSIENT and error.transient
    assert error.retry_after == 7.0
    assert f"HTTP {status}" in str(error) and "retry after 7 s" in str(error)
    assert fake.incidents == {}


def test_rate_limited_without_retry_after(fake):
    fake.fail_next(429)
    with pytest.raises(RateLimited) as caught:
        backend(fake).find_incident("k")
    assert caught.value.retry_after is None


def test_server_error_is_transient_and_changes_nothing(fake):
    sp = backend(fake)
    fake.fail_next(500, times=2)
    for _ in range(2):
        with pytest.raises(IntegrationError) as caught:
            open_incident(sp)
        assert caught.value.kind is ErrorKind.TRANSIENT
        assert not isinstance(caught.value, RateLimited)
        assert "HTTP 500" in str(caught.value)
    assert open_incident(sp).status == "investigating"  # no retry loop inside: 3rd call works
    assert len(fake.incidents) == 1


def test_wrong_key_is_not_permitted(fake):
    sp = Statuspage("public-status", Statuspage.Options.model_validate(
        {"page_id": "pg1", "api_key": "wrong", "base_url": fake.url}))
    with pytest.raises(IntegrationError) as caught:
        open_incident(sp)
    assert caught.value.kind is ErrorKind.NOT_PERMITTED
    assert "Could not authenticate" in str(caught.value) and "api_key" in str(caught.value)
    assert "wrong" not in str(caught.value)


def test_other_4xx_is_permanent_with_the_api_message(fake):
    fake.strict_components = True
    with pytest.raises(IntegrationError) as caught:
        open_incident(backend(fake), components={"cmp_unknown": "major_outage"})
    assert caught.value.kind is ErrorKind.PERMANENT
    message = str(caught.value)
    assert "HTTP 422" in message and "Component cmp_unknown not found" in message
    with pytest.raises(IntegrationError) as caught:
        backend(fake).update_incident("inc_missing", "identified", "x", {})
    assert caught.value.kind is ErrorKind.PERMANENT and "HTTP 404" in str(caught.value)


@pytest.mark.parametrize("call", [
    lambda sp: open_incident(sp, status="on_fire"),
    lambda sp: open_incident(sp, status="scheduled"),
    lambda sp: open_incident(sp, components={ORDERS: "down"}),
    lambda sp: open_incident(sp, impact="catastrophic"),
    lambda sp: open_incident(sp, key=""),
    lambda sp: open_incident(sp, name=""),
    lambda sp: sp.update_incident("x", "fixed", "b", {}),
    lambda sp: sp.update_incident("x", "resolved", "b", {ORDERS: "broken"}),
], ids=["status", "maintenance-status", "component", "impact", "key", "name", "update",
        "update-component"])
def test_invalid_values_are_rejected_without_a_request(fake, call):
    with pytest.raises(IntegrationError) as caught:
        call(backend(fake))
    assert caught.value.kind is ErrorKind.PERMANENT
    assert fake.requests == []


def test_invalid_status_message_lists_the_valid_ones(fake):
    with pytest.raises(IntegrationError, match="'on_fire' is not a valid Statuspage incident "
                                               "status; use one of: investigating, identified"):
        open_incident(backend(fake), status="on_fire")


def test_scheduled_maintenance(fake):
    sp = backend(fake)
    start = datetime(2030, 5, 1, 2, 0, tzinfo=timezone.utc)
    end = start + timedelta(hours=1)
    made = sp.create_maintenance("drill-42", "DR drill: orders", "Planned failover drill.",
                                 start, end, [ORDERS])
    assert (made.status, made.key) == ("scheduled", "drill-42")
    assert made.scheduled_for == start.isoformat()
    sent = fake.requests_for("POST")[0].json["incident"]
    assert sent["status"] == "scheduled" and sent["component_ids"] == [ORDERS]
    assert (sent["scheduled_for"], sent["scheduled_until"]) == (
        "2030-05-01T02:00:00+00:00", "2030-05-01T03:00:00+00:00")
    assert sent["scheduled_remind_prior"] is True
    assert sent["scheduled_auto_in_progress"] is True and sent["scheduled_auto_completed"] is True
    assert sent["metadata"] == {"drbot": {"key": "drill-42"}}

    again = sp.create_maintenance("drill-42", "DR drill: orders", "Planned failover drill.",
                                  start, end, [ORDERS])
    assert again.id == made.id and len(fake.incidents) == 1
    started = sp.update_incident(made.id, "in_progress", "Drill started.",
                                 {ORDERS: "under_maintenance"})
    assert started.status == "in_progress"


def test_an_update_that_timed_out_after_applying_is_not_applied_again(fake):
    sp = backend(fake, timeout=0.3)
    created = open_incident(sp)
    fake.incidents[created.id]["metadata"]["other"] = {"team": "sre"}  # someone else's metadata
    fake.slow_next(1.0, method="PATCH")  # the page applies the update, then answers too late
    with pytest.raises(IntegrationError) as caught:
        sp.update_incident(created.id, "identified", "Failing over.", {ORDERS: "major_outage"},
                           marker="drbot-outbox-7")
    assert caught.value.kind is ErrorKind.TRANSIENT and "may have been made" in str(caught.value)
    stored = fake.incidents[created.id]
    assert [u["status"] for u in stored["incident_updates"]] == ["identified", "investigating"]

    fake.clear_requests()
    retried = sp.update_incident(created.id, "identified", "Failing over.", {ORDERS: "major_outage"},
                                 marker="drbot-outbox-7")
    assert (retried.id, retried.status, retried.update) == (created.id, "identified", "drbot-outbox-7")
    assert [(r.method, r.path) for r in fake.requests] == [("GET", f"/v1/pages/pg1/incidents/{created.id}")]
    assert [u["status"] for u in stored["incident_updates"]] == ["identified", "investigating"]  # once
    # the marker rode along with the whole metadata: the key and others' entries are kept
    assert stored["metadata"] == {"drbot": {"key": "inc-1", "update": "drbot-outbox-7"},
                                  "other": {"team": "sre"}}

    # the next update (another marker) is applied, once, even when asked twice
    for _ in range(2):
        sp.resolve_incident(created.id, "Recovered.", [ORDERS], marker="drbot-outbox-8")
    assert [u["status"] for u in stored["incident_updates"]] == ["resolved", "identified", "investigating"]
    assert len(fake.requests_for("PATCH")) == 1
    # without a marker an update is sent as before (no read first)
    fake.clear_requests()
    sp.update_incident(created.id, "resolved", "Postmortem to follow.", {})
    assert [r.method for r in fake.requests] == ["PATCH"]


def test_a_maintenance_is_rescheduled_and_cancelled_once_each(fake):
    sp = backend(fake)
    start = datetime(2030, 5, 1, 2, 0, tzinfo=timezone.utc)
    made = sp.create_maintenance("drill-42", "DR drill: orders", "Planned failover drill.",
                                 start, start + timedelta(hours=1), [ORDERS])
    later = start + timedelta(days=2)
    for _ in range(2):  # a retry of the same move changes nothing more
        moved = sp.reschedule_maintenance(made.id, later, later + timedelta(hours=2),
                                          "Rescheduled to 3 May.", marker="m-1")
    assert (moved.status, moved.scheduled_for, moved.scheduled_until) == (
        "scheduled", later.isoformat(), (later + timedelta(hours=2)).isoformat())
    [patch] = fake.requests_for("PATCH")
    assert patch.json["incident"]["scheduled_for"] == "2030-05-03T02:00:00+00:00"
    stored = fake.incidents[made.id]
    assert [(u["status"], u["body"]) for u in stored["incident_updates"]] == [
        ("scheduled", "Rescheduled to 3 May."), ("scheduled", "Planned failover drill.")]

    for _ in range(2):
        cancelled = sp.cancel_maintenance(made.id, "Cancelled: the drill will not take place.", marker="m-2")
    assert cancelled.status == "completed" and len(fake.requests_for("PATCH")) == 2
    sent = fake.requests_for("PATCH")[-1].json["incident"]
    assert sent["status"] == "completed" and "components" not in sent and "component_ids" not in sent
    assert not any(sent[k] for k in ("scheduled_auto_in_progress", "scheduled_auto_completed",
                                     "auto_transition_to_maintenance_state",
                                     "auto_transition_to_operational_state"))
    assert [u["status"] for u in stored["incident_updates"]] == ["completed", "scheduled", "scheduled"]
    assert fake.components[ORDERS]["status"] == "operational"
    with pytest.raises(IntegrationError):
        sp.reschedule_maintenance(made.id, later, later, "x")  # an empty window is refused unsent
    assert len(fake.requests_for("PATCH")) == 2


@pytest.mark.parametrize("start, end", [
    (datetime(2030, 5, 1, 2), datetime(2030, 5, 1, 3)),  # naive
    (datetime(2030, 5, 1, 3, tzinfo=timezone.utc), datetime(2030, 5, 1, 2, tzinfo=timezone.utc)),
])
def test_maintenance_window_must_be_aware_and_ordered(fake, start, end):
    with pytest.raises(IntegrationError) as caught:
        backend(fake).create_maintenance("m", "n", "b", start, end, [ORDERS])
    assert caught.value.kind is ErrorKind.PERMANENT
    assert fake.requests == []


def test_connection_refused_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sp = Statuspage("s", Statuspage.Options.model_validate(
        {"page_id": "p", "api_key": "k", "base_url": url, "timeout": 1}))
    with pytest.raises(IntegrationError) as caught:
        sp.find_incident("k")
    assert caught.value.kind is ErrorKind.TRANSIENT and "cannot connect" in str(caught.value)


def test_injected_client_is_used_and_not_closed(fake):
    with httpx.Client(headers={"X-Test": "injected"}) as client:
        sp = Statuspage("s", backend(fake).options, client=client)
        assert sp.find_incident("k") is None
        sp.close()
        assert not client.is_closed
    assert fake.requests[-1].headers["x-test"] == "injected"


def test_check_names_the_page(fake):
    result = backend(fake, components={"orders": ORDERS}).check()
    assert result.ok is True
    assert "Example Status" in result.message and "pg1" in result.message


def test_check_reports_missing_components_and_failures_without_raising(fake):
    result = backend(fake, components={"orders": ORDERS, "search": "cmp_search"}).check()
    assert result.ok is False and "search -> cmp_search" in result.message
    result = backend(fake, page_id="other").check()
    assert result.ok is False and "HTTP 404" in result.message
    fake.fail_next(503)
    result = backend(fake).check()
    assert result.ok is False and "HTTP 503" in result.message
    result = Statuspage("s", Statuspage.Options.model_validate(
        {"page_id": "pg1", "api_key": "nope", "base_url": fake.url})).check()
    assert result.ok is False and "refused" in result.message


def test_fake_records_requests_with_time_and_status(fake):
    fake.fail_next(429, retry_after=1)
    with pytest.raises(RateLimited):
        backend(fake).find_incident("k")
    backend(fake).find_incident("k")
    statuses = [r.status for r in fake.requests]
    assert statuses == [429, 200, 200]
    times = [r.at for r in fake.requests]
    assert times == sorted(times)
