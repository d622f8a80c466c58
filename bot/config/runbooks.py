"""Runbook config: ordered steps, each an integration action with a timeout, an optional
verify (a condition polled until it holds) and an optional rollback."""
from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from bot.config.models_base import Duration, Strict

ACTIONS = ("traffic.shift", "database.promote", "database.switchover", "database.failover", "check")
Action = Literal["traffic.shift", "database.promote", "database.switchover", "database.failover", "check"]
Side = Literal["target", "source"]
"""'target': the region the request moves to; 'source': the region it moves from."""


class Verify(Strict):
    healthy: Side | None = None
    """The health source of that region reports healthy."""
    lag_below: Duration | None = None
    traffic_in: Side | None = None
    """The traffic switch reports that region as taking traffic."""
    writer_in: Side | None = None
    """The database reports that region as the writer."""
    within: Duration = timedelta(minutes=2)
    interval: Duration = timedelta(seconds=5)

    @model_validator(mode="after")
    def _something(self) -> "Verify":
        if not any((self.healthy, self.lag_below, self.traffic_in, self.writer_in)):
            raise ValueError("a verify needs at least one of healthy, lag_below, traffic_in, writer_in")
        return self


class Rollback(Strict):
    action: Literal["traffic.shift", "database.promote", "database.switchover"]
    """Undo by moving back; a data-losing failover or a check cannot undo anything."""
    source: str | None = None
    to: Side = "source"


class Step(Strict):
    name: str = Field(min_length=1, max_length=120)
    action: Action
    source: str | None = None
    """The backend; default: the service's traffic or database source, by the action."""
    to: Side = "target"
    allow_data_loss: bool = False
    """Only for database.failover, which is refused without it."""
    timeout: Duration = timedelta(minutes=10)
    verify: Verify | None = None
    rollback: Rollback | None = None

    @model_validator(mode="after")
    def _coherent(self) -> "Step":
        if self.action == "check" and self.verify is None:
            raise ValueError("a 'check' step needs a verify")
        if self.allow_data_loss and self.action != "database.failover":
            raise ValueError("allow_data_loss only applies to database.failover")
        if self.action == "database.failover" and not self.allow_data_loss:
            raise ValueError("database.failover can lose data: set allow_data_loss: true to allow it, "
                             "or use database.switchover")
        return self

    @property
    def capability(self) -> str | None:
        return None if self.action == "check" else self.action.split(".")[0]


class Runbooks(Strict):
    failover: list[Step] = []
    failback: list[Step] = []
    """Default: the failover steps, in the same order; 'target' and 'source' are relative
    to the request, so they act in the opposite direction."""
    drill: dict[str, list[Step]] = {}
    """Scenarios by name; 'default' is used when /dr drill names none."""

    def steps(self, kind: str, scenario: str | None = None) -> list[Step]:
        if kind == "failover":
            return self.failover
        if kind == "failback":
            return self.failback or self.failover
        if kind == "drill":
            return self.drill.get(scenario or "default", [])
        return []
