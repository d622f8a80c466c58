"""Config of alert intake, incidents and the status page."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator

from bot.config.models_base import Duration, Name, Strict

Severity = Literal["critical", "warning", "info"]
IncidentSeverity = Literal["sev1", "sev2", "sev3", "sev4"]
SIGNALS = ("health", "lag", "synthetic", "slo", "other")


class SlackAlertRule(Strict):
    """Turns messages of other bots in an alert channel into alerts."""

    channel: str
    """Channel ID (C...)."""
    match: str
    """Regex on the message text (and attachment texts/fields). Named groups service,
    region, severity and summary fill those fields."""
    resolved: str | None = None
    """Regex that, when it matches, makes the alert resolved instead of firing."""
    service: str | None = None
    severity: Severity = "warning"
    signal: Literal["health", "lag", "synthetic", "slo", "other"] = "other"

    @field_validator("match", "resolved")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                raise ValueError(f"{value!r} is not a valid regular expression: {e}")
        return value


class AlertsConfig(Strict):
    alertmanager_token: str | None = None
    """Bearer token Alertmanager sends (http_config.authorization). Unset: endpoint off."""
    webhook_secret: str | None = None
    """HMAC-SHA256 secret of the generic webhook. Unset: endpoint off."""
    sns_topics: list[str] = []
    """Accepted SNS topic ARNs; empty: the SNS endpoint is off."""
    sns_severity: Severity = "critical"
    signals: dict[str, str] = {
        "lag": r"(?i)lag|replica|replication",
        "health": r"(?i)health|down|unreachable|probe",
        "synthetic": r"(?i)synthetic|canary",
        "slo": r"(?i)slo|burn|error.?budget",
    }
    """Signal class by regex on the alert name, when the alert carries no 'signal' label."""
    slack_rules: list[SlackAlertRule] = []
    drill_noise_window: Duration | None = None
    """Alerts of a service arriving while a drill of it runs, or within this long after the
    drill ended (``0s``: only while it runs), are drill noise: stored and put on the drill's
    timeline, they open no incident (and so page nobody). None: off."""


class OpenRule(Strict):
    service: str | None = None
    """None: any configured service."""
    severity: Severity = "critical"


class FollowupsConfig(Strict):
    tracker: str | None = None
    """A source of kind jira or github_issues: each follow-up also becomes an issue there, linked back."""
    remind_overdue_every: Duration = timedelta(hours=24)
    """An overdue follow-up's owner is reminded in the incident channel this often."""


class IncidentsConfig(Strict):
    open_on: list[OpenRule] = [OpenRule()]
    """Which alerts open an incident by themselves. Default: any critical alert."""
    suggest_failover_signals: int = Field(default=2, ge=2, le=5)
    """Distinct signal classes firing for one service before a failover is suggested."""
    channel_name: str = "inc-{date}-{service}"
    responders: list[str] = []
    """Slack user IDs invited to every incident channel."""
    private_channels: bool = False
    """Incident channels are private (conversations.create is_private): only the invited
    responders and whoever they add see them. Needs the groups:write scope."""
    pin_reaction: str = "pushpin"
    reminder: Duration = timedelta(minutes=15)
    no_change_updates: Duration | None = None
    """Post "no change since HH:MM" in an open incident's channel (and on its status-page
    incident, when published there automatically) after this long without any timeline
    event, and again at this cadence (``bot/no_change.py``). None: never."""
    severity_for: dict[str, IncidentSeverity] = {"critical": "sev2", "warning": "sev3", "info": "sev4"}
    roles: list[Name] = Field(default=["commander", "communications", "scribe"], min_length=1)
    """The roles of an incident, each held by one person (``/dr incident role``, Claim)."""
    commander_within: Duration | None = timedelta(minutes=10)
    """An incident without a commander this long after it opened is called out in its
    channel (once). None: never. Needs ``commander`` among the roles."""
    ops_channel: str | None = None
    """Channel ID (C...) told of every incident opened, status change, severity change and
    new commander, with the readiness of its services and its RTO and RPO so far."""
    review_within: Duration | None = timedelta(hours=48)
    """The postmortem review is due this long after resolve: a reminder in the incident
    channel then, unless ``/dr followup reviewed`` said it was held. None: no reminder."""
    followups: FollowupsConfig = FollowupsConfig()

    @field_validator("roles")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        twice = sorted({r for r in value if value.count(r) > 1})
        if twice:
            raise ValueError(f"each role once: {', '.join(twice)} is listed twice")
        return value


class StatuspageConfig(Strict):
    source: str
    """A source of kind statuspage."""
    publish: dict[IncidentSeverity, Literal["auto", "preview", "skip"]] = {
        "sev1": "auto", "sev2": "auto", "sev3": "preview", "sev4": "skip"}
    """Per severity: publish every status change (auto), after a person's Publish (preview), or
    not at all (skip). A severity left out: preview."""
    publish_typed_text: dict[IncidentSeverity, Literal["auto", "preview"]] = {
        "sev1": "preview", "sev2": "preview", "sev3": "preview", "sev4": "preview"}
    """Where ``publish`` says auto: an update carrying text a person typed (the title of an
    incident opened by hand, a status message) still waits for a Publish unless this says
    auto for the severity. A severity left out: preview."""
    requests_per_second: float = Field(default=1.0, gt=0, le=10)
