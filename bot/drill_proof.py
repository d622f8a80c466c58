"""What a drill proved, decided when its run ends (``bot.engine`` ``_finish``).

A drill passes only if it moved traffic or the writer and a verify read the move back:

- ``moved``: a step that moves traffic or the writer changed it (not already there, not a
  dry run) and the verify that reads it back in that region (``traffic_in`` / ``writer_in``,
  on that step or a later one) passed. The run then passes if it also succeeded within
  its targets.
- ``not_moved``: the scenario has such a step, but nothing was moved and read back (the
  run failed first, the traffic or writer was already there, or no verify reads it back).
  It does not pass.
- ``check``: the scenario has only ``check`` steps. The run is recorded as a check:
  ``passed`` stays empty (its state says whether the checks held), it never passes as a
  drill and does not refresh ``drill_max_age`` (``bot.store.queries.latest_drills``).

A scenario with a ``restore:`` step is a restore test (``bot.restore_drill``): its restore
is summarised and recorded with the restore step's output here; without moves it is
recorded as a check, and ``bot.backups`` judges it against ``restore_test_max_age``.
"""
from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session

from bot.config.runbooks import confirmed_by
from bot.plans import steps_for
from bot.restore_drill import recorded, summarize
from bot.services import Services
from bot.store.models import ChangeRequest, RunStep, StepState

MOVED, NOT_MOVED, CHECK = "moved", "not_moved", "check"


def _output(row: RunStep) -> dict[str, Any]:
    try:
        out = json.loads(row.output or "{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def proof_of(steps: list, rows: list[RunStep]) -> str:
    """``steps``: the drill's runbook steps in order (config); ``rows``: its run's steps."""
    if not any(st.moves for st in steps):
        return CHECK
    latest = {r.position: r for r in sorted(rows, key=lambda r: (r.attempt, r.id or 0)) if not r.rollback}

    def succeeded(i: int) -> RunStep | None:
        row = latest.get(i)
        return row if row is not None and row.state is StepState.SUCCEEDED else None

    for i, st in enumerate(steps):
        row = succeeded(i) if st.moves else None
        if row is None:
            continue
        out = _output(row)
        if not out.get("changed") or out.get("dry_run"):
            continue
        j = confirmed_by(steps, i)
        if j is not None and succeeded(j) is not None:
            return MOVED
    return NOT_MOVED


def drill_values(services: Services, s: Session, request_id: int, rows: list[RunStep],
                 passed: bool | None) -> tuple[dict[str, Any], tuple[int, str] | None]:
    """The drill run's ``proof`` and its ``passed`` as a drill, from ``rows`` (its run's
    steps as they are at its end); and, for a restore test, the restore step's row id and
    its output with what was restored, from which backup, how long and the checks."""
    req = s.get(ChangeRequest, request_id)
    steps = [p.step for p in steps_for(services, s, req) if not p.rollback]
    restore = summarize(services.config.service(req.service), steps, rows)
    kept = recorded(rows, restore) if restore is not None else None
    proof = proof_of(steps, rows)
    if proof == CHECK:
        return {"proof": proof, "passed": None}, kept
    return {"proof": proof, "passed": bool(passed) and proof == MOVED}, kept
