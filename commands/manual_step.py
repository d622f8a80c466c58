"""Done and Failed on a manual runbook step (``bot.manual_steps`` decides who may and which
answer wins). Failed asks for a reason: a form in Slack; in the shell, the reason follows
the step's number in the click (``click failed 12-replica-not-caught-up``)."""
from __future__ import annotations

from bot import manual_steps
from bot.actor import Actor
from bot.render import Reply
from bot.services import Services
from bot.store.manual_tables import DONE, FAILED
from commands.base import parse_id
from commands.base import FormError, UsageError


def _step_id(value: str) -> tuple[int, str]:
    number, _, words = value.partition("-")
    step_id = parse_id(number)
    if step_id is None:
        raise UsageError("this button carries no step number")
    return step_id, words.replace("-", " ").strip()


def done(services: Services, actor: Actor, value: str) -> Reply | None:
    step_id, _ = _step_id(value)
    return manual_steps.answer(services, actor, step_id, DONE)


def failed(services: Services, actor: Actor, value: str) -> Reply | None:
    """With a reason (the shell's ``click failed ID-WORDS``): answered at once; without, the
    form that asks for it, once the clicker may answer."""
    step_id, reason = _step_id(value)
    if reason:
        return manual_steps.answer(services, actor, step_id, FAILED, reason)
    refusal = manual_steps.check(services, actor, step_id)
    if refusal is not None:
        return refusal
    return Reply("manual_step_failed_form", manual_steps.form_context(services, step_id), modal=True)


def validate_failed(services: Services, fields: dict[str, str]) -> None:
    if not (fields.get("reason") or "").strip():
        raise FormError("reason", "say what went wrong: it goes into the run's record")


def submit_failed(services: Services, actor: Actor, step_id: int, fields: dict[str, str]) -> Reply | None:
    return manual_steps.answer(services, actor, step_id, FAILED, fields["reason"])
