"""Every ``/dr`` subcommand, button and form, declared once. The router, ``/dr help``, the
usage template, Slack's action-id matching and the shell's ``click`` verbs read this table."""
from __future__ import annotations

from commands import (
    actions, cancel, drill, drills, failback, failover, help, incident, outbox, plan, requests, status, timeline,
)
from commands.base import Button, Form, Subcommand

SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("status", "status [SERVICE] [public]",
               "DR readiness and replication lag of every service, worst first; with SERVICE, the detail with lag "
               "history. Only you see it unless you add `public`.", status.run),
    Subcommand("failover", "failover SERVICE [to REGION] REASON... [--break-glass JUSTIFICATION...]",
               "Ask to move SERVICE to its standby region (or REGION). Posts the request with its pre-flight "
               "checks; it runs only after another authorised person approves.", failover.run),
    Subcommand("failback", "failback SERVICE REASON... [--break-glass JUSTIFICATION...]",
               "Ask to move SERVICE back to its home region. Needs approval like a failover.", failback.run),
    Subcommand("drill", "drill SERVICE [SCENARIO] [REASON...] | drill schedule SERVICE WHEN [SCENARIO] | "
                        "drill postpone SERVICE to WHEN [REASON...] | drill skip SERVICE REASON...",
               "Ask for a drill of a runbook scenario now, or change the drill calendar: schedule one, postpone "
               "or skip the next. Each needs approval; results are recorded as evidence.", drill.run),
    Subcommand("drills", "drills [history [SERVICE]]",
               "Upcoming drills with their next times, or past drills with their measured RTO and RPO.", drills.run),
    Subcommand("plan", "plan SERVICE [to REGION] [failover|failback|drill [SCENARIO]]",
               "Dry run: the pre-flight checks with live values and what every step would do. Changes nothing.",
               plan.run),
    Subcommand("requests", "requests", "Open and recent change requests with their state.", requests.run),
    Subcommand("cancel", "cancel ID", "Withdraw a request you made that is still waiting for approval.", cancel.run),
    Subcommand("incident", "incident [open TITLE... [sev1..sev4] [SERVICE...] | status "
                           "investigating|identified|monitoring|resolved [MESSAGE...] | note TEXT...]",
               "The incident of this channel; open one (its channel is created, responders invited, readiness "
               "pinned), change its status (the status page follows) or add a note to its timeline.", incident.run),
    Subcommand("timeline", "timeline", "Post the incident's timeline so far in this channel.", timeline.run),
    Subcommand("outbox", "outbox [retry ID]",
               "Side effects (request messages, posts, status-page updates) waiting for delivery or given up on; "
               "retry one.", outbox.run),
    Subcommand("help", "help [SUBCOMMAND]", "This help; with SUBCOMMAND, just that one.", help.run),
)

BUTTONS: tuple[Button, ...] = (
    Button("cr_approve", "approve", actions.decide("approve")),
    Button("cr_deny", "deny", actions.decide("deny")),
    Button("cr_cancel", "cancel", actions.decide("cancel")),
    Button("run_rollback", "rollback", actions.rollback),
    Button("run_resume", "resume", actions.resume),
    Button("run_abort", "abort", actions.abort),
    Button("status_refresh", "refresh", actions.refresh_status),
    Button("plan_failover", "plan", actions.plan_failover),
    Button("sp_publish", "publish", actions.preview(publish=True)),
    Button("sp_skip", "skip", actions.preview(publish=False)),
    Button("sp_edit", "edit", actions.open_form("sp_edit")),
    Button("inc_update", "update", actions.open_form("inc_update")),
    Button("drill_postpone", "postpone", actions.open_form("drill_postpone")),
    Button("drill_skip", "skip-drill", actions.open_form("drill_skip")),
)

FORMS: tuple[Form, ...] = (
    Form("drill_postpone", actions.validate_postpone, actions.submit_postpone),
    Form("drill_skip", actions.validate_calendar, actions.submit_skip),
    Form("inc_update", actions.validate_update, actions.submit_update),
    Form("sp_edit", actions.validate_edit, actions.submit_edit),
)
