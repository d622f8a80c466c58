"""Tables. Times are aware UTC (``UTCDateTime``). State changes of requests and runs are
conditional updates (see ``bot.store.transitions``), never read-modify-write."""
from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import Column, Index, Text, UniqueConstraint, and_, false
from sqlmodel import Field, SQLModel

from bot.store.db import UTCDateTime


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(at: datetime) -> datetime:
    """A time read from the database as UTC-aware (SQLite gives naive ones back)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def _at(**kw):
    return Field(sa_type=UTCDateTime, **kw)


class RequestKind(str, enum.Enum):
    FAILOVER = "failover"
    FAILBACK = "failback"
    DRILL = "drill"
    ROLLBACK = "rollback"
    RESUME = "resume"
    DRILL_SKIP = "drill_skip"
    DRILL_POSTPONE = "drill_postpone"
    EVACUATE = "evacuate"
    """A region evacuation: its services run as child requests (bot.evacuation)."""
    RETURN = "return"
    """The return of an evacuated region's services (failbacks, reverse dependency order)."""


class RequestState(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    ABORTED = "aborted"


OPEN_STATES = (RequestState.PENDING, RequestState.APPROVED, RequestState.RUNNING, RequestState.INTERRUPTED)
FINAL_STATES = (RequestState.SUCCEEDED, RequestState.FAILED, RequestState.ROLLED_BACK, RequestState.DENIED,
                RequestState.EXPIRED, RequestState.CANCELLED, RequestState.ABORTED)


class StepState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class AuditEntry(SQLModel, table=True):
    """Append-only: who did what, when, from where."""

    __tablename__ = "audit_entry"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = _at(default_factory=utcnow, index=True)
    actor: str = Field(index=True)
    actor_name: str = ""
    origin: str = ""
    """slack, shell, cli, http, scheduler, system"""
    action: str = Field(index=True)
    target: str = ""
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))


class ServiceState(SQLModel, table=True):
    """Where a service runs now, when drbot has changed it since the config was written."""

    __tablename__ = "service_state"
    service: str = Field(primary_key=True)
    active_region: str
    standby_region: str
    updated_at: datetime = _at(default_factory=utcnow)
    changed_by_request: Optional[int] = None


class ChangeRequest(SQLModel, table=True):
    __tablename__ = "change_request"
    id: Optional[int] = Field(default=None, primary_key=True)
    kind: RequestKind
    service: str = Field(index=True)
    from_region: str = ""
    to_region: str = ""
    scenario: str = ""
    reason: str = ""
    requester: str
    requester_name: str = ""
    state: RequestState = Field(default=RequestState.PENDING, index=True)
    required_approvals: int = 1
    break_glass: bool = False
    justification: str = ""
    parent_id: Optional[int] = Field(default=None, foreign_key="change_request.id")
    """A rollback or resume request points at the request whose run it continues."""
    created_at: datetime = _at(default_factory=utcnow)
    expires_at: datetime = _at()
    not_before: Optional[datetime] = _at(default=None, nullable=True)
    """A scheduled drill: approved ahead of time, started by the scheduler at this time."""
    occurrence_id: Optional[int] = None
    """The scheduled drill this request runs, skips or postpones."""
    postpone_to: Optional[datetime] = _at(default=None, nullable=True)
    decided_at: Optional[datetime] = _at(default=None, nullable=True)
    closed_at: Optional[datetime] = _at(default=None, nullable=True)
    state_reason: str = ""
    preflight: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    """The pre-flight checks shown to the approvers (JSON of bot.preflight.Preflight)."""
    channel: str = ""
    message_ts: str = ""
    origin: str = ""
    parallel: bool = False
    """Created while the service's policy allowed parallel requests (``approvals.allow_parallel``):
    not held to one open change per service."""
    allow_data_loss: bool = False
    """The requester explicitly accepted data loss (``--allow-data-loss``): a move to a region
    whose database does not replicate from the writer passes the pre-flight (audited)."""


EXCLUSIVE_KINDS = (RequestKind.FAILOVER, RequestKind.FAILBACK, RequestKind.DRILL)
"""The kinds of which a service has at most one open request (rollbacks and resumes continue one)."""
EXCLUSIVE_STATES = (RequestState.PENDING, RequestState.APPROVED, RequestState.RUNNING, RequestState.INTERRUPTED)


