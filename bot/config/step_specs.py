"""Options of the runbook steps that act through a named source beyond traffic and the
database: ``http``, ``wait``, ``kubernetes``, ``argo_workflow`` and ``aws_ssm``.

Text fields may name run variables in braces (``{service}``, ``{to_region}``...), filled in
when the step runs (``fill``): a plain lookup, never evaluated. ``${ENV}`` secrets are
already substituted by the loader. A brace word that is not a run variable is a config
error, so a typo cannot reach a feature-flag service as literal text.
"""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bot.config.models_base import Duration, SlackId, Strict
from integrations.steps import json_check

RUN_VARS = ("service", "kind", "from_region", "to_region", "region", "request_id")
"""``region``: where the step acts (its ``to``); from/to: the request's regions."""
_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
Side = Literal["target", "source"]
"""'target': the region the request moves to; 'source': the region it moves from."""


def check_vars(value: Any) -> Any:
    """``value`` when every ``{name}`` in its text (nested too) is a run variable."""
    if isinstance(value, dict):
        for v in value.values():
            check_vars(v)
    elif isinstance(value, list):
        for v in value:
            check_vars(v)
    elif isinstance(value, str):
        for name in _VAR.findall(value):
            if name not in RUN_VARS:
                raise ValueError(f"{{{name}}} is not a run variable (known: "
                                 + ", ".join("{" + v + "}" for v in RUN_VARS) + ")")
    return value


def fill(value: Any, variables: dict[str, str]) -> Any:
    """``value`` with each ``{name}`` replaced by its run variable, in every string inside."""
    if isinstance(value, dict):
        return {fill(k, variables): fill(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, variables) for v in value]
    if isinstance(value, str):
        return _VAR.sub(lambda m: str(variables.get(m.group(1), m.group(0))), value)
    return value


class Templated(Strict):
    """A model whose text fields may hold run variables."""

    @model_validator(mode="before")
    @classmethod
    def _vars(cls, data: Any) -> Any:
        return check_vars(data)


class _Answered(Templated):
    """An HTTP call whose answer is checked: its status, and an assertion on its JSON."""

    headers: dict[str, str] = {}
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    expect: str | None = None
    """An assertion on the JSON answer, e.g. ``data.state == "on"``."""

    @field_validator("expect")
    @classmethod
    def _assertion(cls, value: str | None) -> str | None:
        if value is not None:
            json_check.parse(value)
        return value


class HttpSpec(_Answered):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(min_length=1)
    """An absolute http(s) URL, or a path joined to the source's base_url."""
    body: dict[str, Any] | list[Any] | str | None = None
    """A mapping or list is sent as JSON; text as given."""
    retries: int = Field(default=3, ge=0, le=10)
    """Further tries after a 5xx, a 429 or no answer, within the step's timeout."""
    backoff: Duration = timedelta(seconds=1)
    """The first pause between tries; doubled each time (a Retry-After wins)."""


class Condition(Strict):
    """What must hold, read from the service's own sources."""

    healthy: Side | None = None
    """The health source of that region reports healthy."""
    lag_below: Duration | None = None
    traffic_in: Side | None = None
    """The traffic switch reports that region as taking traffic."""
    writer_in: Side | None = None
    """The database reports that region as the writer."""

    @model_validator(mode="after")
    def _something(self) -> "Condition":
        if not any((self.healthy, self.lag_below, self.traffic_in, self.writer_in)):
            raise ValueError("a condition needs at least one of healthy, lag_below, traffic_in, writer_in")
        return self


class HttpCheck(_Answered):
    """An HTTP check read as a condition (a ramp's ``verify``): one GET or HEAD through an
    ``http`` source, whose answer must have an expected status and pass ``expect``."""

    source: str = Field(min_length=1)
    """A source of kind ``http`` (its base_url, headers and TLS apply)."""
    method: Literal["GET", "HEAD"] = "GET"
    url: str = Field(min_length=1)
    """An absolute http(s) URL, or a path joined to the source's base_url; run variables allowed."""


class RampVerify(Condition):
    """A ramp's verify: a condition, which may also call an HTTP check."""

    http: HttpCheck | None = None
    """Read with the rest: an unexpected status, a failed ``expect`` or no answer fails it."""

    @model_validator(mode="after")
    def _something(self) -> "RampVerify":  # replaces Condition's: http alone is enough here
        if not any((self.healthy, self.lag_below, self.traffic_in, self.writer_in, self.http)):
            raise ValueError("a ramp's verify needs at least one of healthy, lag_below, writer_in, http")
        return self


