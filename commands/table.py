"""Every ``/dr`` subcommand, button and form, declared once. The router, ``/dr help``, the
usage template, Slack's action-id matching and the shell's ``click`` verbs read this table."""
from __future__ import annotations

from bot.permissions import ANYONE, APPROVAL_POLICY
from commands import (
    actions, cancel, drill, drills, evacuate, failback, failover, followup, help, incident, outbox, page, plan, requests,
    shortcuts, status, timeline,
)
from commands import manual_step
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
                        "drill postpone SERVICE to WHEN [REASON...] | drill skip SERVICE REASON... | "
                        "drill evacuate REGION [REASON...] | drill schedule evacuate REGION WHEN [REASON...] | "
                        "drill postpone evacuate REGION to WHEN [REASON...] | drill skip evacuate REGION REASON...",
               "Ask for a drill of a runbook scenario now, or change the drill calendar: schedule one, postpone "
               "or skip the next. Each needs approval; results are recorded as evidence. Without SCENARIO the "
               "`default` one runs; with more words, the first must name a scenario (`default` too, before a "
               "reason): an unknown word is an error, never a reason. `drill evacuate REGION`: a region drill, "
               "every service active in REGION moved wave by wave under one approval (each runs its drill "
               "scenario `evacuate`, or its failover when all its sources are sandbox), with a drill report; "
               "scheduled (or planned from `evacuation.drills`), it is on the drill calendar like any drill: "
               "announced ahead, approved ahead, started at WHEN only if approved by then, postponed or skipped "
               "with `drill postpone evacuate REGION` / `drill skip evacuate REGION`.",
               drill.run,
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
    Subcommand("evacuate", "evacuate REGION REASON... [--break-glass JUSTIFICATION...]",
               "Ask to move every service active in REGION (except `evacuation.exclude`), wave by wave in "
               "dependency order, as one request under one approval (the strictest policy of its services, or "
               "`evacuation.approvals`). `plan evacuate REGION` shows the waves first. Services that would not "
               "move are listed on the request and stay.", evacuate.run, REQUEST),
    Subcommand("return", "return REGION REASON... [--break-glass JUSTIFICATION...]",
               "Ask to bring back to REGION every service whose home it is and that runs elsewhere (after an "
               "evacuation), failbacks in reverse dependency order, each with its failback safety checks; one "
               "request, one approval.", evacuate.run_return, REQUEST),
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
    Button("evac_abort", "evac-abort", evacuate.abort, APPROVAL_POLICY),
    Button("evac_resume", "evac-resume", evacuate.resume, APPROVAL_POLICY),
    Button("evac_rollback", "evac-rollback", evacuate.rollback, APPROVAL_POLICY),
    Button("status_refresh", "refresh", actions.refresh_status, ANYONE),
    Button("plan_failover", "plan", actions.plan_failover, ANYONE),
    Button("plan_failback", "plan-failback", actions.plan_failback, ANYONE),
    Button("sp_publish", "publish", actions.preview(publish=True), "statuspage_publish"),
    Button("sp_skip", "skip", actions.preview(publish=False), "statuspage_publish"),
    Button("sp_edit", "edit", actions.open_form("sp_edit"), "statuspage_publish"),
    Button("inc_update", "update", actions.open_form("inc_update"), "incident_update"),
    Button("inc_resolve", "resolve-incident", actions.resolve_incident, "incident_update"),
    Button("inc_claim", "claim", actions.claim_role, ANYONE),  # a held role: incident_update or the commander
    # the pinned summary's modals: the core decides on submission (incident_update or the commander)
    Button("inc_severity", "change-severity", shortcuts.severity_form, ANYONE),
    Button("inc_role", "assign-role", shortcuts.role_form, ANYONE),
    Button("drill_postpone", "postpone", actions.open_form("drill_postpone"), "drill_calendar"),
    Button("drill_skip", "skip-drill", actions.open_form("drill_skip"), "drill_calendar"),
    # a manual runbook step's answer: the core decides (the run's approvers and the step's approvers)
    Button("manual_done", "done", manual_step.done, ANYONE),
    Button("manual_failed", "failed", manual_step.failed, ANYONE),
)

FORMS: tuple[Form, ...] = (
    Form("drill_postpone", actions.validate_postpone, actions.submit_postpone, "drill_calendar"),
    Form("drill_skip", actions.validate_calendar, actions.submit_skip, "drill_calendar"),
    Form("inc_update", actions.validate_update, actions.submit_update, "incident_update"),
    Form("sp_edit", actions.validate_edit, actions.submit_edit, "statuspage_publish"),
    Form("manual_failed", manual_step.validate_failed, manual_step.submit_failed, ANYONE),  # the core decides
    Form("inc_declare", shortcuts.validate_declare, shortcuts.submit_declare, "incident_open"),
    Form("inc_severity", shortcuts.validate_severity, shortcuts.submit_severity, ANYONE),  # the core decides
    Form("inc_role", shortcuts.validate_role, shortcuts.submit_role, ANYONE),  # the core decides
)

SHORTCUTS: tuple[Button, ...] = (
    # Slack shortcuts, by callback_id (deploy/slack-app-manifest.yaml declares them); not block actions
    Button("dr_declare", "declare", shortcuts.declare_form, "incident_open"),  # global: opens form inc_declare
    Button("dr_add_timeline", "add-to-timeline", shortcuts.add_to_timeline, ANYONE),  # message: like a note
)
