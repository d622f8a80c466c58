"""Every alert, whatever sent it, becomes one ``NormalisedAlert``: fingerprint, source,
service, region, severity, signal class, status, summary, labels, links. Pure functions.

Each sender's payload is first read into a typed model of what it documents (Alertmanager's
webhook version 4, the generic webhook, a CloudWatch alarm in an SNS message). A payload
that does not fit raises ``BadPayload`` naming the field (``alerts[3].labels: must be an
object``); numbers are not taken for text. Text is cleaned on the way in: control
characters (PostgreSQL cannot store NUL) are dropped and broken surrogates replaced."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from bot.config import Config
from bot.config.incidents import SlackAlertRule

SEVERITIES = {"critical": "critical", "page": "critical", "high": "critical", "error": "critical",
              "warning": "warning", "warn": "warning", "medium": "warning", "info": "info", "low": "info",
              "none": "info"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class BadPayload(ValueError):
    pass


@dataclass(frozen=True)
class NormalisedAlert:
    fingerprint: str
    source: str
    service: str | None
    service_hint: str
    region: str
    severity: str
    signal: str
    status: str  # firing | resolved
    summary: str
    labels: dict[str, str] = field(default_factory=dict)
    links: tuple[str, ...] = ()
    starts_at: datetime | None = None
    ends_at: datetime | None = None


ALERTS = TypeAdapter(list[NormalisedAlert])
"""Normalised alerts to and from JSON (a batch queued for ingestion, bot.delivery.alerts)."""


def clean(text: str) -> str:
    """``text`` without control characters (tab, newline, return kept) and with any lone
    surrogate (from a JSON ``\\ud800`` escape) replaced by U+FFFD."""
    if text.isprintable():  # the common case, checked in C: nothing to clean
        return text
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", text))


# -- what each sender documents ------------------------------------------------------------

Text = Annotated[str, AfterValidator(clean)]
Name = Annotated[str, StringConstraints(max_length=1000), AfterValidator(clean)]
Fingerprint = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(clean)]
Labels = dict[Name, Text]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class AlertmanagerAlert(_Payload):
    status: Literal["firing", "resolved"] = "firing"
    labels: Labels = Field(default_factory=dict)
    annotations: Optional[Labels] = None
    startsAt: Optional[Text] = None
    endsAt: Optional[Text] = None
    generatorURL: Optional[Text] = None
    fingerprint: Optional[Fingerprint] = None


class AlertmanagerPayload(_Payload):
    """Alertmanager's webhook, version 4 (prometheus.io/docs/alerting/latest/configuration,
    <webhook_config>): grouped alerts; the group fields drbot does not use are not checked."""

    version: Union[Literal["4"], Literal[4]]
    alerts: list[AlertmanagerAlert]


class WebhookAlert(_Payload):
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(clean)]
    service: Optional[Name] = None
    status: Literal["firing", "resolved"] = "firing"
    severity: Optional[Name] = None
    region: Name = ""
    signal: Optional[Name] = None
    fingerprint: Optional[Fingerprint] = None
    labels: Labels = Field(default_factory=dict)
    links: list[Text] = Field(default_factory=list)


class WebhookBatch(_Payload):
    alerts: list[WebhookAlert]


class AlarmTrigger(_Payload):
    MetricName: Optional[Text] = None
    Namespace: Optional[Text] = None


class CloudWatchAlarm(_Payload):
    """The JSON of a CloudWatch alarm's SNS notification (its ``Message``)."""

    AlarmName: Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(clean)]
    NewStateValue: Literal["ALARM", "OK", "INSUFFICIENT_DATA"]
    NewStateReason: Optional[Text] = None
    AlarmDescription: Optional[Text] = None
    AlarmArn: Optional[Name] = None
    StateChangeTime: Optional[Text] = None
    Trigger: Optional[AlarmTrigger] = None


_PLAIN = {"dict_type": "must be an object", "string_type": "must be text (a JSON string)",
          "list_type": "must be a list", "missing": "is required", "string_too_short": "must not be empty",
          "model_type": "must be an object"}


