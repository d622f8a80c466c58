"""Delivery of follow-ups: the tracker's issue (Jira), the review reminder and the
overdue reminders in the incident channel."""
from __future__ import annotations

from bot.events import FollowupIssue, FollowupsOverdue, ReviewReminder
from bot.incident_followups import for_incident, tracked
from bot.delivery.incidents import channel_of
from bot.outbox.kinds import Outcome
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.command_tables import FollowUp
from bot.store.incident_tables import Incident


def deliver_issue(services: Services, ev: FollowupIssue, _prepared, _item: int) -> Outcome:
    """The issue is found by its label or created, so a retry never opens a second one."""
    with session_scope(services.engine) as s:
        row = s.get(FollowUp, ev.followup_id)
        inc = s.get(Incident, row.incident_id)
    summary = services.renderer.text(Reply("followup_issue_summary", {"f": row, "inc": inc})).strip()
    description = services.renderer.text(Reply("followup_issue_body", {"f": row, "inc": inc}))
    tracker = services.backends[services.config.incidents.followups.tracker]
    issue = tracker.create_issue(f"drbot-followup-{row.id}", summary, description,
                                 due=row.due_at.date() if row.due_at else None)
    return Outcome(result={"key": issue.key, "url": issue.url, "created": issue.created},
                   apply=lambda s: tracked(s, row.id, issue.key, issue.url))


def deliver_review(services: Services, ev: ReviewReminder, _prepared, _item: int) -> Outcome:
    return _post(services, ev.incident_id, "review_reminder", {"open_followups": ev.open_followups})


def deliver_overdue(services: Services, ev: FollowupsOverdue, _prepared, _item: int) -> Outcome:
    with session_scope(services.engine) as s:
        late = [f for f in for_incident(s, ev.incident_id) if f.id in ev.followup_ids and f.state == "open"]
    if not late:  # done meanwhile: nothing to remind
        return Outcome(result={"skipped": "done meanwhile"})
    return _post(services, ev.incident_id, "followups_overdue", {"late": late})


def _post(services: Services, incident_id: int, template: str, extra: dict) -> Outcome:
    with session_scope(services.engine) as s:
        inc = s.get(Incident, incident_id)
    ts = services.messenger.post(channel_of(inc), Reply(template, {"inc": inc, "now": services.clock(),
                                                                  "command": services.command} | extra,
                                                       ephemeral=False))
    return Outcome(result={"ts": ts})
