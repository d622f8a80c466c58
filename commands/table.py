"""Every ``/dr`` subcommand, button and form, declared once. The router, ``/dr help``, the
usage template, Slack's action-id matching and the shell's ``click`` verbs read this table."""
from __future__ import annotations

from bot.permissions import ANYONE, APPROVAL_POLICY
from commands import (
    actions, cancel, drill, drills, failback, failover, followup, help, incident, outbox, page, plan, requests, status,
    timeline,
)
from commands.base import Button, Form, Subcommand

# who may (docs/config.md "Permissions" is this table in words; tests/test_permissions.py a test per row)
REQUEST = {"": APPROVAL_POLICY}

SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("status", "status [SERVICE] [public]",
               "DR readiness and replication lag of every service, worst first; with SERVICE, the detail with lag "
               "history. Only you see it unless you add `public`.", status.run, {"": ANYONE}),
    Subcommand("failover", "failover SERVICE [to REGION] REASON... [--allow-data-loss] [--break-glass JUSTIFICATION...]",
               "Ask to move SERVICE to its standby region (or REGION). Posts the request with its pre-flight "
               "checks; it runs only after another authorised person approves. `to` right after SERVICE always "
               "names a region, so a reason cannot start with it. One open change per service.", failover.run, REQUEST),
    Subcommand("failback", "failback SERVICE [to REGION] REASON... [--allow-data-loss] [--break-glass JUSTIFICATION...]",
               "Ask to move SERVICE back to its home region (REGION, if given, must be that one). Needs approval "
               "like a failover. The pre-flight refuses a region whose database does not replicate from the "
               "writer; `--allow-data-loss`, with a reason that names the data loss, accepts it (audited).",
               failback.run, REQUEST),
    Subcommand("drill", "drill SERVICE [SCENARIO [REASON...]] | drill schedule SERVICE WHEN [SCENARIO [REASON...]] | "
                        "drill postpone SERVICE to WHEN [REASON...] | drill skip SERVICE REASON...",
               "Ask for a drill of a runbook scenario now, or change the drill calendar: schedule one, postpone "
               "or skip the next. Each needs approval; results are recorded as evidence. Without SCENARIO the "
               "`default` one runs; with more words, the first must name a scenario (`default` too, before a "
               "reason): an unknown word is an error, never a reason.", drill.run,
               {"": APPROVAL_POLICY, "schedule": "drill_calendar", "postpone": "drill_calendar",
                "skip": "drill_calendar"}),
    Subcommand("drills", "drills [history [SERVICE]]",
               "Upcoming drills with their next times, or past drills with their measured RTO and RPO.", drills.run,
               {"": ANYONE}),
    Subcommand("plan", "plan SERVICE [to REGION] [failover|failback|drill [SCENARIO]] [--allow-data-loss] | "
               "plan evacuate REGION",
               "Dry run: the pre-flight checks with live values and what every step would do; for `evacuate`, "
               "every service active in the region in waves by dependency, with what would be refused. "
               "Changes nothing.",
               plan.run, {"": ANYONE}),
    Subcommand("requests", "requests", "Open and recent change requests with their state.", requests.run,
               {"": ANYONE}),
    Subcommand("cancel", "cancel ID", "Withdraw a request you made that waits for approval or for its run.", cancel.run,
               REQUEST),
    Subcommand("incident", "incident [open TITLE... [sev1..sev4] [SERVICE...] | status "
                           "investigating|identified|monitoring|resolved [MESSAGE...] | note TEXT... | "
                           "role ROLE @person|me | severity sev1..sev4 REASON...]",
               "The incident of this channel; open one (its channel is created, responders invited, readiness "
               "pinned), change its status (the status page follows), add a note to its timeline, give a role "
               "(commander, ...) to someone or change the severity. A word like sev9 must be a severity; after "
               "the severity come only service names.", incident.run,
               # role, severity: the core decides (anyone claims a free role; otherwise incident_update or
               # the incident's commander)
               {"": ANYONE, "open": "incident_open", "status": "incident_update", "note": ANYONE,
                "role": ANYONE, "severity": ANYONE}),
    Subcommand("page", "page [TARGET [MESSAGE...]]",
               "Page a paging target (paging.targets) or a service's on-call through the pager, about this "
               "channel's incident (resolved with it), or about nothing outside one. Alone: who can be paged.",
               page.run, {"": "incident_update"}),
    Subcommand("followup", "followup [list] | add TEXT... [@owner|me] [due YYYY-MM-DD|in 3d] | done ID | reviewed",
               "What to do after an incident, with owners and due dates: listed here, in the postmortem draft and "
               "in the tracker when one is configured; overdue ones are reminded. `reviewed`: the postmortem "
               "review was held.", followup.run,
               # done, reviewed: the core decides (the owner or whoever added it; else incident_update or the
               # commander)
               {"": ANYONE, "add": ANYONE, "done": ANYONE, "reviewed": ANYONE}),
    Subcommand("timeline", "timeline", "Post the incident's timeline so far in this channel.", timeline.run, {"": ANYONE}),
    Subcommand("outbox", "outbox [retry ID]",
               "Side effects (request messages, posts, status-page updates) waiting for delivery or given up on; "
               "retry one.", outbox.run, {"": ANYONE, "retry": "outbox_retry"}),
    Subcommand("help", "help [SUBCOMMAND]", "This help; with SUBCOMMAND, just that one.", help.run, {"": ANYONE}),
)

BUTTONS: tuple[Button, ...] = (
    Button("cr_approve", "approve", actions.decide("approve"), APPROVAL_POLICY),
    Button("cr_deny", "deny", actions.decide("deny"), APPROVAL_POLICY),
    Button("cr_cancel", "cancel", actions.decide("cancel"), APPROVAL_POLICY),
    Button("run_rollback", "rollback", actions.rollback, APPROVAL_POLICY),
    Button("run_resume", "resume", actions.resume, APPROVAL_POLICY),
    Button("run_abort", "abort", actions.abort, APPROVAL_POLICY),
    Button("status_refresh", "refresh", actions.refresh_status, ANYONE),
    Button("plan_failover", "plan", actions.plan_failover, ANYONE),
    Button("plan_failback", "plan-failback", actions.plan_failback, ANYONE),
    Button("sp_publish", "publish", actions.preview(publish=True), "statuspage_publish"),
    Button("sp_skip", "skip", actions.preview(publish=False), "statuspage_publish"),
    Button("sp_edit", "edit", actions.open_form("sp_edit"), "statuspage_publish"),
    Button("inc_update", "update", actions.open_form("inc_update"), "incident_update"),
    Button("inc_resolve", "resolve-incident", actions.resolve_incident, "incident_update"),
    Button("inc_claim", "claim", actions.claim_role, ANYONE),  # a held role: incident_update or the commander
    Button("drill_postpone", "postpone", actions.open_form("drill_postpone"), "drill_calendar"),
    Button("drill_skip", "skip-drill", actions.open_form("drill_skip"), "drill_calendar"),
)

FORMS: tuple[Form, ...] = (
    Form("drill_postpone", actions.validate_postpone, actions.submit_postpone, "drill_calendar"),
    Form("drill_skip", actions.validate_calendar, actions.submit_skip, "drill_calendar"),
    Form("inc_update", actions.validate_update, actions.submit_update, "incident_update"),
    Form("sp_edit", actions.validate_edit, actions.submit_edit, "statuspage_publish"),
)
