"""The approval policy in force for one service: the global policy with the service's
overrides, and the tier rule for critical services."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.config import Config
from bot.config.models import ApprovalSlot, BreakGlass, Relaxation


@dataclass(frozen=True)
class Policy:
    service: str
    required: int
    approvers: tuple[str, ...]
    requesters: tuple[str, ...]
    expires: timedelta
    break_glass: BreakGlass
    allow_parallel: bool
    """Several open changes of the service at once (``approvals.allow_parallel``)."""
    slots: tuple[ApprovalSlot, ...] = ()
    """Approval as a combination of slots (bot/approval_slots.py); empty: ``required`` of ``approvers``."""
    relaxations: tuple[Relaxation, ...] = ()


def policy_for(config: Config, service: str) -> Policy:
    svc = config.service(service)
    if svc is None:
        raise KeyError(service)
    base, over = config.approvals, svc.approvals
    required = base.required_approvals
    if svc.tier == "critical" and base.critical_required_approvals is not None:
        required = base.critical_required_approvals

    def pick(field):
        value = getattr(over, field, None) if over is not None else None
        return getattr(base, field) if value is None else value

    if over is not None and over.required_approvals is not None:
        required = over.required_approvals
    slots = tuple(pick("slots"))
    if slots:  # every slot filled by a distinct person
        required = len(slots)
    return Policy(service=service, required=required, approvers=tuple(pick("approvers")),
                  requesters=tuple(pick("requesters")), expires=pick("expires"), break_glass=pick("break_glass"),
                  allow_parallel=pick("allow_parallel"), slots=slots,
                  relaxations=tuple(pick("relaxations")))
