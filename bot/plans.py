"""Which steps a change request runs, in which region: its runbook, the steps of its
parent's interrupted run (resume), or the undo of what its parent's run changed
(rollback, newest first)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlmodel import Session, select

from bot.config.runbooks import Step
from bot.services import Services
from bot.store.evacuation_tables import REGION_PREFIX
from bot.store.models import ChangeRequest, RequestKind, Run, RunStep, StepState

CALENDAR_KINDS = (RequestKind.DRILL_SKIP, RequestKind.DRILL_POSTPONE)
"""Requests that change the drill calendar: no runbook, nothing in the estate changes."""


@dataclass(frozen=True)
class Planned:
    """A step to run: its config, where it acts, and whether it is a rollback."""

    position: int
    step: Step
    region: str
    rollback: bool = False


def steps_for(services: Services, s: Session, req: ChangeRequest) -> list[Planned]:
    """The steps of ``req``, read in the caller's session."""
    if req.kind in CALENDAR_KINDS or req.service.startswith(REGION_PREFIX):
        return []  # an evacuation (its resume, its rollback): its services' own requests have the steps
    svc = services.config.service(req.service)
    if req.kind in (RequestKind.FAILOVER, RequestKind.FAILBACK, RequestKind.DRILL):
        steps = svc.runbooks.steps(req.kind.value, req.scenario or None)
        return [Planned(i, st, req.to_region if st.to == "target" else req.from_region)
                for i, st in enumerate(steps)]
    parent = s.get(ChangeRequest, req.parent_id)
    base = steps_for(services, s, parent)
    if req.kind is RequestKind.RESUME:
        return base
    # rollback: the parent's steps that ran, newest first, each through its rollback spec
    run = s.exec(select(Run).where(Run.request_id == parent.id)).first()
    ran: dict[int, dict] = {}  # position -> what its attempts recorded, the earliest attempt's values first
    for st in s.exec(select(RunStep).where(RunStep.run_id == run.id, RunStep.rollback == False)  # noqa: E712
                     .order_by(RunStep.attempt)) if run else ():
        if st.state in (StepState.SUCCEEDED, StepState.FAILED, StepState.RUNNING):
            ran[st.position] = _recorded(st.output) | ran.get(st.position, {})
    out = []
    for p in reversed(base):
        if p.position in ran and p.step.rollback is not None:
            rb = p.step.rollback
            spec = rb.as_step(p.step, ran[p.position])  # e.g. scale back to the replicas read before
            region = parent.to_region if spec.to == "target" else parent.from_region
            out.append(Planned(p.position, spec, region, rollback=True))
    return out


def _recorded(output: str | None) -> dict:
    """A step's recorded output (JSON), or {} when there is none or it is not JSON."""
    try:
        found = json.loads(output or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
