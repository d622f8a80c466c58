"""The one table of outbox kinds: each event (its payload model, stream, pacing and
coalescing rules live on the event class, ``bot.events``) with its handler and what
happens when it cannot be delivered."""
from __future__ import annotations

from bot import events as ev
from bot.alerts import batches
from bot.config import Config
from bot.delivery import archive, drills, failback, followups, incidents, notices, pages, quiet, requests, statuspage
from bot.delivery import evacuation
from bot.delivery import manual_steps
from bot.delivery import oncall
from bot.outbox.kinds import Kind
from bot.outbox.pacing import Limit

MESSAGE_ATTEMPTS = 10
"""A request's message is tried this often (about 13 minutes with backoff) before the
request is withdrawn and its requester told."""
PAGE_ATTEMPTS = 8
"""A page is tried this often (about 4 minutes with backoff, longer when the pager says
Retry-After) before drbot gives up and tells the incident channel."""

KINDS: tuple[Kind, ...] = (
    Kind(ev.RequestMessage, requests.deliver_message, requests.prepare_message, max_attempts=MESSAGE_ATTEMPTS,
         give_up=requests.message_given_up),
    Kind(ev.RunProgress, requests.deliver_progress, requests.prepare_progress),
    Kind(ev.DrillReport, requests.deliver_post, requests.prepare_report),
    Kind(ev.RunInterrupted, requests.deliver_post, requests.prepare_interrupted),
    Kind(ev.BreakGlassNotice, requests.deliver_post, requests.prepare_break_glass),
    Kind(ev.RequestWithdrawn, requests.deliver_withdrawn),
    Kind(ev.DrillPost, drills.deliver, drills.prepare),
    Kind(ev.IncidentChannel, incidents.deliver_channel),
    Kind(ev.IncidentAlerts, incidents.deliver_alerts),
    Kind(ev.FailoverSuggestion, incidents.deliver_suggestion),
    Kind(ev.StatuspagePreview, incidents.deliver_preview),
    Kind(ev.IncidentReminder, incidents.deliver_reminder),
    Kind(ev.IncidentSummary, incidents.deliver_summary),
    Kind(ev.CommanderMissing, incidents.deliver_commander_missing),
    Kind(ev.OpsUpdate, incidents.deliver_ops),
    Kind(ev.StatuspageLinked, incidents.deliver_statuspage_link),
    Kind(ev.FollowupIssue, followups.deliver_issue),
    Kind(ev.ReviewReminder, followups.deliver_review),
    Kind(ev.FollowupsOverdue, followups.deliver_overdue),
    Kind(ev.IncidentResolved, incidents.deliver_resolved),
    Kind(ev.UnknownAlert, incidents.deliver_unknown),
    Kind(ev.ReadinessChange, notices.deliver_readiness),
    Kind(ev.WeeklyDigest, notices.deliver_digest),
    Kind(ev.StatuspagePublish, statuspage.deliver_publish),
    Kind(ev.DrillMaintenance, statuspage.deliver_maintenance),
    Kind(ev.ArchivePostmortem, archive.deliver_postmortem),
    Kind(ev.DrillMaintenanceMoved, statuspage.deliver_maintenance_moved),
    Kind(ev.DrillMaintenanceCancelled, statuspage.deliver_maintenance_cancelled),
    Kind(ev.IncidentAlertsResolved, quiet.deliver_alerts_resolved),
    Kind(ev.AlertBatch, batches.ingest_part),
    Kind(ev.PageSend, pages.deliver_page, max_attempts=PAGE_ATTEMPTS, give_up=pages.page_given_up),
    Kind(ev.PageNotice, pages.deliver_notice),
    Kind(ev.FailbackSuggestion, failback.deliver_suggestion),
    Kind(ev.EvacuationBoard, evacuation.deliver_board, evacuation.prepare_board),
    Kind(ev.EvacuationNote, requests.deliver_post, evacuation.prepare_note),
    Kind(ev.ManualStepMessage, manual_steps.deliver, manual_steps.prepare),
    Kind(ev.ApprovalRelaxed, oncall.deliver_relaxed),
    Kind(ev.NoChangeUpdate, oncall.deliver_no_change),
)


def kinds(config: Config) -> dict[str, Kind]:
    """The kinds this deployment delivers: the status page and the archive only when
    configured (their items wait, visible in ``/dr outbox``, otherwise)."""
    out = {k.event.KIND: k for k in KINDS}
    if config.statuspage is None:
        out.pop(ev.StatuspagePublish.KIND)
        out.pop(ev.DrillMaintenance.KIND)
        out.pop(ev.DrillMaintenanceMoved.KIND)
        out.pop(ev.DrillMaintenanceCancelled.KIND)
    if config.archive is None:
        out.pop(ev.ArchivePostmortem.KIND)
    if config.paging is None:
        out.pop(ev.PageSend.KIND)
    return out


def limits(config: Config) -> dict[str, Limit]:
    """Pacing per destination family (the pace key's prefix). The status page is paced per
    HTTP request by its handler, not per item."""
    out = {"slack": Limit(1.0 / config.slack.messages_per_second, config.slack.burst)}
    if config.paging is not None:  # per pager source (pace key pager:SOURCE)
        out["pager"] = Limit(1.0 / config.paging.requests_per_second)
    return out
