"""Large alert notifications: accepted at once, ingested in bounded parts.

A notification of more than ``PART`` alerts (an alert storm: Alertmanager grouping
thousands, a flapping fleet) is split into parts of ``PART`` alerts, queued in one
transaction as outbox items of one stream (``alerts:ingest``), and the webhook answers 202.
The outbox worker then ingests the parts in order, one transaction each: durable (a
restart resumes at the first part not ingested), one part at a time (no transaction holds
the database for the whole storm), retried with backoff if a part fails, visible in
``/dr outbox``. While parts wait, smaller notifications queue behind them too, so a
``resolved`` never overtakes the ``firing`` it resolves."""
from __future__ import annotations

import uuid

from sqlmodel import col, select

from bot.alerts.intake import IngestResult, ingest
from bot.alerts.normalise import ALERTS, NormalisedAlert
from bot.events import AlertBatch
from bot.outbox.kinds import Outcome
from bot.outbox.queue import enqueue
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import OutboxItem, OutboxState

PART = 500
"""Alerts ingested in one transaction (about a second's work)."""


def waiting(services: Services) -> bool:
    """Whether parts of an earlier notification are still waiting to be ingested."""
    with session_scope(services.engine) as s:
        return s.exec(select(OutboxItem.id).where(
            OutboxItem.stream == AlertBatch.STREAM,
            col(OutboxItem.state).in_([OutboxState.PENDING, OutboxState.DEAD])).limit(1)).first() is not None


def queue(services: Services, alerts: list[NormalisedAlert]) -> dict:
    """Queue ``alerts`` in parts of ``PART``; what the webhook answers (202)."""
    batch = uuid.uuid4().hex[:12]
    parts = [alerts[i:i + PART] for i in range(0, len(alerts), PART)]
    with session_scope(services.engine) as s:
        for n, part in enumerate(parts, start=1):
            enqueue(s, AlertBatch(batch=batch, part=n, parts=len(parts), alerts=ALERTS.dump_python(part, mode="json")),
                    services.clock())
    if services.outbox is not None:
        services.outbox.poke()
    return {"ok": True, "queued": len(alerts), "batch": batch, "parts": len(parts)}


def ingest_now(services: Services, alerts: list[NormalisedAlert]) -> IngestResult:
    """Ingest in this thread, one transaction per part (no outbox worker: the CLI, tests)."""
    total = IngestResult()
    for i in range(0, max(len(alerts), 1), PART):
        r = ingest(services, alerts[i:i + PART])
        total.new, total.duplicates, total.changed = total.new + r.new, total.duplicates + r.duplicates, \
            total.changed + r.changed
        total.unknown_services += r.unknown_services
        total.incidents_opened += r.incidents_opened
        total.incidents_touched |= r.incidents_touched
    return total


def ingest_part(services: Services, event: AlertBatch, _prepared, _item: int) -> Outcome:
    """The outbox handler of one part."""
    result = ingest(services, ALERTS.validate_python(event.alerts))
    if services.outbox is not None and not services.outbox.inline:
        services.outbox.poke()  # deliver the posts this part queued without waiting a pass
    return Outcome(result={"part": f"{event.part}/{event.parts}", **result.as_dict()})
