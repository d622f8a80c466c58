"""Parts of large alert notifications queued in the outbox (stream ``alerts:ingest``) by
drbot before revision 0007_alert_inbox, which stores every notification in the alert inbox
instead (``bot.alerts.drain``). Parts a previous version left pending are still ingested,
in order, by the outbox worker, one transaction each."""
from __future__ import annotations

from bot.alerts.intake import ingest
from bot.alerts.normalise import ALERTS
from bot.events import AlertBatch
from bot.outbox.kinds import Outcome
from bot.services import Services


def ingest_part(services: Services, event: AlertBatch, _prepared, _item: int) -> Outcome:
    """The outbox handler of one part."""
    result = ingest(services, ALERTS.validate_python(event.alerts))
    if services.outbox is not None and not services.outbox.inline:
        services.outbox.poke()  # deliver the posts this part queued without waiting a pass
    return Outcome(result={"part": f"{event.part}/{event.parts}", **result.as_dict()})
