"""Is it safe to move a service's writer from one region to another? Judged by pure code
from the database backend's live ``Replication``: used by the pre-flight of every move and
by readiness for the standby. A region is safe to move to when its database replicates
from the region that writes now (or already is the one writer); a former writer left
standalone by a promotion, a database outside the replication, or one that replicates
from somewhere else is not: moving there loses everything written since they split.

The codes pick the sentences in ``templates/_reasons.j2`` (``db_*``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from integrations.base import DbRole, Replication

SAFE = ("db_replica", "db_already_writer")


@dataclass(frozen=True)
class Judgement:
    ok: bool | None
    """True: safe; False: data would be lost; None: cannot tell (a region unreadable)."""
    code: str
    params: dict[str, Any] = field(default_factory=dict)


def judge_move(rep: Replication, from_region: str, to_region: str, moved_already: bool = False) -> Judgement:
    """Moving the writer from ``from_region`` to ``to_region``.

    ``moved_already``: a resumed run whose database step may have run: ``to_region`` being
    a writer then is the promotion done, not a split."""
    to, src = rep.of(to_region), rep.of(from_region)
    writers = rep.writers
    params: dict[str, Any] = {"from": from_region, "to": to_region, "detail": to.detail,
                              "writers": list(writers), "source_region": to.source_region}
    if to.role is DbRole.UNKNOWN:
        return Judgement(None, "db_unknown", params)
    if to.role is DbRole.REPLICA:
        if to.source_region == from_region:
            return Judgement(True, "db_replica", params)
        if to.source_region is not None and to.source_region in writers and from_region not in writers:
            # the writer is not where drbot's record says: replicating from the real writer is safe
            return Judgement(True, "db_replica", params)
        return Judgement(False, "db_replicates_elsewhere", params)
    if to.role is DbRole.OUTSIDE:
        return Judgement(False, "db_outside", params)
    # to_region is a writer: the move is done (a resumed run), it is the one writer, or the two split
    if moved_already:
        return Judgement(True, "db_already_writer", params)
    if src.role is DbRole.UNKNOWN:
        return Judgement(None, "db_unknown", params | {"detail": src.detail})
    if writers == (to_region,):
        return Judgement(True, "db_already_writer", params)
    return Judgement(False, "db_diverged", params)
