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

from bot.config.models_base import Duration, Strict
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


class HttpSpec(Templated):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(min_length=1)
    """An absolute http(s) URL, or a path joined to the source's base_url."""
    headers: dict[str, str] = {}
    body: dict[str, Any] | list[Any] | str | None = None
    """A mapping or list is sent as JSON; text as given."""
    expect_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    expect: str | None = None
    """An assertion on the JSON answer, e.g. ``data.state == "on"``."""
    retries: int = Field(default=3, ge=0, le=10)
    """Further tries after a 5xx, a 429 or no answer, within the step's timeout."""
    backoff: Duration = timedelta(seconds=1)
    """The first pause between tries; doubled each time (a Retry-After wins)."""

    @field_validator("expect")
    @classmethod
    def _assertion(cls, value: str | None) -> str | None:
        if value is not None:
            json_check.parse(value)
        return value


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
