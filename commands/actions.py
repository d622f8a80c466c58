"""Button clicks and form submissions. Every transport routes them here (through the
table), so the two-person rule is enforced in one place, whoever and wherever clicks."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from bot import changes, drills, followups, incident_command, incidents
from bot.alerts import quiet
from bot.actor import Actor
from bot.incident_view import preview_body
from bot.incidents import STATUSES
from bot.render import Reply
from bot.services import Services
from commands import plan
from commands import status as status_cmd
from commands.base import FormError, Invocation, UsageError, parse_id, request_id


def decide(verb: str):
    """Approve, Deny, Cancel on a request's message."""
    def run(services: Services, actor: Actor, value: str) -> Reply | None:
        return changes.decide(services, actor, request_id(verb, value), verb).reply
    return run


def rollback(services: Services, actor: Actor, value: str) -> Reply | None:
    followups.request_rollback(services, actor, request_id("rollback", value))
    return None


def resume(services: Services, actor: Actor, value: str) -> Reply | None:
    followups.request_resume(services, actor, request_id("resume", value))
    return None


def abort(services: Services, actor: Actor, value: str) -> Reply | None:
    followups.abort(services, actor, request_id("abort", value))
    return None


def refresh_status(services: Services, actor: Actor, value: str) -> Reply:
    service = None if value in ("", "*") or services.config.service(value) is None else value
    inv = Invocation(services=services, actor=actor, args=[], text="")
    return status_cmd.reply_for(inv, service, ephemeral=True, replace=True)


def plan_failover(services: Services, actor: Actor, value: str) -> Reply:
    return plan.run(Invocation(services=services, actor=actor, args=[value], text=value))


def plan_failback(services: Services, actor: Actor, value: str) -> Reply:
    """Plan failback, on the failback assistant's suggestion: ``/dr plan SERVICE failback``."""
    return plan.run(Invocation(services=services, actor=actor, args=[value, "failback"], text=f"{value} failback"))


def preview(publish: bool):
    """Publish or Skip on a status-page preview."""
    def run(services: Services, actor: Actor, value: str) -> Reply | None:
        return incidents.decide_preview(services, actor, request_id("preview", value), publish=publish)
    return run


def open_form(form: str):
    """A button that opens a modal; ``value`` names what it is about."""
    def run(services: Services, actor: Actor, value: str) -> Reply:
        context = {"form": form, "value": value, "statuses": STATUSES, "body": "", "now": services.clock(),
                   "command": services.command, "tz": services.config.timezone}
        if form == "sp_edit" and parse_id(value) is not None:
            context["body"] = preview_body(services, int(value))
        return Reply(f"modal_{form}", context, modal=True)
    return run


# -- forms ------------------------------------------------------------------------------

def validate_calendar(services: Services, fields: dict[str, str]) -> None:
    if not (fields.get("reason") or "").strip():
        raise FormError("reason", "say why, for the audit log")


def validate_postpone(services: Services, fields: dict[str, str]) -> None:
    validate_calendar(services, fields)
    stamp = fields.get("when", "")
    if not re.fullmatch(r"[0-9]{1,11}", stamp) or int(stamp) > 253402300799:  # 9999-12-31
        raise FormError("when", "pick the new date and time")
    if datetime.fromtimestamp(int(stamp), timezone.utc) <= services.clock():
        raise FormError("when", "that time is in the past")


def validate_update(services: Services, fields: dict[str, str]) -> None:
    if fields.get("status", "") not in STATUSES:
        raise FormError("status", "pick the incident's status")


def validate_edit(services: Services, fields: dict[str, str]) -> None:
    if not (fields.get("body") or "").strip():
        raise FormError("body", "the status page needs some text")


def submit_postpone(services: Services, actor: Actor, occurrence_id: int, fields: dict[str, str]) -> None:
    to = datetime.fromtimestamp(int(fields["when"]), timezone.utc)
    drills.request_calendar_change(services, actor, occurrence_id, False, fields["reason"].strip(), to)


def submit_skip(services: Services, actor: Actor, occurrence_id: int, fields: dict[str, str]) -> None:
    drills.request_calendar_change(services, actor, occurrence_id, True, fields["reason"].strip())


def submit_update(services: Services, actor: Actor, incident_id: int, fields: dict[str, str]) -> Reply | None:
    return incidents.update_from_form(services, actor, incident_id, fields["status"], fields.get("message", ""))


def submit_edit(services: Services, actor: Actor, item_id: int, fields: dict[str, str]) -> Reply | None:
    return incidents.decide_preview(services, actor, item_id, publish=True, body=fields["body"].strip())


def claim_role(services: Services, actor: Actor, value: str) -> Reply | None:
    """Claim on the pinned summary: the clicker takes the role (``INCIDENT_ID:ROLE``)."""
    incident_id, _, role = value.partition(":")
    number = parse_id(incident_id)
    if number is None or role not in services.config.incidents.roles:
        raise UsageError("this Claim button names no incident role drbot knows")
    try:
        incident_command.claim(services, actor, number, role)
    except incidents.NoIncident:
        return Reply("refused", {"code": "incident_resolved", "p": {"id": number}})
    return None


def resolve_incident(services: Services, actor: Actor, value: str) -> Reply | None:
    """Resolve, on the notice that every alert of an incident has resolved."""
    incident_id = parse_id(value)
    if incident_id is None:
        raise UsageError("the resolve button carries no incident number")
    quiet.resolve(services, actor, incident_id)
    return None
