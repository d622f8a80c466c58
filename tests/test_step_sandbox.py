"""The demo's fuller failover runbook (payments) on the sandbox (deploy/demo.yaml): the simulated Kubernetes
and HTTP step actions say SANDBOX, a failed smoke test (the ``http_fails`` fault) fails
the run, and Rollback undoes newest first: traffic back, read-only flag off, scale back."""
from __future__ import annotations

import json
from pathlib import Path

from bot.store.models import ChangeRequest, RequestState, Run, RunStep, StepState
from bot.wiring import build_services
from commands.router import click, dispatch
from tests.helpers import ALICE, BOB, CAROL, request_row, rows

DEMO = Path(__file__).resolve().parent.parent / "deploy" / "demo.yaml"


def steps_of(sv, request_id: int) -> list[RunStep]:
    (run,) = rows(sv, Run, Run.request_id == request_id)
    return rows(sv, RunStep, RunStep.run_id == run.id, order=RunStep.id)


def test_the_demo_runbook_fails_its_smoke_test_and_rolls_back_newest_first(tmp_path):
    sv = build_services(str(DEMO), db_url=f"sqlite:///{tmp_path}/demo.db", inline_runs=True)
    estate = sv.backends["demo"].estate
    estate.inject("payments", "http_fails", "us-west-2")  # the smoke test URL names the region; the flag's does not
    dispatch(sv, ALICE, "failover payments card auth failing in us-east-1")
    (req,) = rows(sv, ChangeRequest)
    click(sv, BOB, "cr_approve", str(req.id))
    assert request_row(sv, req.id).state is RequestState.FAILED
    ran = steps_of(sv, req.id)
    assert [(s.action, s.state) for s in ran] == [
        ("kubernetes.scale", StepState.SUCCEEDED), ("http", StepState.SUCCEEDED),
        ("database.promote", StepState.SUCCEEDED), ("traffic.shift", StepState.SUCCEEDED),
        ("http", StepState.FAILED)]
    assert all(json.loads(s.output)["summary"].startswith("SANDBOX: ") for s in ran[:4])
    assert ran[4].error == "GET http://sandbox.invalid/smoke/payments/us-west-2: HTTP 500 after 2 tries"
    assert estate.world.documents["/flags/payments-read-only"]["enabled"] is True
    assert estate.world.replicas[("us-west-2", "Deployment", "payments", "payments-api")] == 6

    click(sv, ALICE, "run_rollback", str(req.id))
    rb = rows(sv, ChangeRequest, ChangeRequest.parent_id == req.id)[0]
    click(sv, CAROL, "cr_approve", str(rb.id))
    assert request_row(sv, rb.id).state is RequestState.ROLLED_BACK
    undo = steps_of(sv, rb.id)
    assert [s.name for s in undo] == ["Undo: Shift API traffic to the target region", "Undo: Read-only mode on",
                                      "Undo: Scale the target region's API up"]
    assert all(s.state is StepState.SUCCEEDED for s in undo)
    assert estate.world.documents["/flags/payments-read-only"]["enabled"] is False
    assert estate.world.replicas[("us-west-2", "Deployment", "payments", "payments-api")] == 2
    assert estate.active("payments") == "us-east-1"
