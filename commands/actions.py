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
FORMS = ("drill_postpone", "drill_skip", "inc_update", "sp_edit")


class FormError(Exception):
    """A form value that is not acceptable: shown next to the field (Slack) or as a line."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def click(services: Services, actor: Actor, action_id: str, value: str) -> Reply | None:
    """Handle one click; returns what only the clicker should see (None: nothing to say,
    the message itself shows the new state)."""
    if action_id in INCIDENT_ACTIONS:
        return incident_click(services, actor, action_id, value)
    if action_id in FORMS:
        return open_form(services, action_id, value)
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


def open_form(services: Services, form: str, value: str) -> Reply:
    """The modal a button opens; ``value`` names what it is about."""
    from bot.incidents import STATUSES

    context = {"form": form, "value": value, "statuses": STATUSES, "body": "", "now": services.clock(),
               "command": services.command, "tz": services.config.timezone}
    if form == "sp_edit" and value.isdigit():
        context["body"] = preview_body(services, int(value))
    return Reply(f"modal_{form}", context, modal=True)


def preview_body(services: Services, item_id: int) -> str:
    import json

    from bot.outbox_handlers import incident_context
    from bot.store import session_scope
    from bot.store.incident_tables import Incident, OutboxItem

    with session_scope(services.engine) as s:
        item = s.get(OutboxItem, item_id)
        if item is None:
            return ""
        payload = json.loads(item.payload)
        ctx = incident_context(services, s, s.get(Incident, payload["incident_id"]))
    ctx |= {"status": payload["status"], "message": payload.get("message", "")}
    return services.renderer.text(Reply("statuspage_body", ctx)).strip()


def validate(services: Services, form: str, fields: dict[str, str]) -> None:
    """Cheap checks of a submitted form, fast enough for Slack's 3-second ack; FormError
    names the field to correct."""
    from datetime import datetime, timezone

    from bot.incidents import STATUSES

    if form in ("drill_postpone", "drill_skip") and not (fields.get("reason") or "").strip():
        raise FormError("reason", "say why, for the audit log")
    if form == "drill_postpone":
        stamp = fields.get("when", "")
        if not stamp.isdigit():
            raise FormError("when", "pick the new date and time")
        if datetime.fromtimestamp(int(stamp), timezone.utc) <= services.clock():
            raise FormError("when", "that time is in the past")
    if form == "inc_update" and fields.get("status", "") not in STATUSES:
        raise FormError("status", "pick the incident's status")
    if form == "sp_edit" and not (fields.get("body") or "").strip():
        raise FormError("body", "the status page needs some text")


def submit(services: Services, actor: Actor, form: str, value: str, fields: dict[str, str]) -> Reply | None:
    """A submitted modal. Raises FormError for a value to correct; returns what only the
    submitter should see, or None."""
    from datetime import datetime, timezone

    from bot import drills, incidents

    if form not in FORMS or not value.isdigit():
        return Reply("refused", {"code": "unknown_action", "p": {"action": form}})
    validate(services, form, fields)
    try:
        if form in ("drill_postpone", "drill_skip"):
            to = datetime.fromtimestamp(int(fields["when"]), timezone.utc) if form == "drill_postpone" else None
            drills.request_calendar_change(services, actor, int(value), form == "drill_skip",
                                           fields["reason"].strip(), to)
            return None
        if form == "inc_update":
            return incidents.update_from_form(services, actor, int(value), fields["status"],
                                              fields.get("message", ""))
        return incidents.decide_preview(services, actor, int(value), publish=True, body=fields["body"].strip())
    except Refused as r:
        return r.reply()
