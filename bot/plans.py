"""Which steps a change request runs, in which region: its runbook, the steps of its
parent's interrupted run (resume), or the undo of what its parent's run changed
(rollback, newest first)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from bot.config.runbooks import Step
from bot.services import Services
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
    if req.kind in CALENDAR_KINDS:
        return []
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
    ran = {st.position for st in s.exec(select(RunStep).where(
        RunStep.run_id == run.id, RunStep.rollback == False))  # noqa: E712
        if st.state in (StepState.SUCCEEDED, StepState.FAILED, StepState.RUNNING)} if run else set()
    out = []
    for p in reversed(base):
        if p.position in ran and p.step.rollback is not None:
            rb = p.step.rollback
            spec = Step(name=f"Undo: {p.step.name}", action=rb.action, source=rb.source, timeout=p.step.timeout)
            region = parent.to_region if rb.to == "target" else parent.from_region
            out.append(Planned(p.position, spec, region, rollback=True))
    return out
