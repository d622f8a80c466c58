"""Runbook config: ordered steps, each an integration action with a timeout, an optional
verify (a condition polled until it holds) and an optional rollback."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from bot.config.models_base import Duration, Strict
from bot.durations import format_duration
from bot.config.step_specs import (
    ArgoSpec, Condition, HttpSpec, KubernetesSpec, ManualSpec, RampSpec, Side, SsmSpec, WaitSpec,
)

Action = Literal["traffic.shift", "database.promote", "database.switchover", "database.failover", "check",
                 "http", "wait", "kubernetes.scale", "kubernetes.patch", "kubernetes.restart",
                 "argo_workflow", "aws_ssm", "manual"]
ACTIONS = get_args(Action)
UndoAction = Literal["traffic.shift", "database.promote", "database.switchover", "http", "kubernetes.scale",
                     "kubernetes.patch", "kubernetes.restart", "argo_workflow", "aws_ssm"]
"""What can undo a step: a check, a wait or a data-losing failover cannot undo anything."""
SPEC_KEYS = ("http", "wait", "kubernetes", "argo_workflow", "aws_ssm", "manual")
"""Actions whose options live under the key named like their capability."""
MOVES = {"traffic.shift": "traffic", "database.promote": "writer", "database.switchover": "writer",
         "database.failover": "writer"}
"""The actions that move something a drill must move to prove a failover, and what they move."""
MANUAL_TIMEOUT = timedelta(hours=1)
"""The default ``timeout`` of a ``manual`` step."""


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


RESTORE_ACTIONS = ("argo_workflow", "aws_ssm", "http")
"""Actions that can restore a backup (a workflow, an automation, an internal tool's API)."""


class Restore(Strict):
    """Marks the step that restores a backup: its drill scenario is a restore test
    (bot/restore_drill.py), reported with what was restored, from which backup, how long
    it took and whether the checks passed."""

    backup: str = Field(min_length=1)
    """The name of an entry of the service's ``backups:``."""
    backup_id: str | None = None
    """The step's output that names the backup it restored (an Argo output parameter, an SSM
    output ``Step.Name``); unset: the report says which backup was newest then is unknown."""
    backup_time: str | None = None
    """The step's output that says when that backup was taken (ISO-8601 or Unix seconds)."""


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
    """A ``traffic.shift`` with ``ramp`` defaults to ``{action: traffic.shift}``: all the traffic back."""
    wait: WaitSpec | None = None
    ramp: RampSpec | None = None
    """``traffic.shift`` only: move the traffic in stages through the source's weights (bot/ramp.py)."""
    manual: ManualSpec | None = None
    """A ``manual`` step: what a person does, and who besides the run's approvers may answer."""
    restore: Restore | None = None
    """This step restores a backup: its drill scenario is a restore test (docs/config.md)."""

    @model_validator(mode="before")
    @classmethod
    def _manual_timeout(cls, data: Any) -> Any:
        """A person gets an hour unless the step says otherwise (other steps: 10 minutes)."""
        if isinstance(data, dict) and data.get("action") == "manual" and "timeout" not in data:
            return data | {"timeout": MANUAL_TIMEOUT}
        return data

    @model_validator(mode="before")
    @classmethod
    def _ramp_rollback(cls, data: Any) -> Any:
        """A ramp can always be undone: all the traffic back to the source, unless it says otherwise."""
        if isinstance(data, dict) and data.get("ramp") is not None and data.get("action") == "traffic.shift" \
                and "rollback" not in data:
            return data | {"rollback": {"action": "traffic.shift"}}
        return data

    @model_validator(mode="after")
    def _coherent(self) -> "Step":
        self._kind_options(self.action)
        if self.ramp is not None and self.action != "traffic.shift":
            raise ValueError(f"ramp only applies to traffic.shift, not {self.action}")
        if self.ramp is not None and self.ramp.held >= self.timeout:
            raise ValueError(f"the ramp holds its stages for {format_duration(self.ramp.held)} in all, not less "
                             f"than the step's timeout ({format_duration(self.timeout)}): raise timeout")
        if self.restore is not None and self.action not in RESTORE_ACTIONS:
            raise ValueError(f"restore marks a step that restores a backup ({', '.join(RESTORE_ACTIONS)}), "
                             f"not {self.action}")
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
        return None if self.action in ("check", "wait", "manual") else self.action.split(".")[0]

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
    if not any(st.moves for st in steps) and any(st.restore is not None for st in steps):
        return [((), f"drill scenario {scenario!r} is a restore test: its runs are reported as restore tests "
                     "(restore_test_max_age), recorded as checks, and do not refresh drill_max_age")]
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


RAMP_SOURCES = ("route53_failover with policy: weighted, global_accelerator, cloudflare_lb with mode: weights, "
                "or sandbox")
WEIGHTED_BY = {"route53_failover": ("policy", "weighted"), "cloudflare_lb": ("mode", "weights")}
"""Kinds that split traffic by weight only with one option set: kind -> (option, value)."""


def splits_by_weight(kind: str, options: Any) -> bool:
    """A source of ``kind`` with ``options`` can split traffic by weight as configured (e.g.
    Route 53 only with ``policy: weighted``); kinds without such an option always can."""
    option, value = WEIGHTED_BY.get(kind, (None, None))
    return option is None or getattr(options, option, value) == value


def ramp_problem(source: str, weighs: str | None, kind: str | None, options: Any) -> str | None:
    """Why the step's ``ramp`` cannot run through ``source``, or None. ``weighs``: the
    loader's answer to whether the source has the capability WEIGHTS (None: it has, or its
    own problem is already reported); ``kind``/``options``: the source's, None when broken."""
    if weighs:
        return f"{weighs}: a ramp needs a source that splits traffic by weight ({RAMP_SOURCES})"
    if options is None or splits_by_weight(kind or "", options):
        return None
    option, value = WEIGHTED_BY[kind]
    return (f"source {source!r} (kind {kind}) has {option}: {getattr(options, option)}, which moves traffic all "
            f"at once; a ramp needs {option}: {value} on it")
