"""Every alert, whatever sent it, becomes one ``NormalisedAlert``: fingerprint, source,
service, region, severity, signal class, status, summary, labels, links. Pure functions;
a payload that is not what its sender documents raises ``BadPayload`` with the reason."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bot.config import Config
from bot.config.incidents import SlackAlertRule

SEVERITIES = {"critical": "critical", "page": "critical", "high": "critical", "error": "critical",
              "warning": "warning", "warn": "warning", "medium": "warning", "info": "info", "low": "info",
              "none": "info"}


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
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise BadPayload("'alerts' must be a list")
    out = []
    for i, a in enumerate(alerts):
        if not isinstance(a, dict) or not isinstance(a.get("labels", {}), dict):
            raise BadPayload(f"alerts[{i}] is not an alert object")
        labels = {str(k): str(v) for k, v in a.get("labels", {}).items()}
        ann = {str(k): str(v) for k, v in (a.get("annotations") or {}).items()}
        name = labels.get("alertname", "")
        service, hint = _service(config, labels.get("service"), labels.get("dr_service"), labels.get("job"), name)
        status = "resolved" if a.get("status") == "resolved" else "firing"
        out.append(NormalisedAlert(
            fingerprint="am:" + (a.get("fingerprint") or _fingerprint("am", labels)),
            source="alertmanager", service=service, service_hint=hint, region=labels.get("region", ""),
            severity=_severity(labels.get("severity")), signal=_signal(config, labels.get("signal"), name),
            status=status, summary=ann.get("summary") or ann.get("description") or name or "alert",
            labels=labels, links=tuple(x for x in (a.get("generatorURL"), ann.get("runbook_url")) if x),
            starts_at=_time(a.get("startsAt")), ends_at=_time(a.get("endsAt")) if status == "resolved" else None))
    return out


def from_cloudwatch_sns(envelope: dict, config: Config) -> NormalisedAlert:
    """A CloudWatch alarm state change delivered as an SNS Notification."""
    try:
        alarm = json.loads(envelope.get("Message", ""))
    except (TypeError, ValueError):
        raise BadPayload("the SNS Message is not a CloudWatch alarm (not JSON)") from None
    if not isinstance(alarm, dict) or "AlarmName" not in alarm or "NewStateValue" not in alarm:
        raise BadPayload("the SNS Message is not a CloudWatch alarm (no AlarmName/NewStateValue)")
    name = str(alarm["AlarmName"])
    trigger = alarm.get("Trigger") or {}
    service, hint = _service(config, name, str(alarm.get("AlarmDescription") or ""))
    arn = str(alarm.get("AlarmArn", ""))
    region = arn.split(":")[3] if arn.count(":") >= 4 else ""
    state = alarm["NewStateValue"]
    return NormalisedAlert(
        fingerprint="cw:" + (arn or name), source="sns", service=service, service_hint=hint, region=region,
        severity=config.alerts.sns_severity if state == "ALARM" else "info",
        signal=_signal(config, None, name, str(trigger.get("MetricName", ""))),
        status="firing" if state == "ALARM" else "resolved",
        summary=f"{name}: {alarm.get('NewStateReason', state)}",
        labels={"alarm": name, "state": str(state), "metric": str(trigger.get("MetricName", "")),
                "namespace": str(trigger.get("Namespace", ""))},
        starts_at=_time(alarm.get("StateChangeTime")))


def from_webhook(payload: Any, config: Config) -> list[NormalisedAlert]:
    """The generic webhook: one alert object, or {"alerts": [...]}. Fields: service,
    summary (required), status, severity, region, signal, fingerprint, labels, links."""
    items = payload.get("alerts") if isinstance(payload, dict) and "alerts" in payload else [payload]
    if not isinstance(items, list):
        raise BadPayload("'alerts' must be a list")
    out = []
    for i, a in enumerate(items):
        if not isinstance(a, dict) or not isinstance(a.get("summary"), str) or not a["summary"].strip():
            raise BadPayload(f"alert {i} needs a 'summary' (text)")
        labels = {str(k): str(v) for k, v in (a.get("labels") or {}).items()}
        service, hint = _service(config, a.get("service"))
        status = "resolved" if a.get("status") == "resolved" else "firing"
        fp = a.get("fingerprint") or _fingerprint("wh", {"service": a.get("service"), "summary": a["summary"],
                                                         "labels": labels})
        out.append(NormalisedAlert(
            fingerprint="wh:" + str(fp), source="webhook", service=service, service_hint=hint,
            region=str(a.get("region", "")), severity=_severity(a.get("severity")),
            signal=_signal(config, a.get("signal"), a["summary"]), status=status, summary=a["summary"],
            labels=labels, links=tuple(str(x) for x in a.get("links") or [])))
    return out


def from_slack_message(event: dict, rule: SlackAlertRule, config: Config) -> NormalisedAlert | None:
    """Another bot's alert message in an alert channel, matched by a configured rule."""
    texts = [event.get("text") or ""]
    for att in event.get("attachments") or []:
        texts += [att.get("title") or "", att.get("text") or "", att.get("fallback") or ""]
        texts += [f"{f.get('title', '')}: {f.get('value', '')}" for f in att.get("fields") or []]
    text = "\n".join(t for t in texts if t)
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
        summary=groups.get("summary") or m.group(0), labels={"channel": rule.channel, "ts": event.get("ts", "")})
