"""Config of paging (``paging:``): which pager pages for incidents, which severities
page, the named targets of ``/dr page TARGET``, and the secrets of the pagers' webhooks
(acknowledgements). ``check_paging`` cross-checks it against the sources and services
when the file is loaded."""
from __future__ import annotations

import difflib
from typing import Literal

from datetime import timedelta

from pydantic import Field, SecretStr, field_validator

from bot.config.incidents import IncidentSeverity
from bot.config.models_base import Duration, Name, SlackId, Strict
from integrations import registry
from integrations.base import PAGER
from integrations.pager.opsgenie import Responder
from integrations.pager.pagerduty import check_routing_key

Loc = tuple  # a location in the file, as bot.config.loader uses it
WHY = Literal["opened", "severity", "resolved"]


class PagingTarget(Strict):
    """Someone ``/dr page NAME`` pages: a pager source with its own route."""

    source: str | None = None
    """A source of kind pagerduty or opsgenie; default: ``paging.source``."""
    routing_key: SecretStr | None = None
    """PagerDuty: this target's routing key (``${VAR}``)."""
    responders: list[Responder] = []
    """Opsgenie: this target's teams, users, escalations or schedules."""
    service: Name | None = None
    """Page as this drbot service (its route in the source), when no routing_key or responders are given."""
    description: str = ""
    """Who this is, shown by ``/dr page`` with no target."""

    @field_validator("routing_key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_routing_key(value.get_secret_value())
        return value


class OnCallSchedule(Strict):
    """A pager schedule whose current on-call person can fill an ``on_call`` approval slot."""

    source: str | None = None
    """A source of kind pagerduty (needs its ``api_token``) or opsgenie; default: ``paging.source``."""
    schedule: str = Field(min_length=1)
    """PagerDuty: the schedule's ID (``P1ABC23``); Opsgenie: its name or id."""
    description: str = ""


class PagingConfig(Strict):
    source: str
    """The pager of incidents: a source of kind pagerduty or opsgenie."""
    severities: list[IncidentSeverity] = ["sev1", "sev2"]
    """Incident severities that page: when opened, when raised into one, resolved with the incident."""
    targets: dict[Name, PagingTarget] = {}
    webhook_secret: SecretStr | None = None
    """PagerDuty v3 webhook signing secret; unset: ``POST /pager/pagerduty`` is off."""
    opsgenie_webhook_token: SecretStr | None = None
    """Token Opsgenie's webhook sends in ``X-Drbot-Token``; unset: ``POST /pager/opsgenie`` is off."""
    requests_per_second: float = Field(default=2.0, gt=0, le=50)
    """Pace of requests to each pager source, shared by every replica."""
    schedules: dict[Name, OnCallSchedule] = {}
    """Named on-call schedules, for ``approvals.slots[].on_call``."""
    people: dict[str, SlackId] = {}
    """Pager identity (PagerDuty user e-mail, Opsgenie username) -> Slack user ID: who on call is who in Slack."""
    on_call_cache: Duration = timedelta(seconds=60)
    """How long a schedule's on-call read is reused before the pager is asked again."""


def _hint(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _pager(config, name: str, broken) -> str | None:
    """Why source ``name`` cannot page, or None."""
    if name in broken:
        return None
    spec = config.sources.get(name)
    if spec is None:
        return f"no source named {name!r}{_hint(name, config.sources)}"
    try:
        cls = registry.backend_class(spec.kind)
    except KeyError:
        return None  # its own problem is already reported
    if PAGER not in cls.capabilities:
        return f"source {name!r} (kind {cls.kind}) cannot page; use a source of kind pagerduty or opsgenie"
    return None


def _slot_lists(config):
    """(location, slots) of every ``approvals.slots`` in the file."""
    yield ("approvals", "slots"), config.approvals.slots
    for i, svc in enumerate(config.services):
        if svc.approvals is not None and svc.approvals.slots is not None:
            yield ("services", i, "approvals", "slots"), svc.approvals.slots
    if config.evacuation.approvals is not None and config.evacuation.approvals.slots is not None:
        yield ("evacuation", "approvals", "slots"), config.evacuation.approvals.slots


def check_slots(config) -> list[tuple[Loc, str]]:
    """Every ``on_call`` slot names a schedule of ``paging.schedules``."""
    paging: PagingConfig | None = getattr(config, "paging", None)
    known = paging.schedules if paging is not None else {}
    out: list[tuple[Loc, str]] = []
    for loc, slots in _slot_lists(config):
        for i, slot in enumerate(slots):
            if slot.on_call is not None and slot.on_call not in known:
                where = "paging.schedules" if paging is not None else "paging.schedules (and paging itself)"
                out.append((loc + (i, "on_call"), f"no on-call schedule named {slot.on_call!r}"
                                                  f"{_hint(slot.on_call, known)}: declare it under {where}"))
    return out


def check_paging(config, broken=frozenset()) -> list[tuple[Loc, str]]:
    """The pagers exist and can page; targets route somewhere their pager understands;
    routing_keys name services; on-call slots name schedules that a pager can read.
    ``broken``: sources whose own spec is invalid (reported)."""
    paging: PagingConfig | None = getattr(config, "paging", None)
    if paging is None:
        return check_slots(config)
    out: list[tuple[Loc, str]] = check_slots(config)
    for name, sched in paging.schedules.items():
        source = sched.source or paging.source
        if sched.source is not None and (msg := _pager(config, sched.source, broken)):
            out.append((("paging", "schedules", name, "source"), msg))
            continue
        spec = config.sources.get(source)
        if spec is not None and spec.kind == "pagerduty" and not spec.options.get("api_token"):
            out.append((("paging", "schedules", name), f"source {source!r} (pagerduty) has no api_token: "
                                                       "reading a schedule needs a REST API key"))
    names = config.service_names
    if (msg := _pager(config, paging.source, broken)):
        out.append((("paging", "source"), msg))
    for name, spec in config.sources.items():
        for service in (spec.options.get("routing_keys") or {}) if spec.kind == "pagerduty" else ():
            if service not in names:
                out.append((("sources", name, "routing_keys", service), f"no service named {service!r}"
                                                                         f"{_hint(service, names)}"))
    for name, target in paging.targets.items():
        loc: Loc = ("paging", "targets", name)
        source = target.source or paging.source
        if target.source is not None and (msg := _pager(config, target.source, broken)):
            out.append((loc + ("source",), msg))
            continue
        kind = config.sources[source].kind if source in config.sources else None
        if target.service is not None and target.service not in names:
            out.append((loc + ("service",), f"no service named {target.service!r}{_hint(target.service, names)}"))
        if target.routing_key is not None and kind not in (None, "pagerduty"):
            out.append((loc + ("routing_key",), f"routing_key is for PagerDuty; source {source!r} is {kind}: "
                                                "give responders instead"))
        if target.responders and kind not in (None, "opsgenie"):
            out.append((loc + ("responders",), f"responders are for Opsgenie; source {source!r} is {kind}: "
                                               "give routing_key instead"))
        if target.routing_key is None and not target.responders and target.service is None:
            out.append((loc, "says nowhere to page: give routing_key (PagerDuty), responders (Opsgenie) or service"))
    return out
