"""A ramp's ``verify`` with an HTTP check (``http: {source, url, expect...}``) through an
``http`` source, against a real local HTTP server (tests/fakes/flags_api.py): the run
variables filled into the URL, a failing answer that stops the ramp mid-way, the config
checks of the check's source, and what ``/dr plan`` says."""
from __future__ import annotations

import pytest

from bot import ramp
from bot.config import ConfigError, parse_config
from integrations.base import IntegrationError
from tests.fakes.flags_api import FakeFlags
from tests.step_support import FakeTime, a_request, config_text, plan_text, services_for

SOURCES = """
smoke:
  kind: http
  base_url: ${SMOKE_URL}
  headers: {Authorization: "Bearer ${SMOKE_TOKEN}"}
  timeout: 2
"""
STEPS = """
- name: Ramp traffic to the target
  action: traffic.shift
  timeout: 5m
  ramp:
    stages: [5, 50, 100]
    hold: 1m
    interval: 30s
    verify:
      healthy: target
      http: {source: smoke, url: "/smoke/{service}-{to_region}", expect: 'checks[0].state == "passing"'}
"""


@pytest.fixture
def fake():
    with FakeFlags() as f:
        yield f


@pytest.fixture
def sv(fake, tmp_path):
    services = services_for(SOURCES, STEPS, tmp_path, {"SMOKE_URL": fake.url, "SMOKE_TOKEN": "s3cret"})
    yield services
    services.engine.dispose()


def the_step(sv):
    return sv.config.service("orders").runbooks.failover[0]


def test_the_http_check_is_read_through_each_hold_with_the_run_variables_filled_in(sv, fake):
    clock = FakeTime()
    result = ramp.run(sv, sv.config.service("orders"), a_request(), the_step(sv), "us-west-2", sleep=clock.sleep,
                      clock=clock)
    assert result.details["after"] == {"us-east-1": 0.0, "us-west-2": 100.0}
    calls = fake.calls("GET")
    assert len(calls) == 6  # 2 holds of 1m, read at 0s, 30s and 60s
    assert {c.path for c in calls} == {"/smoke/orders-us-west-2"}
    assert all(c.headers.get("authorization") == "Bearer s3cret" for c in calls)


def test_a_failing_http_check_stops_the_ramp_with_what_it_found(sv, fake):
    clock, notes = FakeTime(), {}

    def sleep(seconds):
        clock.sleep(seconds)
        if sv.backends["sim"].estate.weights("orders")["us-west-2"] == 50:
            fake.smoke_failing = True  # 30 s into the 50 % stage

    with pytest.raises(IntegrationError) as e:
        ramp.run(sv, sv.config.service("orders"), a_request(), the_step(sv), "us-west-2", notes=notes,
                 sleep=sleep, clock=clock)
    assert str(e.value).startswith("verify failed at stage 2 of 3 (50% to us-west-2) after 30s held: "
                                   f"GET {fake.url}/smoke/orders-us-west-2: HTTP 200 but "), str(e.value)
    assert "The traffic stays split (us-east-1=50%, us-west-2=50%)" in str(e.value)
    assert list(notes["verify_failing"]) == ["http"]
    assert sv.backends["sim"].estate.weights("orders") == {"us-east-1": 50.0, "us-west-2": 50.0}

    fake.smoke_failing, fake.smoke_status = False, 503  # a 5xx is not retried in a read: the verify is read again
    with pytest.raises(IntegrationError) as e:
        ramp.run(sv, sv.config.service("orders"), a_request(), the_step(sv), "us-west-2", sleep=clock.sleep,
                 clock=clock)
    assert f"after 0s held: GET {fake.url}/smoke/orders-us-west-2: HTTP 503 after 1 tries." in str(e.value)


def test_plan_names_the_http_check(sv):
    text = plan_text(sv)
    assert ('reading us-west-2 healthy and GET /smoke/{service}-{to_region} (smoke) answers 200 with '
            'checks[0].state == "passing"') in text, text


@pytest.mark.parametrize("check, message", [
    ("{source: nowhere, url: /x}", "no source named 'nowhere'"),
    ("{source: smoke, url: '/x/{zone}'}", "{zone} is not a run variable"),
    ("{source: smoke, url: /x, method: POST}", "'POST' is not one of"),
])
def test_a_bad_http_check_is_a_config_error_with_its_path(check, message):
    steps = STEPS.replace(
        """http: {source: smoke, url: "/smoke/{service}-{to_region}", expect: 'checks[0].state == "passing"'}""",
        f"http: {check}")
    with pytest.raises(ConfigError) as e:
        parse_config(config_text(SOURCES, steps), "drbot.yaml", {"SMOKE_URL": "http://127.0.0.1:9", "SMOKE_TOKEN": "t"})
    assert message in str(e.value), str(e.value)
    assert "services[0].runbooks.failover[0].ramp.verify.http" in str(e.value), str(e.value)


def test_an_http_check_alone_is_a_verify_but_only_in_a_ramp():
    only = STEPS.replace("      healthy: target\n", "")
    loaded = parse_config(config_text(SOURCES, only), "drbot.yaml", {"SMOKE_URL": "http://127.0.0.1:9",
                                                                     "SMOKE_TOKEN": "t"})
    assert loaded.config.service("orders").runbooks.failover[0].ramp.verify.http.source == "smoke"
    step_verify = STEPS + "  verify: {http: {source: smoke, url: /x}}\n"
    with pytest.raises(ConfigError, match=r"failover\[0\]\.verify\.http: unknown key"):
        parse_config(config_text(SOURCES, step_verify), "drbot.yaml", {"SMOKE_URL": "http://127.0.0.1:9",
                                                                       "SMOKE_TOKEN": "t"})
