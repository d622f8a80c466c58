"""Typed outbox events: what the core asks to happen outside the process.

Each event is a small frozen pydantic model, validated when it is queued and again when it
is delivered. It says, from its own fields:

- ``stream()``: items of one stream are delivered one after the other in queue order (a
  request's message before the progress posted in its thread);
- ``pace()``: the destination whose rate limit it shares (``slack:C123``,
  ``statuspage:page``), paced for all replicas through the database (``bot.outbox.pacing``);
- ``coalesce()``: a newer event with the same key replaces an undelivered older one (the
  handlers render the state at delivery time, so one delivery shows the newest state);
- ``key()``: an idempotency key, when queuing the same thing twice must be a no-op.

The handler of each kind is declared in ``bot.delivery.registry``.

The events live in ``base`` (``Event``), ``changes`` (change requests, runs, drills),
``incidents`` (incidents, their posts, status page, follow-ups, alert batches) and
``notices`` (the watch, the digest, paging, the failback assistant); this module names
them all and declares ``EVENTS``, the registered kinds.
"""
from __future__ import annotations

from bot.events.base import Event, slack_pace
from bot.events.changes import (
    RequestEvent, RequestMessage, RunProgress, DrillReport, RunInterrupted, BreakGlassNotice,
    RequestWithdrawn, DrillPost, DrillMaintenance, DrillMaintenanceMoved, DrillMaintenanceCancelled,
)
from bot.events.evacuations import EvacuationBoard, EvacuationNote
from bot.events.incidents import (
    IncidentEvent, IncidentChannel, IncidentAlerts, FailoverSuggestion, StatuspagePreview, IncidentReminder,
    IncidentSummary, CommanderMissing, IncidentResolved, UnknownAlert, StatuspagePublish, ArchivePostmortem,
    OpsUpdate, StatuspageLinked, FollowupIssue, ReviewReminder, FollowupsOverdue, IncidentAlertsResolved,
    AlertBatch,
)
from bot.events.notices import (
    ReadinessChange, WeeklyDigest, PageSend, PageNotice, FailbackSuggestion,
)
from bot.events.manual_steps import ManualStepMessage
from bot.events.oncall import ApprovalRelaxed, NoChangeUpdate

EVENTS: tuple[type[Event], ...] = (
    RequestMessage, RunProgress, DrillReport, RunInterrupted, BreakGlassNotice, RequestWithdrawn, DrillPost,
    DrillMaintenance, IncidentChannel, IncidentAlerts, FailoverSuggestion, StatuspagePreview,
    IncidentReminder, IncidentSummary, CommanderMissing, FollowupIssue, ReviewReminder, FollowupsOverdue,
    OpsUpdate, StatuspageLinked, IncidentResolved, UnknownAlert, StatuspagePublish, ArchivePostmortem,
    ReadinessChange, WeeklyDigest, DrillMaintenanceMoved, DrillMaintenanceCancelled, IncidentAlertsResolved,
    AlertBatch, PageSend, PageNotice, FailbackSuggestion, ManualStepMessage,
    ApprovalRelaxed, NoChangeUpdate,
    EvacuationBoard, EvacuationNote,
)
BY_KIND: dict[str, type[Event]] = {e.KIND: e for e in EVENTS}

