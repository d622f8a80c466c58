"""A readiness report as plain JSON, for ``drbot status --json`` (cron, CI, dashboards)."""
from __future__ import annotations

from typing import Any

from bot.readiness import Assessment
from bot.readings import Reading
from bot.render import Renderer
from bot.status import Report


def _reading(r: Reading) -> dict[str, Any]:
    return {
        "kind": r.kind, "source": r.source, "status": r.status.value,
        "observed_at": r.observed_at.isoformat() if r.observed_at else None,
        "lag_seconds": r.lag_seconds, "unit": r.unit, "replicating": r.replicating, "healthy": r.healthy,
        "detail": r.detail, "error": r.error, "sandbox": r.sandbox,
        "history": [{"at": s.at.isoformat(), "seconds": s.seconds} for s in r.history],
        "region": r.region,
        "replication": None if r.replication is None else [
            {"region": d.region, "role": d.role.value, "source_region": d.source_region, "detail": d.detail}
            for d in r.replication.regions],
    }


def _assessment(a: Assessment, renderer: Renderer) -> dict[str, Any]:
    t = a.targets
    return {
        "service": a.service, "tier": a.tier, "verdict": a.verdict.value,
        "active": a.active, "standby": a.standby,
        "reasons": [renderer.reason(f) for f in a.reasons],
        "findings": [{"code": f.code, "verdict": f.verdict.value, "text": renderer.reason(f)} for f in a.findings],
        "targets": {k: getattr(t, k).total_seconds() for k in ("rpo", "rto", "warning", "critical",
                                                                "stale_after", "drill_max_age")},
        "lag": _reading(a.lag),
        "streams": [{"name": st.spec.name, "unit": st.spec.unit, "warning": st.spec.warning,
                     "critical": st.spec.critical, "verdict": st.verdict.value,
                     "text": renderer.reason(st.finding), "reading": _reading(st.reading)} for st in a.streams],
        "health": {region: _reading(r) for region, r in a.health.items()},
        "traffic": None if a.traffic is None else _reading(a.traffic),
        "database": None if a.database is None else _reading(a.database),
        "drill": None if a.drill is None else {
            "ended_at": a.drill.ended_at.isoformat(), "passed": a.drill.passed,
            "rto_seconds": a.drill.rto_s, "rpo_seconds": a.drill.rpo_s},
        "sandbox": a.sandbox,
    }


def report_to_dict(report: Report, renderer: Renderer) -> dict[str, Any]:
    return {
        "generated_at": report.generated_at.isoformat(),
        "elapsed_ms": round(report.elapsed_ms, 1),
        "all_ready": report.all_ready,
        "sandbox": report.sandbox,
        "services": [_assessment(a, renderer) for a in report.assessments],
    }
