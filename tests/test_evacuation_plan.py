"""Region evacuation, first part: service dependencies checked at load time, ordered into
waves, and `/dr plan evacuate REGION` (over real HTTP, signed like Slack signs): every
service active in the region in its wave, its pre-flight read live, what would be refused
and why, what is blocked behind it, the RTO its past runs measured. Changes nothing."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import Session

from bot.config import ConfigError, parse_config
from bot.config.dependencies import waves
from bot.store.models import ChangeRequest, RequestKind, RequestState, Run
from bot.wiring import build_services
from commands.router import dispatch
from tests.app_server import running_app
from tests.helpers import ALICE, rows

ESTATE = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 10.0, profiles: {ledger: {lag: 900, jitter: 0}}}
approvals: {required_approvals: 1, approvers: [UBOB]}
services:
%s
"""
EVACUATION = "evacuation: {parallelism: 2, exclude: [batch]}\n"


def _service(name: str, active: str = "us-east-1", depends_on: tuple[str, ...] = (), runbook: bool = True,
             action: str = "traffic.shift") -> str:
    standby = "us-west-2" if active == "us-east-1" else "us-east-1"
    text = f"""  - name: {name}
    rpo: 5m
    rto: 15m
    active: {active}
    standby: {standby}
    lag: {{source: sim}}
    health: {{{active}: sim, {standby}: sim}}
    traffic: {{source: sim}}
    database: {{source: sim}}
    depends_on: [{', '.join(depends_on)}]
"""
    if runbook:
        text += f"""    runbooks:
      failover:
        - {{name: move, action: {action}}}
"""
    return text


SERVICES = "".join([
    _service("orders-db", action="database.switchover"),
    _service("ledger", action="database.promote"),  # lag 900 s against an RPO of 5 min: pre-flight fails
    _service("orders-api", depends_on=("orders-db",)),
    _service("reports", depends_on=("ledger",)),  # behind a refused service: blocked
    _service("edge", depends_on=("orders-api",)),
    _service("batch"),  # excluded: stays
    _service("search", active="us-west-2"),  # elsewhere: not moved
    _service("archive", runbook=False),  # nothing to run: refused
])


# -- config ------------------------------------------------------------------------------


def test_unknown_and_self_dependencies_are_errors_with_their_line():
    text = ESTATE % (_service("orders-db", depends_on=("orders-dbb",)) + _service("edge", depends_on=("edge",)))
    with pytest.raises(ConfigError) as e:
        parse_config(text, "evac.yaml", {})
    found = {(p.path, p.message) for p in e.value.problems}
    assert ("services[0].depends_on[0]", "no service named 'orders-dbb' (did you mean 'orders-db'?)") in found, found
    assert ("services[1].depends_on[0]", "edge cannot depend on itself") in found, found
    lines = {p.path: p.line for p in e.value.problems}
    assert text.splitlines()[lines["services[0].depends_on[0]"] - 1].strip().startswith("depends_on: [orders-dbb]")


def test_a_dependency_cycle_is_one_error_naming_the_cycle():
    text = ESTATE % (_service("a", depends_on=("c",)) + _service("b", depends_on=("a",))
                     + _service("c", depends_on=("b",)) + _service("d", depends_on=("a",)))
    with pytest.raises(ConfigError) as e:
        parse_config(text, "evac.yaml", {})
    messages = [p.message for p in e.value.problems]
    assert len(messages) == 1, messages
    assert messages[0].startswith("dependency cycle: a -> c -> b -> a;"), messages


def test_unknown_excluded_service_is_an_error():
    text = ESTATE % _service("batch") + EVACUATION.replace("[batch]", "[bach]")
    with pytest.raises(ConfigError) as e:
        parse_config(text, "evac.yaml", {})
    assert [(p.path, p.message) for p in e.value.problems] == [
        ("evacuation.exclude[0]", "no service named 'bach' (did you mean 'batch'?)")]


def test_waves_put_each_service_after_what_it_depends_on_even_through_services_that_stay():
    config = parse_config(ESTATE % SERVICES + EVACUATION, "evac.yaml", {}).config
    assert waves(config, ["orders-db", "ledger", "orders-api", "reports", "edge"]) == [
        ["orders-db", "ledger"], ["orders-api", "reports"], ["edge"]]
    # orders-api stays (already moved, say): edge still waits for orders-db behind it
    assert waves(config, ["orders-db", "edge"]) == [["orders-db"], ["edge"]]