class WaitSpec(Strict):
    duration: Duration | None = None
    """Wait this long, then succeed."""
    until: Condition | None = None
    """Wait until this holds (for ``hold``), failing at the step's timeout."""
    hold: Duration = timedelta(0)
    """How long ``until`` must hold without a break."""
    interval: Duration = timedelta(seconds=5)
    """Pause between reads of ``until``."""

    @model_validator(mode="after")
    def _one(self) -> "WaitSpec":
        if (self.duration is None) == (self.until is None):
            raise ValueError("a wait needs exactly one of duration (e.g. 5m) or until (a condition)")
        if self.hold and self.until is None:
            raise ValueError("hold only applies with until")
        return self


class RampStage(Strict):
    percent: float = Field(gt=0, le=100)
    """The share of the traffic the step's region takes at this stage; the region it moves
    from takes the rest."""
    hold: Duration | None = None
    """How long this stage holds before the next; default: the ramp's ``hold``."""


class RampSpec(Strict):
    """A traffic shift in stages (``traffic.shift`` with ``ramp:``), through the traffic
    source's weights: e.g. 5 %, then 50 %, then 100 %, each held with its verify read."""

    stages: list[RampStage] = Field(min_length=1)
    """Percentages, rising, ending at 100: ``[5, 50, 100]``, or ``{percent: 5, hold: 10m}`` items."""
    hold: Duration = timedelta(minutes=5)
    """How long each stage but the last holds before the next."""
    verify: RampVerify | None = None
    """Read through each hold every ``interval``: the first read that fails stops the ramp."""
    interval: Duration = timedelta(seconds=15)
    """Pause between reads of ``verify`` during a hold."""

    @field_validator("stages", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"percent": v} if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
        return value

    @model_validator(mode="after")
    def _rising(self) -> "RampSpec":
        percents = [st.percent for st in self.stages]
        if any(b <= a for a, b in zip(percents, percents[1:])):
            raise ValueError(f"stages must rise: {', '.join(f'{p:g}' for p in percents)}")
        if percents[-1] != 100:
            raise ValueError(f"the last stage must be 100 (all the traffic), not {percents[-1]:g}")
        if self.verify is not None and self.verify.traffic_in:
            raise ValueError("a ramp's verify cannot read traffic_in: traffic is split between the stages "
                             "(read it in the step's own verify, after the last stage)")
        return self

    def hold_of(self, stage: RampStage) -> timedelta:
        return stage.hold if stage.hold is not None else self.hold

    @property
    def held(self) -> timedelta:
        """The holds of every stage but the last: the least time the ramp takes."""
        return sum((self.hold_of(st) for st in self.stages[:-1]), timedelta(0))


class KubernetesSpec(Templated):
    kind: Literal["Deployment", "StatefulSet", "Ingress", "Service", "ConfigMap"] = "Deployment"
    name: str = Field(min_length=1)
    namespace: str = Field(default="default", min_length=1)
    replicas: int | None = Field(default=None, ge=0, le=10000)
    """kubernetes.scale: the replica count to set."""
    factor: float | None = Field(default=None, gt=0, le=100)
    """kubernetes.scale: multiply the current replicas (rounded up)."""
    patch: dict[str, Any] | None = None
    """kubernetes.patch: the patch, as a mapping."""
    patch_type: Literal["strategic", "merge"] = "strategic"
    wait: bool = True
    """Scale and restart: wait until the rollout is available, within the step's timeout."""


class ArgoSpec(Templated):
    template: str = Field(min_length=1)
    """The WorkflowTemplate to submit a Workflow from."""
    cluster_scope: bool = False
    """True: a ClusterWorkflowTemplate."""
    parameters: dict[str, str] = {}
    interval: Duration = timedelta(seconds=5)
    """Pause between reads of the workflow's phase."""


class SsmSpec(Templated):
    document: str = Field(min_length=1)
    """The Automation document (name or ARN)."""
    document_version: str | None = None
    parameters: dict[str, list[str]] = {}
    """Name -> values; a single value is a list of one."""
    interval: Duration = timedelta(seconds=5)
    """Pause between reads of the execution's status."""

    @field_validator("parameters", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value


class ManualSpec(Templated):
    """A step a person does: posted in the run's thread with Done and Failed buttons."""

    text: str = Field(min_length=1, max_length=2000)
    """What the person does (mrkdwn; run variables allowed)."""
    approvers: list[SlackId] = []
    """Besides the run's approvers: Slack users (U..., W...) and user groups (S...) who may answer."""
