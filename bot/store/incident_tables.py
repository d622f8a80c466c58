"""Tables of alerts, incidents, the alert inbox (payloads accepted, not yet processed) and
the outbox (side effects that must not be lost)."""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.store.models import _at, utcnow


class IncidentStatus(str, enum.Enum):
    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


class Alert(SQLModel, table=True):
    """One alert, deduplicated by fingerprint: a repeat of the same status only counts."""

    __tablename__ = "alert"
    __table_args__ = (UniqueConstraint("fingerprint", name="uq_alert_fingerprint"),
                      Index("ix_alert_incident_status_signal", "incident_id", "status", "signal"))
    id: Optional[int] = Field(default=None, primary_key=True)
    fingerprint: str
    source: str
    """alertmanager, sns, webhook, slack"""
    service: Optional[str] = Field(default=None, index=True)
    """None: the alert names no configured service (kept and reported, never dropped)."""
    service_hint: str = ""
    region: str = ""
    severity: str = "warning"
    signal: str = "other"
    """health, lag, synthetic, slo, other: distinct classes back a failover suggestion."""
    status: str = "firing"
    summary: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    labels: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    links: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    starts_at: datetime = _at(default_factory=utcnow)
    ends_at: Optional[datetime] = _at(default=None, nullable=True)
    received_at: datetime = _at(default_factory=utcnow)
    last_seen_at: datetime = _at(default_factory=utcnow)
    times_seen: int = 1
    incident_id: Optional[int] = Field(default=None, index=True)
    inbox_id: Optional[int] = None
    """The newest accepted notification (``alert_inbox.id``) applied to it: one older than
    that, processed later by another replica, cannot set an older status (None: not from
    the inbox, e.g. a Slack alert channel)."""


class AlertInbox(SQLModel, table=True):
    """An alert notification accepted over HTTP: its raw body, stored in one INSERT before
    the 200, processed later in batches by ``bot.alerts.drain`` (the row is deleted in the
    transaction that stores its alerts; a batch's rows are locked by that transaction, FOR
    UPDATE SKIP LOCKED on PostgreSQL, so replicas share the drain and a crash releases
    them). A payload that fails to process keeps its error;
    after ``bot.alerts.drain.MAX_ATTEMPTS`` it is ``failed`` and skipped by the drain."""

    __tablename__ = "alert_inbox"
    __table_args__ = (Index("ix_alert_inbox_state_id", "state", "id"),
                      {"sqlite_autoincrement": True})  # ids never reused once processed rows are deleted
    id: Optional[int] = Field(default=None, primary_key=True)
    endpoint: str
    """alertmanager, webhook, sns: which normaliser reads ``body``."""
    received_at: datetime = _at(default_factory=utcnow)
    body: str = Field(sa_column=Column(Text, nullable=False))
    alerts: int = 0
    """How many alerts the payload held when it was accepted."""
    done: int = 0
    """How many of them are stored: a payload larger than a batch is processed in parts,
    each part's transaction moving this on (a crash resumes at the first part not done)."""
    state: str = "pending"
    """pending, failed."""
    attempts: int = 0
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Incident(SQLModel, table=True):
    __tablename__ = "incident"
    id: Optional[int] = Field(default=None, primary_key=True)
    title: str
    severity: str = "sev2"
    status: IncidentStatus = Field(default=IncidentStatus.INVESTIGATING, index=True)
    services: str = "[]"
    """JSON list of service names."""
    channel_id: str = ""
    channel_name: str = ""
    opened_by: str = ""
    opened_at: datetime = _at(default_factory=utcnow)
    detected_at: Optional[datetime] = _at(default=None, nullable=True)
    mitigated_at: Optional[datetime] = _at(default=None, nullable=True)
    resolved_at: Optional[datetime] = _at(default=None, nullable=True)
    last_update_at: Optional[datetime] = _at(default=None, nullable=True)
    """When a status update was last published (for the reminder)."""
    statuspage_id: str = ""
    failover_suggested: bool = False
    reminded_at: Optional[datetime] = _at(default=None, nullable=True)
    alerts_ts: str = ""
    """The alert digest message in the incident channel, updated in place."""
    summary_ts: str = ""
    """The pinned summary in the incident channel (severity, roles, readiness), updated in place."""
    commander_called_at: Optional[datetime] = _at(default=None, nullable=True)
    """When the channel was told that the incident has no commander (once)."""
    reviewed_at: Optional[datetime] = _at(default=None, nullable=True)
    """When someone said the postmortem review was held (``/dr followup reviewed``)."""
    review_reminded_at: Optional[datetime] = _at(default=None, nullable=True)
    """When the channel was reminded that the review is due (once)."""


class OutboxState(str, enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    SKIPPED = "skipped"


class OutboxItem(SQLModel, table=True):
    """Written in the same transaction as the state change that causes it; delivered by the
    worker in order per ``stream``, with retries, pacing and an idempotency key."""

    __tablename__ = "outbox_item"
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_outbox_key"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str
    stream: str = Field(index=True)
    """Items of one stream are delivered in id order, e.g. 'statuspage:incident:12'."""
    idempotency_key: str
    payload: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    state: OutboxState = Field(default=OutboxState.PENDING, index=True)
    attempts: int = 0
    next_attempt_at: datetime = _at(default_factory=utcnow, index=True)
    last_error: str = ""
    created_at: datetime = _at(default_factory=utcnow)
    delivered_at: Optional[datetime] = _at(default=None, nullable=True)
    result: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    claimed_by: str = ""
    claimed_until: Optional[datetime] = _at(default=None, nullable=True)
    pace_key: str = ""
    """The destination whose rate limit it shares (``slack:C123``); empty: not paced."""
    coalesce_key: Optional[str] = Field(default=None, index=True)
    """A newer event with this key replaces this one while it is undelivered."""


class PaceSlot(SQLModel, table=True):
    """One rate-limited destination, shared by every replica on the database: the
    theoretical arrival time of its next request (GCRA), in epoch seconds."""

    __tablename__ = "pace_slot"
    key: str = Field(primary_key=True)
    tat: float = 0.0


class PreviewDecision(SQLModel, table=True):
    """The one decision (publish or skip) on a status-page preview; the primary key makes
    a second click, on any replica, lose."""

    __tablename__ = "preview_decision"
    item_id: int = Field(primary_key=True)
    decision: str
    decided_by: str
    at: datetime = _at(default_factory=utcnow)


class OpenIncidentService(SQLModel, table=True):
    """A service's one open incident: claimed (INSERT ... ON CONFLICT DO NOTHING) when an
    incident opens for it, released when that incident resolves. The primary key makes a
    second incident for the service, opened at the same moment on any replica, lose; the
    loser joins the winner's incident."""

    __tablename__ = "open_incident_service"
    service: str = Field(primary_key=True)
    incident_id: int = Field(index=True)