# -- /dr plan evacuate ---------------------------------------------------------------------


@pytest.fixture
def estate(tmp_path):
    services = build_services(parse_config(ESTATE % SERVICES + EVACUATION, "evac.yaml", {}),
                              db_url=f"sqlite:///{tmp_path}/e.db")
    now = services.clock()
    with Session(services.engine) as s:  # orders-db moved twice before: a drill in 120 s, a failover in 180 s
        for kind, state, rto, passed, days in ((RequestKind.DRILL, RequestState.SUCCEEDED, 120.0, True, 3),
                                               (RequestKind.FAILOVER, RequestState.SUCCEEDED, 180.0, None, 9),
                                               (RequestKind.DRILL, RequestState.FAILED, 999.0, False, 1)):
            at = now - timedelta(days=days)
            req = ChangeRequest(kind=kind, service="orders-db", requester="UALICE", state=state, expires_at=at)
            s.add(req)
            s.flush()
            s.add(Run(request_id=req.id, kind=kind, service="orders-db", state=state, approved_at=at,
                      started_at=at, ended_at=at, measured_rto_s=rto, passed=passed))
        s.commit()
    yield services
    services.engine.dispose()


def test_plan_evacuate_over_http_shows_waves_refusals_blocks_and_past_rtos(estate, fake_slack):
    opened = dispatch(estate, ALICE, "failover edge the edge is flapping")  # an open change of edge
    assert opened.template == "request_created", opened
    before = len(rows(estate, ChangeRequest))
    with running_app(estate, fake_slack) as app:
        r = app.sender.slash_command("plan evacuate us-east-1", response_url=fake_slack.response_url("evac"))
        assert r.status_code == 200
        (reply,) = fake_slack.wait_for("response_url", 1, timeout=15)
    body = reply.blocks
    text = json.dumps(body, ensure_ascii=False)
    assert "Plan · evacuate us-east-1" in text
    sections = [b["text"]["text"] for b in body if b["type"] == "section"]
    waves_seen = [e["text"] for b in body if b["type"] == "context" for e in b["elements"] if e["text"].startswith("*Wave")]
    assert waves_seen == ["*Wave 1* · 3 services", "*Wave 2* · 2 services", "*Wave 3* · 1 service"], waves_seen

    def section(service: str) -> str:
        (found,) = [t for t in sections if t.startswith(f"*✓ {service} (") or t.startswith(f"*✗ {service} (")]
        return found

    assert section("orders-db").startswith("*✓ orders-db (medium) · us-east-1 → us-west-2 · 1 step*")
    assert "past runs took 2m 30s (median of 2)" in section("orders-db")  # the failed drill does not count
    assert "REFUSED: its pre-flight fails (1 check)" in section("ledger")
    assert "lag 15m against an RPO of 5m: past the RPO" in section("ledger")
    assert "BLOCKED: depends on ledger, which would not move" in section("reports")
    assert "REFUSED: no failover runbook" in section("archive")
    assert "after orders-api" in section("edge") and "is open for it: one change at a time" in section("edge")
    assert "never measured" in section("edge")
    assert "batch" not in "".join(sections) and "Staying in us-east-1 (evacuation.exclude): batch" in text
    assert "search" not in text and "1 service active in other regions not moved" in text
    assert "4 of 6 would not move now: ledger, archive, reports, edge" in text
    assert len(rows(estate, ChangeRequest)) == before  # a dry run changes nothing


def test_plan_evacuate_errors_say_what_to_type(estate):
    assert "say which region to evacuate" in str(dispatch(estate, ALICE, "plan evacuate").context)
    wrong = dispatch(estate, ALICE, "plan evacuate us-east")
    assert wrong.template == "usage" and "'us-east' is not a region (did you mean 'us-east-1'?)" in str(wrong.context)
    extra = dispatch(estate, ALICE, "plan evacuate us-east-1 now")
    assert "unexpected words after the region: now" in str(extra.context)
    empty = estate.renderer.text(dispatch(estate, ALICE, "plan evacuate us-west-2"))
    assert "1 service to move from us-west-2 in 1 wave" in empty and "search" in empty
