"""Runbook config: ordered steps, each an integration action with a timeout, an optional
verify (a condition polled until it holds) and an optional rollback."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from bot.config.models_base import Duration, Strict
from bot.config.step_specs import ArgoSpec, Condition, HttpSpec, KubernetesSpec, Side, SsmSpec, WaitSpec

Action = Literal["traffic.shift", "database.promote", "database.switchover", "database.failover", "check",
                 "http", "wait", "kubernetes.scale", "kubernetes.patch", "kubernetes.restart",
                 "argo_workflow", "aws_ssm"]
ACTIONS = get_args(Action)
UndoAction = Literal["traffic.shift", "database.promote", "database.switchover", "http", "kubernetes.scale",
                     "kubernetes.patch", "kubernetes.restart", "argo_workflow", "aws_ssm"]
"""What can undo a step: a check, a wait or a data-losing failover cannot undo anything."""
SPEC_KEYS = ("http", "wait", "kubernetes", "argo_workflow", "aws_ssm")
"""Actions whose options live under the key named like their capability."""
MOVES = {"traffic.shift": "traffic", "database.promote": "writer", "database.switchover": "writer",
         "database.failover": "writer"}
"""The actions that move something a drill must move to prove a failover, and what they move."""


class Verify(Condition):
    within: Duration = timedelta(minutes=2)
    interval: Duration = timedelta(seconds=5)

    def reads(self, moved: str, side: str) -> bool:
        """This verify reads back that ``moved`` ('traffic' or 'writer') is in ``side``."""
        return (self.traffic_in if moved == "traffic" else self.writer_in) == side


class KindOptions(Strict):
    """The options of the step kinds that have some, each under its own key."""

    http: HttpSpec | None = None
    kubernetes: KubernetesSpec | None = None
    argo_workflow: ArgoSpec | None = None
    aws_ssm: SsmSpec | None = None

    def spec(self) -> Any:
        """The options of this step's kind (None for actions without any)."""
        key = self.action.split(".")[0]  # type: ignore[attr-defined]
        return getattr(self, key, None) if key in SPEC_KEYS else None

    def _kind_options(self, action: str, undo: bool = False) -> None:
        key = action.split(".")[0]
        for other in SPEC_KEYS:
            if other != key and getattr(self, other, None) is not None:
                raise ValueError(f"{other} options do not apply to action {action}")
        spec = getattr(self, key, None) if key in SPEC_KEYS else None
        if key in SPEC_KEYS and spec is None:
            raise ValueError(f"action {action} needs its options under {key}: (see docs/config.md, Steps)")
        if key == "kubernetes":
            _kubernetes_fits(action, spec, undo)


def _kubernetes_fits(action: str, k: KubernetesSpec, undo: bool) -> None:
    verb = action.split(".")[1]
    workload = k.kind in ("Deployment", "StatefulSet")
    if verb in ("scale", "restart") and not workload:
        raise ValueError(f"{action} works on a Deployment or StatefulSet, not a {k.kind}")
    if verb == "scale" and k.replicas is not None and k.factor is not None:
        raise ValueError("set replicas or factor, not both")
    if verb == "scale" and k.replicas is None and k.factor is None and not undo:
        raise ValueError("kubernetes.scale needs replicas (a count) or factor (a multiplier)")
    if verb != "scale" and (k.replicas is not None or k.factor is not None):
        raise ValueError(f"replicas and factor only apply to kubernetes.scale, not {action}")
    if (verb == "patch") != (k.patch is not None):
        raise ValueError("kubernetes.patch needs a patch" if verb == "patch"
                         else f"patch only applies to kubernetes.patch, not {action}")


class Rollback(KindOptions):
    action: UndoAction
    """A kubernetes.scale without replicas or factor restores the replicas read before the step."""
    source: str | None = None
    to: Side | None = None
    """Default: 'source' for traffic and database moves (back where the request came from);
    for the other kinds, the region the step acted in."""

    @model_validator(mode="after")
    def _coherent(self) -> "Rollback":
        self._kind_options(self.action, undo=True)
        return self

    def as_step(self, done: "Step", recorded: dict[str, Any] | None = None) -> "Step":
        """The step that undoes ``done``, whose run recorded ``recorded`` (its output)."""
        moves = self.action.split(".")[0] in ("traffic", "database")
        fields: dict[str, Any] = {"name": f"Undo: {done.name}", "action": self.action, "source": self.source,
                                  "timeout": done.timeout, "to": self.to or ("source" if moves else done.to)}
        key = self.action.split(".")[0]
        if key in SPEC_KEYS:  # same kind: the same source unless it names another
            fields["source"] = self.source or (done.source if key == done.action.split(".")[0] else None)
            spec = self.spec()
            if self.action == "kubernetes.scale" and spec.replicas is None and spec.factor is None:
                done_before = recorded or {}  # a failed attempt's notes first: a later attempt read the scaled count
                before = done_before.get("replicas_before", (done_before.get("details") or {}).get("replicas_before"))
                spec = spec.model_copy(update={"replicas": before})
            fields[key] = spec
        return Step.model_construct(**fields)  # validated as a rollback; replicas may be unknown


class Step(KindOptions):
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
    wait: WaitSpec | None = None

    @model_validator(mode="after")
    def _coherent(self) -> "Step":
        self._kind_options(self.action)
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
        return None if self.action in ("check", "wait") else self.action.split(".")[0]

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
