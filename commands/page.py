"""``/dr page [TARGET [MESSAGE...]]``: page a configured target (``paging.targets``) or a
service's on-call, about the incident of this channel (or, outside one, about nothing).
Alone: who can be paged."""
from __future__ import annotations

from bot.pager_actions import Unroutable, page_by_hand
from bot.paging import pageable
from bot.render import Reply
from commands.base import Invocation, UsageError
from commands.change_args import not_one_of

NAME = "page"


def run(inv: Invocation) -> Reply:
    sv = inv.services
    cfg = sv.config.paging
    if cfg is None:
        raise UsageError("paging is not configured: add a `paging:` section with a pagerduty or opsgenie source "
                         "(docs/config.md, paging)", NAME)
    choices = pageable(sv)
    backend = sv.backends[cfg.source]
    if not inv.args:
        return Reply("page_targets", {"targets": choices, "command": sv.command,
                                      "pager": backend.title or backend.kind})
    name = inv.args[0]
    if name not in choices:
        raise not_one_of(name, choices, "a paging target or a service", "Targets and services", NAME)
    parts = inv.text.split(None, 1)
    message = parts[1].strip() if len(parts) > 1 else ""
    try:
        paged = page_by_hand(sv, inv.actor, inv.actor.channel, name, message, is_target=name in cfg.targets)
    except Unroutable as e:
        raise UsageError(f"{e} Nobody was paged.", NAME) from None
    return Reply("page_queued", {"name": paged.name, "to": paged.to, "pager": paged.pager,
                                 "incident_id": paged.incident_id})
