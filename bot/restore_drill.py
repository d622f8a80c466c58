"""Restore tests as drills: a drill scenario whose step is marked ``restore:`` (an
``argo_workflow``, ``aws_ssm`` or ``http`` step that restores a backup) plus the steps that
check the restored copy.

When such a run ends (``bot.drill_proof.drill_values``, in the run's last transaction) its
restore is summarised and recorded with the restore step's output under ``restore``: what
was restored (the backup entry, its source and target), from which backup (the id and time
the step's outputs named, per ``restore.backup_id`` / ``restore.backup_time``), where the
step ran (its link), how long the restore took (the restore step's last attempt, start to
end) and whether the checks (every other step of the scenario) passed. The drill report
(``templates/_restore.j2``), the evidence pack and ``/dr status`` (``bot.backups``, by the
run's scenario) read it from there.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any


from bot.config import ServiceConfig
from bot.config.runbooks import Step
from bot.store.models import RunStep, StepState


def restore_index(steps: list[Step]) -> int | None:
    return next((i for i, st in enumerate(steps) if st.restore is not None), None)


def _output(row: RunStep | None) -> dict[str, Any]:
    try:
        out = json.loads(row.output or "{}") if row is not None else {}
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(timezone.utc).isoformat()


def backup_time(value: Any) -> str | None:
    """An output naming a time, as ISO-8601 UTC: Unix seconds or an ISO text; else as given."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        return _iso(datetime.fromtimestamp(float(text), timezone.utc))
    except (ValueError, OverflowError, OSError):
        pass
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return _iso(at if at.tzinfo else at.replace(tzinfo=timezone.utc))


def _outputs(out: dict[str, Any]) -> dict[str, Any]:
    details = out.get("details") if isinstance(out.get("details"), dict) else {}
    found = details.get("outputs") or out.get("outputs") or {}
    return found if isinstance(found, dict) else {}


def summarize(svc: ServiceConfig, steps: list[Step], rows: list[RunStep]) -> dict[str, Any] | None:
    """The restore of a drill run (``steps``: its scenario in order; ``rows``: its run's
    steps), or None when the scenario restores nothing."""
    i = restore_index(steps)
    if i is None:
        return None
    spec = steps[i].restore
    latest = _latest(rows)
    row = latest.get(i)
    out = _output(row)
    details = out.get("details") if isinstance(out.get("details"), dict) else {}
    outputs = _outputs(out)
    backup = svc.backup(spec.backup)
    seconds = (row.ended_at - row.started_at).total_seconds() if row and row.started_at and row.ended_at else None
    checks = [{"position": j + 1, "name": st.name,
               "state": latest[j].state.value if j in latest else "not_run"}
              for j, st in enumerate(steps) if j != i]
    restored = row is not None and row.state is StepState.SUCCEEDED
    checks_passed = all(c["state"] == StepState.SUCCEEDED.value for c in checks)
    if spec.backup_id:
        raw_id = outputs.get(spec.backup_id)
        backup_id, id_note = (str(raw_id), "") if raw_id not in (None, "") else \
            (None, f"the step's outputs have no {spec.backup_id!r}")
    else:
        backup_id, id_note = None, "restore.backup_id is not set: the step does not say which backup it restored"
    return {
        "backup": spec.backup,
        "source": backup.source if backup else None,
        "target": backup.target if backup else None,
        "backup_id": backup_id,
        "backup_id_note": id_note,
        "backup_time": backup_time(outputs.get(spec.backup_time)) if spec.backup_time else None,
        "step": {"position": i + 1, "name": steps[i].name, "action": steps[i].action,
                 "state": row.state.value if row else "not_run", "error": row.error if row else "",
                 "link": out.get("link") or details.get("link"), "summary": out.get("summary")},
        "started_at": _iso(row.started_at) if row else None,
        "ended_at": _iso(row.ended_at) if row else None,
        "restore_s": seconds,
        "restored": restored,
        "checks": checks,
        "checks_passed": restored and checks_passed,
        "passed": restored and checks_passed,
    }


def _latest(rows: list[RunStep]) -> dict[int, RunStep]:
    """Position -> its last attempt (not a rollback)."""
    return {r.position: r for r in sorted(rows, key=lambda r: (r.attempt, r.id or 0)) if not r.rollback}


def recorded(rows: list[RunStep], summary: dict[str, Any]) -> tuple[int, str] | None:
    """The restore step's (last attempt's) row id and its output with ``summary`` kept in
    it, for the run's last transaction to write (None: the step never ran)."""
    row = _latest(rows).get(summary["step"]["position"] - 1)
    if row is None or row.id is None:
        return None
    return row.id, json.dumps(_output(row) | {"restore": summary}, default=str)


def from_steps(step_outputs: list[Any]) -> dict[str, Any] | None:
    """The recorded restore of a run, from its steps' outputs (parsed JSON, in order)."""
    for out in step_outputs:
        if isinstance(out, dict) and isinstance(out.get("restore"), dict):
            return out["restore"]
    return None
