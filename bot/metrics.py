"""Prometheus metrics: one ``Metrics`` per ``Services`` (built in ``bot.wiring``, its own
``CollectorRegistry``; nothing is registered at import time). Core code counts through the
methods below (``services.metrics.step(...)``); what lives in the database (outbox depth,
readiness verdicts, the last measured RTO/RPO per service) and the scheduler's leadership are
read at scrape time by ``watch``, so every replica reports the same values.
``transports.http`` serves ``/metrics``.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from bot.store.drill_tables import WatchState
from bot.store.incident_tables import AlertInbox, OutboxItem, OutboxState
from bot.store.models import Run, aware

log = logging.getLogger(__name__)

STEP_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
ALERT_REASONS = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "disabled",
                 413: "too_large", 503: "unavailable"}


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("drbot_requests", "Slash commands and clicks handled, by kind and outcome",
                                ["channel", "kind", "outcome"], registry=r)
        self.refusals = Counter("drbot_refusals", "Commands and clicks refused, by reason", ["reason"], registry=r)
        self.created = Counter("drbot_change_requests_created", "Change requests created, by kind", ["kind"],
                               registry=r)
        self.decisions = Counter("drbot_decisions", "Approve/deny/cancel clicks on change requests, by outcome "
                                 "(approved, recorded, denied, cancelled, or the refusal's reason)",
                                 ["verb", "outcome"], registry=r)
        self.runs_started = Counter("drbot_runs_started", "Runs started, by kind", ["kind"], registry=r)
        self.runs = Histogram("drbot_run_duration_seconds", "Runs finished, by kind and outcome",
                              ["kind", "outcome"], buckets=RUN_BUCKETS, registry=r)
        self.steps = Histogram("drbot_step_duration_seconds", "Runbook steps finished, by action and outcome",
                               ["action", "outcome"], buckets=STEP_BUCKETS, registry=r)
        self.alerts = Counter("drbot_alerts_received", "Alerts accepted, by endpoint", ["endpoint"], registry=r)
        self.alerts_rejected = Counter("drbot_alerts_rejected", "Alert requests rejected, by endpoint and reason",
                                       ["endpoint", "reason"], registry=r)
        self.alerts_processed = Counter("drbot_alerts_processed", "Alerts stored by the alert drain (deduplicated, "
                                        "grouped into incidents)", registry=r)
        self.alert_payloads_failed = Counter("drbot_alert_payloads_failed", "Accepted alert payloads given up by the "
                                             "drain after their attempts, by endpoint", ["endpoint"], registry=r)
        self.sns_confirmed = Counter("drbot_sns_subscriptions_confirmed", "SNS subscriptions confirmed", registry=r)
        self.incidents = Counter("drbot_incidents", "Incidents opened and status changes, by event",
                                 ["event"], registry=r)
        self.pages = Counter("drbot_pages", "Pages sent to a pager, by pager kind and action (trigger, resolve)",
                             ["pager", "action"], registry=r)
        self.outbox_given_up = Counter("drbot_outbox_given_up", "Outbox items given up, by kind", ["kind"],
                                       registry=r)
        self.slack_calls = Counter("drbot_slack_api_calls", "Slack Web API calls, by method and outcome",
                                   ["method", "outcome"], registry=r)
        self.slack_429 = Counter("drbot_slack_rate_limited", "Slack Web API calls answered 429 / ratelimited",
                                 ["method"], registry=r)

    # -- counting (core code) --------------------------------------------------------------
    def handled(self, channel: str, kind: str, reply: Any) -> tuple[str, str | None]:
        """A command or a click answered with ``reply`` (a bot.render.Reply or None);
        returns its outcome and, when refused, the reason."""
        template = getattr(reply, "template", "")
        ctx = getattr(reply, "context", None) or {}
        reason = None
        if template == "refused" or template.endswith("_refused"):  # e.g. manual_step_refused
            outcome, reason = "refused", str(ctx.get("code", "unknown"))
            self.refusals.labels(reason).inc()
        elif template == "internal_error":
            outcome = "error"
        elif template == "usage" and ctx.get("error"):
            outcome = "usage_error"
        else:
            outcome = "ok"
        self.requests.labels(channel, kind, outcome).inc()
        return outcome, reason

    def decision(self, verb: str, outcome: str) -> None:
        self.decisions.labels(verb, outcome).inc()

    def run_finished(self, kind: str, service: str, outcome: str, seconds: float, values: dict) -> None:
        self.runs.labels(kind, outcome).observe(max(seconds, 0.0))

    def alert_rejected(self, endpoint: str, status: int) -> None:
        self.alerts_rejected.labels(endpoint, ALERT_REASONS.get(status, str(status))).inc()

    def slack_call(self, method: str, outcome: str) -> None:
        self.slack_calls.labels(method, outcome).inc()
        if outcome == "rate_limited":
            self.slack_429.labels(method).inc()

    # -- at scrape time ---------------------------------------------------------------------
    def watch(self, services: Any) -> None:
        """Read the database and the scheduler at every scrape (wiring calls this once)."""
        self.registry.register(_Scraped(services))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Scraped:
    """Outbox depth and oldest age per kind, readiness verdicts, leadership: read per scrape."""

    def __init__(self, services: Any):
        self.services = services

    def describe(self) -> list:
        return []  # collected only on scrape: never touch the database at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sv = self.services
        leader = GaugeMetricFamily("drbot_scheduler_leader", "1 when this process leads the scheduler")
        leader.add_metric([], 1.0 if sv.scheduler is not None and sv.scheduler.is_leader else 0.0)
        yield leader
        up = GaugeMetricFamily("drbot_database_up", "1 when the last scrape could read the database")
        try:
            families = list(self._from_database(sv))
        except Exception as e:  # a scrape must answer even while the database is down
            log.warning("metrics: database not readable: %s", e)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    @staticmethod
    def _from_database(sv: Any) -> Iterator[GaugeMetricFamily]:
        now = sv.clock()
        depth = GaugeMetricFamily("drbot_outbox_depth", "Outbox items waiting for delivery, by kind", labels=["kind"])
        age = GaugeMetricFamily("drbot_outbox_oldest_age_seconds", "Age of the oldest waiting outbox item, by kind",
                                labels=["kind"])
        dead = GaugeMetricFamily("drbot_outbox_dead", "Outbox items given up, by kind", labels=["kind"])
        ready = GaugeMetricFamily("drbot_service_ready", "1 when the watch's last verdict for the service is READY",
                                  labels=["service"])
        verdict = GaugeMetricFamily("drbot_service_verdict", "The watch's last verdict per service (1 = current)",
                                    labels=["service", "verdict"])
        with sv.engine.connect() as conn:
            rows = conn.execute(select(OutboxItem.kind, OutboxItem.state, func.count(), func.min(OutboxItem.created_at))
                                .where(OutboxItem.state.in_([OutboxState.PENDING, OutboxState.DEAD]))
                                .group_by(OutboxItem.kind, OutboxItem.state)).all()
            verdicts = conn.execute(select(WatchState.service, WatchState.verdict)).all()
            measured = conn.execute(_last_measured()).all()
            inbox = conn.execute(select(AlertInbox.state, func.count(), func.min(AlertInbox.received_at))
                                 .group_by(AlertInbox.state)).all()
        for kind, state, count, oldest in rows:
            if state in (OutboxState.DEAD, OutboxState.DEAD.value, OutboxState.DEAD.name):
                dead.add_metric([kind], float(count))
                continue
            depth.add_metric([kind], float(count))
            age.add_metric([kind], max((now - aware(oldest)).total_seconds(), 0.0) if oldest else 0.0)
        for service, value in verdicts:
            ready.add_metric([service], 1.0 if value == "READY" else 0.0)
            verdict.add_metric([service, value], 1.0)
        rto = GaugeMetricFamily("drbot_last_run_rto_seconds", "Measured RTO of the service's last run that "
                                "measured one (any replica's, from the database)", labels=["service"])
        rpo = GaugeMetricFamily("drbot_last_run_rpo_seconds", "Measured RPO of that run, when it could be measured",
                                labels=["service"])
        for service, rto_s, rpo_s in measured:
            rto.add_metric([service], float(rto_s))
            if rpo_s is not None:
                rpo.add_metric([service], float(rpo_s))
        yield from (depth, age, dead, ready, verdict, rto, rpo)
        yield from _inbox(inbox, now)


def _last_measured():
    """Per service, the RTO and RPO of its newest run with a measured RTO (one query)."""
    newest = (select(Run.service, func.max(Run.ended_at).label("ended_at"))
              .where(Run.measured_rto_s.is_not(None)).group_by(Run.service).subquery())
    return (select(Run.service, Run.measured_rto_s, Run.measured_rpo_s)
            .join(newest, (Run.service == newest.c.service) & (Run.ended_at == newest.c.ended_at))
            .where(Run.measured_rto_s.is_not(None)))


def _inbox(rows: list, now: datetime) -> Iterator[GaugeMetricFamily]:
    """Accepted alert payloads waiting for the drain, the oldest one's age, those failed."""
    found = {state: (count, oldest) for state, count, oldest in rows}
    waiting, oldest = found.get("pending", (0, None))
    depth = GaugeMetricFamily("drbot_alert_inbox_depth", "Accepted alert payloads waiting to be processed")
    depth.add_metric([], float(waiting))
    age = GaugeMetricFamily("drbot_alert_inbox_oldest_age_seconds", "Age of the oldest waiting alert payload")
    age.add_metric([], max((now - aware(oldest)).total_seconds(), 0.0) if oldest else 0.0)
    failed = GaugeMetricFamily("drbot_alert_inbox_failed", "Alert payloads the drain gave up on (kept with "
                               "their error in alert_inbox)")
    failed.add_metric([], float(found.get("failed", (0, None))[0]))
    yield from (depth, age, failed)


def decision_outcome(verb: str, decision: Any) -> str:
    """approved (enough approvals now), recorded (one approval), denied, cancelled, the
    refusal's reason (not_approver, own_request, expired, ...), or unchanged."""
    reply = decision.reply
    if reply is not None and reply.template == "refused":
        return str(reply.context.get("code", "refused"))
    if decision.approved:
        return "approved"
    if decision.changed:
        return {"approve": "recorded", "deny": "denied", "cancel": "cancelled"}.get(verb, verb)
    return "unchanged"
