"""What a person's App Home tab shows: the open incidents (severity, commander, channel),
the pending requests that person may approve, the services not READY (from the shared
readiness report), and the upcoming drills. Reads only; nothing here changes state."""
from __future__ import annotations

import logging
from typing import Any

from sqlmodel import col, select

from bot import drills
from bot.actor import Actor
from bot.changes import Refused, may_approve
from bot.incident_command import COMMANDER, roles_of
from bot.incidents import open_incidents, services_of
from bot.evacuation_policy import policy_of
from bot.policy import Policy
from bot.services import Services
from bot.store import read_scope
from bot.store.models import Approval, ChangeRequest, RequestState

log = logging.getLogger(__name__)

MAX_ROWS = 10
"""Per section: a Home view holds at most 100 blocks."""


def home_context(services: Services, actor: Actor) -> dict[str, Any]:
    """The template context of ``templates/blocks/home.json.j2`` for ``actor``."""
    with read_scope(services.engine) as s:
        incidents = []
        for inc in open_incidents(s)[:MAX_ROWS]:
            held = roles_of(s, inc.id)
            incidents.append({"inc": inc, "services": services_of(inc),
                              "commander": held[COMMANDER].user_id if COMMANDER in held else None})
        pending = list(s.exec(select(ChangeRequest).where(ChangeRequest.state == RequestState.PENDING)
                              .order_by(col(ChangeRequest.id))))
        decided: dict[int, set[str]] = {r.id: set() for r in pending}
        for request_id, approver in s.exec(select(Approval.request_id, Approval.approver)
                                           .where(col(Approval.request_id).in_(list(decided)))):
            decided[request_id].add(approver)  # one query, however many requests wait
        policies = {r.id: _policy(services, s, r) for r in pending}
    to_approve = [r for r in pending if _may_approve(services, actor, r, decided[r.id], policies[r.id])][:MAX_ROWS]
    try:
        report = services.status.report()
        not_ready = [a for a in report.assessments if a.verdict.value != "READY"]
    except Exception as e:  # noqa: BLE001 - the Home tab still shows the rest
        log.warning("home: no readiness report: %s", type(e).__name__)
        report, not_ready = None, None
    return {"incidents": incidents, "to_approve": to_approve, "not_ready": not_ready,
            "report": report, "upcoming": drills.upcoming(services, MAX_ROWS), "now": services.clock(),
            "command": services.command, "tz": actor.tz or services.config.timezone, "user": actor.id}


def _policy(services: Services, s, req: ChangeRequest) -> Policy | None:
    """The policy deciding ``req`` (an evacuation's over its services); None: a service no
    longer in the config."""
    try:
        return policy_of(services.config, s, req)
    except KeyError:
        return None


def _may_approve(services: Services, actor: Actor, req: ChangeRequest, decided: set[str],
                 policy: Policy | None) -> bool:
    """The approve button would count this person: not the requester, not decided yet, an approver."""
    if req.requester == actor.id or actor.id in decided or policy is None:
        return False
    try:
        return may_approve(services, policy, actor)
    except Refused:  # a user group could not be read: not listed (never shown on a doubt)
        return False