def _where(loc: tuple) -> str:
    """``alerts[3].labels.severity``; a key a sender chose is cut to 60 characters."""
    out = ""
    for part in loc:
        name = str(part) if len(str(part)) <= 60 else str(part)[:59] + "…"
        out += f"[{part}]" if isinstance(part, int) else (f".{name}" if out else name)
    return out


def _read(model: type[BaseModel], data: Any, what: str) -> Any:
    if not isinstance(data, dict):
        raise BadPayload(f"{what} must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = _where(first["loc"]) or what
        more = f" (and {e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
        raise BadPayload(f"{where}: {_PLAIN.get(first['type'], first['msg'])}{more}") from None


def _fingerprint(source: str, parts: dict[str, Any]) -> str:
    return source + ":" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _service(config: Config, *candidates: str | None) -> tuple[str | None, str]:
    """The configured service named by the first candidate that names one, and the hint."""
    names = config.service_names
    hint = next((c for c in candidates if c), "")
    for c in candidates:
        if not c:
            continue
        if c in names:
            return c, c
        for name in names:  # "orders-db-replica-lag" names orders
            if re.search(rf"(^|[^a-z0-9]){re.escape(name)}([^a-z0-9]|$)", c.lower()):
                return name, c
    return None, hint


def _signal(config: Config, label: str | None, *names: str) -> str:
    if label in ("health", "lag", "synthetic", "slo", "other"):
        return label
    for signal, pattern in config.alerts.signals.items():
        if any(n and re.search(pattern, n) for n in names):
            return signal
    return "other"


def _severity(value: str | None, default: str = "warning") -> str:
    return SEVERITIES.get((value or "").lower(), default)


def from_alertmanager(payload: Any, config: Config) -> list[NormalisedAlert]:
    """Alertmanager webhook payload, version 4, firing or resolved, grouped alerts."""
    if not isinstance(payload, dict) or str(payload.get("version")) != "4":
        raise BadPayload("not an Alertmanager webhook payload of version 4")
    out = []
    seen: dict[tuple, tuple] = {}  # a storm repeats the same few label sets: match each once
    for a in _read(AlertmanagerPayload, payload, "the payload").alerts:
        labels, ann = dict(a.labels), dict(a.annotations or {})
        name = labels.get("alertname", "")
        key = (labels.get("service"), labels.get("dr_service"), labels.get("job"), name, labels.get("signal"))
        if key not in seen:
            seen[key] = (_service(config, *key[:4]), _signal(config, key[4], name))
        (service, hint), signal = seen[key]
        out.append(NormalisedAlert(
            fingerprint="am:" + (a.fingerprint or _fingerprint("am", labels)),
            source="alertmanager", service=service, service_hint=hint, region=labels.get("region", ""),
            severity=_severity(labels.get("severity")), signal=signal, status=a.status,
            summary=ann.get("summary") or ann.get("description") or name or "alert",
            labels=labels, links=tuple(x for x in (a.generatorURL, ann.get("runbook_url")) if x),
            starts_at=_time(a.startsAt), ends_at=_time(a.endsAt) if a.status == "resolved" else None))
    return out


def from_cloudwatch_sns(envelope: dict, config: Config) -> NormalisedAlert:
    """A CloudWatch alarm state change delivered as an SNS Notification."""
    message = envelope.get("Message")
    try:
        data = json.loads(message) if isinstance(message, str) else None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise BadPayload("the SNS Message is not a CloudWatch alarm (not a JSON object)")
    alarm = _read(CloudWatchAlarm, data, "the SNS Message")
    name = alarm.AlarmName
    trigger = alarm.Trigger or AlarmTrigger()
    service, hint = _service(config, name, alarm.AlarmDescription or "")
    arn = alarm.AlarmArn or ""
    region = arn.split(":")[3] if arn.count(":") >= 4 else ""
    state = alarm.NewStateValue
    return NormalisedAlert(
        fingerprint="cw:" + (arn or name), source="sns", service=service, service_hint=hint, region=region,
        severity=config.alerts.sns_severity if state == "ALARM" else "info",
        signal=_signal(config, None, name, trigger.MetricName or ""),
        status="firing" if state == "ALARM" else "resolved",
        summary=f"{name}: {alarm.NewStateReason or state}",
        labels={"alarm": name, "state": state, "metric": trigger.MetricName or "",
                "namespace": trigger.Namespace or ""},
        starts_at=_time(alarm.StateChangeTime))


def from_webhook(payload: Any, config: Config) -> list[NormalisedAlert]:
    """The generic webhook: one alert object, or {"alerts": [...]}. Fields: service,
    summary (required), status, severity, region, signal, fingerprint, labels, links."""
    if isinstance(payload, dict) and "alerts" in payload:
        items = _read(WebhookBatch, payload, "the payload").alerts
    else:
        items = [_read(WebhookAlert, payload, "the payload")]
    out = []
    for a in items:
        labels = dict(a.labels)
        service, hint = _service(config, a.service)
        fp = a.fingerprint or _fingerprint("wh", {"service": a.service, "summary": a.summary, "labels": labels})
        out.append(NormalisedAlert(
            fingerprint="wh:" + fp, source="webhook", service=service, service_hint=hint,
            region=a.region, severity=_severity(a.severity),
            signal=_signal(config, a.signal, a.summary), status=a.status, summary=a.summary,
            labels=labels, links=tuple(a.links)))
    return out


def from_slack_message(event: dict, rule: SlackAlertRule, config: Config) -> NormalisedAlert | None:
    """Another bot's alert message in an alert channel, matched by a configured rule."""
    texts = [event.get("text") or ""]
    for att in event.get("attachments") or []:
        texts += [att.get("title") or "", att.get("text") or "", att.get("fallback") or ""]
        texts += [f"{f.get('title', '')}: {f.get('value', '')}" for f in att.get("fields") or []]
    text = clean("\n".join(t for t in texts if t))
    m = re.search(rule.match, text)
    if not m:
        return None
    groups = {k: v for k, v in m.groupdict().items() if v}
    service, hint = _service(config, rule.service or groups.get("service"))
    resolved = bool(rule.resolved and re.search(rule.resolved, text))
    key = {"channel": rule.channel, "service": hint, "summary": groups.get("summary") or m.group(0)}
    return NormalisedAlert(
        fingerprint=_fingerprint("slack", key), source="slack", service=service, service_hint=hint,
        region=groups.get("region", ""), severity=_severity(groups.get("severity"), rule.severity),
        signal=rule.signal, status="resolved" if resolved else "firing",
        summary=groups.get("summary") or m.group(0),
        labels={"channel": rule.channel, "ts": clean(str(event.get("ts", "")))})


def from_sns(envelope: Any, config: Config) -> list[NormalisedAlert]:
    return [from_cloudwatch_sns(envelope, config)]


def from_slack_channel(message: Any, config: Config) -> list[NormalisedAlert]:
    """The alerts of a message in an alert channel, one per matching rule of its channel
    (``alerts.slack_rules``); none when no rule matches."""
    if not isinstance(message, dict) or not isinstance(message.get("channel"), str):
        raise BadPayload("a Slack message needs its channel")
    return [alert for rule in config.alerts.slack_rules if rule.channel == message["channel"]
            for alert in [from_slack_message(message, rule, config)] if alert is not None]


READERS = {"alertmanager": from_alertmanager, "webhook": from_webhook, "sns": from_sns, "slack": from_slack_channel}
"""The normaliser of each alert endpoint: the webhook validates a payload with it before
storing it, the drain reads the stored payload with it again."""


def read(endpoint: str, payload: Any, config: Config) -> list[NormalisedAlert]:
    """The alerts of a payload received at ``endpoint``; raises BadPayload."""
    return READERS[endpoint](payload, config)
