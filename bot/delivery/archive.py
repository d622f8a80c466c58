"""Delivery to the archive (S3): the postmortem draft of a resolved incident. A separate
item from the Slack posts, so a slow archive never makes them repeat."""
from __future__ import annotations

from sqlmodel import Session

from bot.audit import SYSTEM, record
from bot.events import ArchivePostmortem
from bot.incident_view import incident_context
from bot.outbox.kinds import Outcome
from bot.render import Reply
from bot.services import Services
from bot.store import session_scope
from bot.store.incident_tables import Incident


def deliver_postmortem(services: Services, ev: ArchivePostmortem, _prepared, _item: int) -> Outcome:
    with session_scope(services.engine) as s:
        inc = s.get(Incident, ev.incident_id)
        draft = services.renderer.text(Reply("postmortem", incident_context(services, s, inc)))
    obj = services.backends[services.config.archive.source].store(
        f"incidents/{inc.id}/postmortem-incident-{inc.id}.md", draft, content_type="text/markdown",
        metadata={"incident": str(inc.id)})

    def recorded(s: Session) -> None:
        record(s, SYSTEM, "postmortem.archived", target=inc.title, incident_id=inc.id, text=obj.uri)

    return Outcome(result={"archived": obj.uri}, apply=recorded)
