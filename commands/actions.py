"""Button clicks on request and run messages. Every transport routes clicks here, so the
two-person rule is enforced in one place, whoever and wherever clicks."""
from __future__ import annotations

from bot import changes, followups
from bot.actor import Actor
from bot.changes import Refused
from bot.render import Reply
from bot.services import Services

ACTIONS = ("cr_approve", "cr_deny", "cr_cancel", "run_rollback", "run_resume", "run_abort")
INCIDENT_ACTIONS = ("plan_failover", "sp_publish", "sp_skip")


def click(services: Services, actor: Actor, action_id: str, value: str) -> Reply | None:
    """Handle one click; returns what only the clicker should see (None: nothing to say,
    the message itself shows the new state)."""
    if action_id in INCIDENT_ACTIONS:
        return incident_click(services, actor, action_id, value)
    if action_id not in ACTIONS or not value.isdigit():
        return Reply("refused", {"code": "unknown_action", "p": {"action": action_id}})
    request_id = int(value)
    try:
        if action_id.startswith("cr_"):
            decision = changes.decide(services, actor, request_id, action_id[3:])
            if decision.start_run:
                services.runner.start(request_id)
            return decision.reply
        if action_id == "run_rollback":
            followups.request_rollback(services, actor, request_id)
        elif action_id == "run_resume":
            followups.request_resume(services, actor, request_id)
        else:
            followups.abort(services, actor, request_id)
    except Refused as r:
        return r.reply()
    return None


def incident_click(services: Services, actor: Actor, action_id: str, value: str) -> Reply | None:
    from commands import plan
    from commands.base import Invocation, UsageError
    from commands.help import usage

    if action_id == "plan_failover":
        inv = Invocation(services=services, actor=actor, args=[value], text=value)
        try:
            return plan.run(inv)
        except UsageError as e:
            return usage(inv, error=e.message, topic=e.topic)
    if not value.isdigit():
        return Reply("refused", {"code": "unknown_action", "p": {"action": action_id}})
    from bot.incidents import decide_preview

    return decide_preview(services, actor, int(value), publish=action_id == "sp_publish")
