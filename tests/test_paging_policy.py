"""Paging policy and backends without the HTTP front: severity changes (the lead's
``/dr incident severity`` calls ``queue_pages(..., "severity")`` in its transaction), a
page without an incident, a 429 retried on the services' clock, severities that do not
page, the backends' dry runs and checks, and config mistakes located and explained."""
from __future__ import annotations

from datetime import timezone

import pytest

from bot.actor import Actor
from bot.config import ConfigError, parse_config
from bot.events import PageSend
from bot.paging import queue_pages
from bot.store import session_scope
from bot.store.incident_tables import Incident, OutboxItem, OutboxState
from commands.router import dispatch
from integrations.base import Page
from integrations.pager.opsgenie import Opsgenie, OpsgenieOptions
from integrations.pager.pagerduty import PagerDuty, PagerDutyOptions
from tests.helpers import rows
from tests.paging_support import (  # noqa: F401 (fixtures)
    ALICE, OG_CONFIG, OG_KEY, PD_CONFIG, PD_DEFAULT, PD_PAYMENTS, Clock, build, delivered, env, og, pd, timeline,
)

def test_dr_page_outside_an_incident_sends_a_page_of_its_own(tmp_path, pd):
    services = build(PD_CONFIG, f"sqlite:///{tmp_path}/drbot.db", env(pd=pd), inline_runs=True)
    reply = dispatch(services, Actor("UALICE", "alice", "shell", "C_RANDOM"), "page payments card auth failing")
    assert reply.template == "page_queued" and reply.context["incident_id"] is None, reply.context
    delivered(services)
    [alert] = pd.alerts
    assert alert.routing_key == PD_PAYMENTS and alert.dedup_key.startswith("drbot-page-")
    assert alert.summary == "drbot page for payments: card auth failing"
    services.engine.dispose()


# -- retries: 429 with Retry-After, and giving up --------------------------------------------------

def test_a_429_is_retried_after_its_retry_after_on_the_services_clock(tmp_path, pd):
    clock = Clock()
    services = build(PD_CONFIG, f"sqlite:///{tmp_path}/drbot.db", env(pd=pd), clock=clock)
    pd.faults.fail(429, retry_after=30)
    reply = dispatch(services, ALICE, "incident open Orders checkout failing sev1 orders")
    assert reply.template == "incident_opened_ack", reply.context
    services.outbox.run_once()
    [refused] = pd.calls("POST", "/v2/enqueue")
    assert refused.status == 429
    [item] = rows(services, OutboxItem, OutboxItem.kind == PageSend.KIND)
    assert item.state is OutboxState.PENDING and "retry after 30 s" in item.last_error
    wait = (item.next_attempt_at.replace(tzinfo=timezone.utc) - clock()).total_seconds()
    assert 25 < wait <= 30, wait  # the pager's Retry-After, not the 2 s backoff

    services.outbox.run_once()  # not due yet: nothing is sent
    assert len(pd.calls("POST", "/v2/enqueue")) == 1
    clock.advance(31)
    delivered(services)
    [alert] = pd.alerts
    assert alert.severity == "critical" and alert.triggers == 1  # sev1
    services.engine.dispose()


def test_opsgenie_raises_the_priority_of_the_same_alert_when_the_severity_is_raised(tmp_path, og):
    services = build(OG_CONFIG, f"sqlite:///{tmp_path}/drbot.db", env(og=og), inline_runs=True)
    dispatch(services, ALICE, "incident open Checkout errors sev2 orders")
    delivered(services)
    [alert] = og.alerts
    assert (alert.priority, alert.count) == ("P2", 1)
    with session_scope(services.engine) as s:  # what /dr incident severity sev1 does
        row = s.get(Incident, alert_incident(alert))
        row.severity = "sev1"
        assert queue_pages(services, s, row, "severity") == 1
    delivered(services)
    assert og.alerts == [alert] and (alert.priority, alert.count) == ("P1", 2)  # one alert, now P1
    [put] = og.calls("PUT")
    assert put.path == f"/v2/alerts/{alert.alias}/priority" and put.json == {"priority": "P1"}
    services.engine.dispose()


def alert_incident(alert) -> int:
    return int(alert.alias.rsplit("-", 1)[1])


def test_severities_that_do_not_page_page_nobody(tmp_path, pd):
    services = build(PD_CONFIG, f"sqlite:///{tmp_path}/drbot.db", env(pd=pd), inline_runs=True)
    dispatch(services, ALICE, "incident open Slow search sev3 orders")
    delivered(services)
    assert pd.requests == [] and rows(services, OutboxItem, OutboxItem.kind == PageSend.KIND) == []
    [inc] = rows(services, Incident)
    assert inc.severity == "sev3" and not timeline(services, inc.id, "page.sent")
    services.engine.dispose()