def _one_open_change(table) -> object:
    """The rows the unique index ``uq_change_request_one_open`` covers: open failovers,
    failbacks and ad-hoc drills (a scheduled drill, ``not_before`` set, is a calendar entry)
    not created under ``allow_parallel``."""
    c = table.c
    return and_(c.kind.in_([k.name for k in EXCLUSIVE_KINDS]), c.state.in_([s.name for s in EXCLUSIVE_STATES]),
                c.not_before.is_(None), c.parallel.is_(false()))


Index("uq_change_request_one_open", ChangeRequest.__table__.c.service, unique=True,
      sqlite_where=_one_open_change(ChangeRequest.__table__),
      postgresql_where=_one_open_change(ChangeRequest.__table__))


class Approval(SQLModel, table=True):
    """One person's decision on one request. The unique key makes a second click by the
    same person a no-op, whichever replica handles it."""

    __tablename__ = "approval"
    __table_args__ = (UniqueConstraint("request_id", "approver", name="uq_approval_person"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="change_request.id", index=True)
    approver: str
    approver_name: str = ""
    approve: bool = True
    at: datetime = _at(default_factory=utcnow)
    slot: str = ""
    """The approval slot (``approvals.slots``) this approval filled; empty without slots and for a denial."""


Index("uq_approval_slot", Approval.__table__.c.request_id, Approval.__table__.c.slot, unique=True,
      sqlite_where=Approval.__table__.c.slot != "", postgresql_where=Approval.__table__.c.slot != "")


class Run(SQLModel, table=True):
    __tablename__ = "run"
    id: Optional[int] = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="change_request.id", index=True)
    kind: RequestKind
    service: str = Field(index=True)
    state: RequestState = Field(default=RequestState.RUNNING, index=True)
    approved_at: datetime = _at()
    started_at: datetime = _at(default_factory=utcnow)
    ended_at: Optional[datetime] = _at(default=None, nullable=True)
    verified_at: Optional[datetime] = _at(default=None, nullable=True)
    measured_rto_s: Optional[float] = None
    measured_rpo_s: Optional[float] = None
    passed: Optional[bool] = None
    error: str = ""
    progress_ts: str = ""
    owner: str = ""
    """Process that runs it (host:pid); a run left 'running' by a dead owner is interrupted."""
    heartbeat_at: Optional[datetime] = _at(default=None, nullable=True)
    sandbox: bool = False
    """A source it read or acted on is a sandbox (simulated) backend: set when it starts."""
    targets: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    """The service's tier, RTO and RPO as configured when it started (JSON; bot.run_facts)."""
    proof: str = ""
    """What a drill proved (bot.drill_proof): 'moved', 'not_moved' or 'check'; '' otherwise."""
    # Measurements (bot.measurements, docs/measurements.md). ``measured_rto_s`` is from the
    # decision (approval; a scheduled drill: its start) to the last verify passing.
    detected_at: Optional[datetime] = _at(default=None, nullable=True)
    """When the problem was detected: the first alert of the incident open for the service
    when the request was made, or the incident's declaration. None: no incident (a drill)."""
    detection: str = ""
    """What ``detected_at`` is: 'alert' (the first alert) or 'incident' (declared); '' none."""
    rto_from_detection_s: Optional[float] = None
    rto_from_run_start_s: Optional[float] = None
    rto_end: str = ""
    """Where the RTOs end: 'verify' (the last verify passing) or 'run_end' (no step verifies)."""
    rpo_method: str = ""
    """How ``measured_rpo_s`` was found: 'switchover' (0: it waited for replication),
    'lag_before_cutover' (the last lag read before the writer was detached), 'unknown' (it
    could not be read: ``measured_rpo_s`` is None) or 'no_database_move' (the writer did not move)."""
    rpo_detail: str = ""
    """Why an RPO is unknown, or what was read (source, age)."""


class RunStep(SQLModel, table=True):
    __tablename__ = "run_step"
    __table_args__ = (UniqueConstraint("run_id", "position", "attempt", name="uq_step_attempt"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    position: int
    attempt: int = 1
    name: str
    action: str
    rollback: bool = False
    state: StepState = Field(default=StepState.PENDING)
    started_at: Optional[datetime] = _at(default=None, nullable=True)
    ended_at: Optional[datetime] = _at(default=None, nullable=True)
    output: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    error: str = ""


class TimelineEvent(SQLModel, table=True):
    """Everything that happens to an incident or a change request, in order."""

    __tablename__ = "timeline_event"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = _at(default_factory=utcnow, index=True)
    incident_id: Optional[int] = Field(default=None, index=True)
    request_id: Optional[int] = Field(default=None, index=True)
    service: str = ""
    kind: str
    actor: str = ""
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    data: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
