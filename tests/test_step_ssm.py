"""``aws_ssm`` runbook steps: SSM Automation through botocore's Stubber (moto does not
implement StartAutomationExecution), which checks every parameter against the real AWS API
model: start with a client token, follow to a final status, outputs and a link, a failed
execution, the time budget and a stopped run stop the execution, rollback, ``/dr plan``."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from botocore.stub import ANY, Stubber

from bot.config import ConfigError, parse_config
from bot.steps import StepFailed, execute_step
from integrations.aws.session import make_client
from integrations.aws.ssm import _TOKENS
from tests.step_support import FakeTime, a_request, config_text, plan_text, services_for

SOURCES = """
ssm:
  kind: aws_ssm
  regions: {us-west-2: eu-west-1}
  timeout: 5
"""
STEPS = """
- name: Restore the newest snapshot
  action: aws_ssm
  source: ssm
  timeout: 30m
  aws_ssm:
    document: orders-restore-test
    parameters: {Service: "{service}", Region: "{region}", Checks: [rows, checksums]}
    interval: 1m
  rollback:
    action: aws_ssm
    aws_ssm: {document: orders-drop-restore, parameters: {Region: "{region}"}}
"""
EXEC = "7f1a2b3c-0000-4000-8000-000000000001"


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return make_client("ssm", region="eu-west-1", timeout=5)


@pytest.fixture
def sv(client, tmp_path):
    services = services_for(SOURCES, STEPS, tmp_path, clients={"ssm": client})
    clock = FakeTime()
    services.backends["ssm"]._clock, services.backends["ssm"]._sleep = clock, clock.sleep
    services.extras["clock"] = clock
    yield services
    services.engine.dispose()


def step(sv):
    return sv.config.service("orders").runbooks.failover[0]


def started(stub, document="orders-restore-test", parameters=None, token=None):
    expected = {"DocumentName": document,
                "Parameters": parameters or {"Service": ["orders"], "Region": ["us-west-2"],
                                             "Checks": ["rows", "checksums"]}}
    if token:
        expected["ClientToken"] = token
    stub.add_response("start_automation_execution", {"AutomationExecutionId": EXEC},
                      expected if token else {**expected, "ClientToken": ANY})


def status(stub, value, **extra):
    stub.add_response("get_automation_execution",
                      {"AutomationExecution": {"AutomationExecutionId": EXEC, "AutomationExecutionStatus": value,
                                               **extra}},
                      {"AutomationExecutionId": EXEC})


def test_an_execution_is_started_with_a_token_followed_and_its_outputs_recorded(sv, client):
    token = str(uuid.uuid5(_TOKENS, "drbot-41-0-1"))
    with Stubber(client) as stub:
        started(stub, token=token)
        status(stub, "InProgress")
        status(stub, "Success", Outputs={"RestoreDb.Snapshot": ["orders-2026-11-29"]})
        out = execute_step(sv, a_request(), step(sv), "us-west-2", position=0)
        stub.assert_no_pending_responses()
    d = out["details"]
    assert d["execution_id"] == EXEC and d["status"] == "Success" and d["aws_region"] == "eu-west-1"
    assert d["outputs"] == {"RestoreDb.Snapshot": "orders-2026-11-29"}
    assert d["link"] == ("https://eu-west-1.console.aws.amazon.com/systems-manager/automation/execution/"
                         f"{EXEC}?region=eu-west-1")
    assert sv.extras["clock"].slept == [60.0]


def test_a_failed_execution_fails_the_step_with_its_message(sv, client):
    with Stubber(client) as stub:
        started(stub)
        status(stub, "Failed", FailureMessage="Step fails when it is verifying the restored rows")
        with pytest.raises(StepFailed) as e:
            execute_step(sv, a_request(), step(sv), "us-west-2")
    assert f"({EXEC}) ended Failed: Step fails when it is verifying the restored rows" in str(e.value)
    assert e.value.output["execution_id"] == EXEC and e.value.output["status"] == "Failed"


def test_past_the_timeout_the_execution_is_stopped(sv, client):
    with Stubber(client) as stub:
        started(stub)
        for _ in range(31):
            status(stub, "InProgress")
        stub.add_response("stop_automation_execution", {}, {"AutomationExecutionId": EXEC, "Type": "Cancel"})
        with pytest.raises(StepFailed) as e:
            execute_step(sv, a_request(), step(sv), "us-west-2")
        stub.assert_no_pending_responses()
    assert f"execution {EXEC} stopped: it did not end within 1800s (status InProgress)" in str(e.value)
    assert e.value.output["execution_id"] == EXEC


def test_a_stopped_run_stops_the_execution(sv, client):
    stop = threading.Event()
    stop.set()
    with Stubber(client) as stub:
        started(stub)
        status(stub, "InProgress")
        stub.add_response("stop_automation_execution", {}, {"AutomationExecutionId": EXEC, "Type": "Cancel"})
        with pytest.raises(StepFailed, match="stopped: the run was stopped"):
            execute_step(sv, a_request(), step(sv), "us-west-2", stop=stop)
        stub.assert_no_pending_responses()


def test_access_denied_is_not_permitted(sv, client):
    with Stubber(client) as stub:
        stub.add_client_error("start_automation_execution", "AccessDeniedException", "not authorized", 400)
        with pytest.raises(StepFailed) as e:
            execute_step(sv, a_request(), step(sv), "us-west-2")
    assert e.value.output["error_kind"] == "not_permitted" and "AccessDeniedException" in str(e.value)


def test_rollback_starts_its_own_document(sv, client):
    undo = step(sv).rollback.as_step(step(sv))
    assert undo.timeout == timedelta(minutes=30)
    with Stubber(client) as stub:
        started(stub, "orders-drop-restore", {"Region": ["us-west-2"]})
        status(stub, "Success")
        out = execute_step(sv, a_request(), undo, "us-west-2")
        stub.assert_no_pending_responses()
    assert out["details"]["status"] == "Success"


def test_the_plan_says_what_would_start_and_calls_nothing(sv, client):
    with Stubber(client) as stub:  # no response queued: any call would fail the plan line
        text = plan_text(sv)
        stub.assert_no_pending_responses()
    assert ("would start SSM Automation orders-restore-test in eu-west-1 (Service=orders, Region=us-west-2, "
            "Checks=rows,checksums) and wait for it") in text
    assert "rollback: aws_ssm orders-drop-restore" in text


def test_bad_ssm_steps_are_config_errors():
    with pytest.raises(ConfigError) as e:
        parse_config(config_text(SOURCES, "- {name: s, action: aws_ssm, source: ssm, aws_ssm: {documnet: x}}"),
                     "drbot.yaml", {})
    assert "aws_ssm.documnet: unknown key (did you mean 'document'?)" in str(e.value)
    assert "aws_ssm.document: is required but missing" in str(e.value)
