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
MOVES = {"traffic.shift": "traffic", "database.promote": "writer", "database.switchover": "writer",
         "database.failover": "writer"}
"""The actions that move something a drill must move to prove a failover, and what they move."""


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

    def reads(self, moved: str, side: str) -> bool:
        """This verify reads back that ``moved`` ('traffic' or 'writer') is in ``side``."""
        return (self.traffic_in if moved == "traffic" else self.writer_in) == side

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

    @property
    def moves(self) -> str | None:
        """'traffic' or 'writer' for a step that moves it; None for a check."""
        return MOVES.get(self.action)


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


def confirmed_by(steps: list[Step], i: int) -> int | None:
    """The index of the first step, ``i`` itself or a later one, whose verify reads back what
    step ``i`` moves, in the region it moves it to; None when no verify does."""
    moved, side = steps[i].moves, steps[i].to
    for j in range(i, len(steps)):
        if moved and steps[j].verify is not None and steps[j].verify.reads(moved, side):
            return j
    return None


def drill_notes(scenario: str, steps: list[Step]) -> list[tuple[tuple[int, ...], str]]:
    """What a drill scenario can prove, said at load time: a scenario of checks only is
    recorded as a check; a move that no verify reads back cannot make a drill pass."""
    if not any(st.moves for st in steps):
        return [((), f"drill scenario {scenario!r} has only check steps: its runs are recorded as checks, "
                     "never pass as a drill and do not refresh drill_max_age; add a step that moves traffic "
                     "or the writer (traffic.shift, database.switchover) with a verify that reads it back "
                     "(traffic_in, writer_in)")]
    out = []
    for i, st in enumerate(steps):
        if st.moves and confirmed_by(steps, i) is None:
            key = "traffic_in" if st.moves == "traffic" else "writer_in"
            out.append(((i,), f"{st.action} to {st.to} is not read back by any verify ({key}: {st.to} on this "
                              "step or a later one): this move cannot make the drill pass"))
    return out
