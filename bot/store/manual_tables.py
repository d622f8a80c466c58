"""Manual runbook steps (``manual_answer``): one row per run step waiting on a person, the
one truth its waiting run polls. Empty ``answer``: still waiting; the first conditional
update (``... WHERE answer = ''``) wins, whether a click (done, failed), the step's timeout
(timeout) or a stopping drbot (stopped)."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from bot.store.models import _at

WAITING, DONE, FAILED, TIMEOUT, STOPPED = "", "done", "failed", "timeout", "stopped"
ANSWERS = (DONE, FAILED, TIMEOUT, STOPPED)


class ManualAnswer(SQLModel, table=True):
    __tablename__ = "manual_answer"
    run_step_id: int = Field(primary_key=True, foreign_key="run_step.id")
    request_id: int = Field(index=True)
    """The request whose thread shows the step (the original one for a resume)."""
    run_request_id: int
    """The request that runs it (a resume's own ID); its audit entries and timeline name it."""
    service: str
    position: int
    name: str
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    """The instructions, with the run variables filled in."""
    allowed: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    """JSON list of who may answer: the run's approvers and the step's ``approvers``."""
    channel: str = ""
    message_ts: str = ""
    posted_at: datetime = _at()
    deadline: datetime = _at()
    answer: str = WAITING
    answered_by: str = ""
    answered_by_name: str = ""
    answered_at: Optional[datetime] = _at(default=None, nullable=True)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