def test_raising_the_severity_pages_then_re_triggers_the_same_alert(tmp_path, pd):
    """What ``/dr incident severity`` does (bot.incidents, the lead's): the new severity in
    the transaction with ``queue_pages(..., "severity")``."""
    clock = Clock()
    services = build(PD_CONFIG, f"sqlite:///{tmp_path}/drbot.db", env(pd=pd), inline_runs=True, clock=clock)
    dispatch(services, ALICE, "incident open Search slow sev3 orders")
    delivered(services)
    assert pd.requests == []  # sev3 does not page
    [inc] = rows(services, Incident)

    def raise_to(severity: str) -> int:
        clock.advance(1)
        with session_scope(services.engine) as s:
            row = s.get(Incident, inc.id)
            row.severity = severity
            queued = queue_pages(services, s, row, "severity")
            assert queue_pages(services, s, row, "severity") == 0  # the same change twice: one page
        delivered(services)
        return queued

    assert raise_to("sev2") == 1
    [alert] = pd.alerts
    assert (alert.dedup_key, alert.severity, alert.triggers) == (f"drbot-incident-{inc.id}", "error", 1)
    assert raise_to("sev1") == 1
    assert pd.alerts == [alert] and (alert.severity, alert.triggers) == ("critical", 2)  # one alert, re-triggered
    assert raise_to("sev4") == 0  # lowered out of the paging severities: the page stays open
    assert alert.status == "triggered"
    assert [e.text.endswith(f"({sev})") for e, sev in zip(timeline(services, inc.id, "page.sent"),
                                                           ("sev2", "sev1"))] == [True, True]
    with pytest.raises(ValueError):
        with session_scope(services.engine) as s:
            queue_pages(services, s, s.get(Incident, inc.id), "escalated")
    services.engine.dispose()


def test_incident_severity_sev1_re_triggers_the_page_of_the_incident(tmp_path, pd):
    """The same through the command people type (bot.incident_command.set_severity)."""
    services = build(PD_CONFIG, f"sqlite:///{tmp_path}/drbot.db", env(pd=pd), inline_runs=True)
    dispatch(services, ALICE, "incident open Checkout errors sev2 orders")
    delivered(services)
    [inc] = rows(services, Incident)
    [alert] = pd.alerts
    in_channel = Actor(ALICE.id, ALICE.name, "shell", inc.channel_id)
    reply = dispatch(services, in_channel, "incident severity sev1 card payments failing everywhere")
    assert reply.template not in ("usage", "refused", "internal_error"), (reply.template, reply.context)
    delivered(services)
    assert pd.alerts == [alert] and (alert.severity, alert.triggers) == ("critical", 2)
    services.engine.dispose()


# -- the backends on their own: dry runs, check(), errors -------------------------------------------

def test_backends_dry_run_send_nothing_and_check_says_what_it_proves(pd, og):
    pager = PagerDuty("pd", PagerDutyOptions(routing_key=PD_DEFAULT, events_url=pd.url))
    page = Page(dedup_key="drbot-incident-9", summary="orders down", severity="sev1", service="orders")
    done = pager.trigger(page, dry_run=True)
    assert done.dry_run and "would send trigger" in done.message and pd.requests == []
    assert "no read call" in pager.check().message and pager.check().ok
    genie = Opsgenie("og", OpsgenieOptions(api_key=OG_KEY, api_url=og.url))
    assert genie.resolve(page, dry_run=True).dry_run and og.requests == []
    assert genie.check().ok and "accepts the API key" in genie.check().message
    bad = Opsgenie("og", OpsgenieOptions(api_key="wrong", api_url=og.url)).check()
    assert not bad.ok and "refused the credentials" in bad.message
    og.faults.fail(422, body={"message": "Request body is not processable. Please check the errors.",
                              "errors": {"message": "Message can not be empty."}})
    with pytest.raises(Exception) as raised:
        genie.trigger(page)
    assert "Message can not be empty" in str(raised.value) and not raised.value.transient
    pager.close()
    genie.close()


# -- config ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, where, says", [
    ("  source: pdd\n", "paging.source", "no source named 'pdd' (did you mean 'pd'?)"),
    ("  source: sim\n", "paging.source", "cannot page"),
    ("  source: pd\n  targets:\n    dba: {routing_key: short}\n", "paging.targets.dba.routing_key",
     "32 letters and digits"),
    ("  source: pd\n  targets:\n    dba: {service: ordrs}\n", "paging.targets.dba.service",
     "no service named 'ordrs' (did you mean 'orders'?)"),
    ("  source: pd\n  targets:\n    dba: {description: nobody}\n", "paging.targets.dba", "says nowhere to page"),
    ("  source: pd\n  targets:\n    dba: {responders: [{type: team, name: dba}]}\n", "paging.targets.dba.responders",
     "responders are for Opsgenie"),
])
def test_config_mistakes_are_located_and_say_how_to_fix(change, where, says):
    text = PD_CONFIG.split("paging:\n")[0] + "paging:\n" + change
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "paging.yaml", env())
    assert any(p.path == where and says in p.message for p in raised.value.problems), raised.value.render()


def test_routing_keys_must_name_services():
    text = PD_CONFIG.replace("      payments: ${PD_PAYMENTS}", "      paymnts: ${PD_PAYMENTS}")
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "paging.yaml", env())
    assert "sources.pd.routing_keys.paymnts: no service named 'paymnts' (did you mean 'payments'?)" in \
        raised.value.render()
