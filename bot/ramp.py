"""A staged traffic ramp: a ``traffic.shift`` step with ``ramp:`` moves the traffic to its
region in stages through the traffic source's weights (capability WEIGHTS: Route 53
weighted records, Global Accelerator dials, Cloudflare pool weights, the sandbox).

Each stage gives the step's region its percentage and the region the request moves from
the rest (any other region 0), then holds for the stage's ``hold`` while the ramp's
``verify`` is read every ``interval`` (and once more at the end of the hold); the first
read that fails stops the ramp with the traffic split as it is, and the step fails: the
run offers Rollback (by default all the traffic back to the source in one move). Stages
below the share the region already has are skipped, so a resumed ramp goes on from where
it was (the stage it stopped at is held, and verified, again). The last stage (100 %) is
not held: the step's own ``verify`` follows it.

While it runs, the ramp writes where it is (stage, held how long) into its step's row and
queues the run's progress update, so the progress message shows it live.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

from sqlalchemy import update
from sqlmodel import select

from bot.conditions import side, unmet
from bot.config import ServiceConfig
from bot.config.runbooks import RAMP_SOURCES, Step
from bot.config.step_specs import Condition, RampSpec
from bot.render import Reply
from bot.request_events import queue_progress
from bot.services import Services
from bot.step_kinds import run_vars
from bot.store import session_scope
from bot.store.models import ChangeRequest, RequestKind, Run, RunStep, StepState
from integrations.base import WEIGHTS, ActionResult, ErrorKind, IntegrationError, Target, WeightedTraffic


def backend_of(services: Services, svc: ServiceConfig, step: Step) -> Any:
    """The step's traffic source, if it can split traffic by weight; IntegrationError if not."""
    name = step.source or (svc.traffic.source if svc.traffic else None)
    backend = services.backends.get(name or "")
    if backend is None or WEIGHTS not in backend.capabilities or not isinstance(backend, WeightedTraffic):
        kind = getattr(backend, "kind", "none")
        raise IntegrationError(
            f"source {name!r} (kind {kind}) cannot split traffic by weight, so it cannot ramp; use "
            f"{RAMP_SOURCES}.", ErrorKind.PERMANENT)
    return backend


def split(weights: dict[str, float], to_region: str, from_region: str, percent: float) -> dict[str, float]:
    """``percent`` to ``to_region``, the rest to ``from_region``, 0 to any other region."""
    return {r: 0.0 for r in weights} | {from_region: round(100.0 - percent, 2), to_region: float(percent)}


def other_region(req: Any, region: str) -> str:
    return req.from_region if region == req.to_region else req.to_region


def verify_text(services: Services, c: Condition | None, req: Any) -> str:
    if c is None:
        return ""
    return _render(services, "ramp_verify", {"c": c, "healthy": side(req, c.healthy) if c.healthy else "",
                                             "writer": side(req, c.writer_in) if c.writer_in else ""})


def would(services: Services, svc: ServiceConfig, step: Step, req: Any, region: str) -> str:
    """``/dr plan``: the stages, their holds and verify, and the weights read now."""
    backend = backend_of(services, svc, step)
    now = backend.weights(Target(svc.name, region))
    return _render(services, "ramp_plan", {"ramp": step.ramp, "region": region, "now": now,
                                           "verify": verify_text(services, step.ramp.verify, req)})


def run(services: Services, svc: ServiceConfig, req: ChangeRequest, step: Step, region: str, *,
        position: int | None = None, attempt: int = 1, notes: dict[str, Any] | None = None,
        stop: threading.Event | None = None, sleep: Callable[[float], Any] | None = None,
        clock: Callable[[], float] = time.monotonic) -> ActionResult:
    """Ramp the traffic to ``region`` (see the module docstring). ``notes`` gets where the
    ramp is as it goes (kept in the step's output if it fails); ``sleep``/``clock`` are
    injectable so tests drive the time."""
    ramp: RampSpec = step.ramp
    notes = {} if notes is None else notes
    pause = sleep or (stop.wait if stop is not None else time.sleep)
    backend = backend_of(services, svc, step)
    target = Target(svc.name, region)
    source = other_region(req, region)
    before = backend.weights(target)
    show = _Progress(services, req, position, attempt)
    deadline = clock() + step.timeout.total_seconds()
    total, done, weights = len(ramp.stages), [], before
    notes["ramp"] = {"before": before, "stages": done}
    for n, stage in enumerate(ramp.stages, 1):
        if weights.get(region, 0.0) > stage.percent:
            done.append({"stage": n, "percent": stage.percent, "skipped": True})
            continue  # already past it (a resumed ramp); the stage it is at is held again
        result = backend.set_weights(target, split(weights, region, source, stage.percent))
        weights = dict(result.details.get("after") or split(weights, region, source, stage.percent))
        done.append({"stage": n, "percent": stage.percent, "weights": weights, "summary": result.summary})
        notes["ramp"]["weights"] = weights
        if n == total:
            break
        hold = ramp.hold_of(stage).total_seconds()
        started = clock()
        while True:
            held = clock() - started
            state = {"stage": n, "stages": total, "percent": stage.percent, "region": region, "source": source,
                     "weights": weights, "held_s": round(min(held, hold), 3), "hold_s": hold}
            show(_render(services, "ramp_progress", state), state)
            if ramp.verify is not None:
                failing, _read = unmet(services, svc, req, ramp.verify, run_vars(
                    svc.name, req.kind.value, req.from_region, req.to_region, region, req.id))
                if failing:
                    notes["verify_failing"] = failing
                    raise IntegrationError(_render(services, "ramp_failed", state | {
                        "stopped": "", "why": "; ".join(failing.values())}), ErrorKind.PERMANENT)
            if held >= hold:
                done[-1]["held_s"] = round(held, 3)
                break
            if stop is not None and stop.is_set():
                raise IntegrationError(_render(services, "ramp_failed", state | {
                    "stopped": "drbot is stopping", "why": ""}), ErrorKind.TRANSIENT)
            if clock() >= deadline:
                raise IntegrationError(_render(services, "ramp_failed", state | {
                    "stopped": "the step's timeout ran out (setting the weights took longer than planned)",
                    "why": ""}), ErrorKind.TRANSIENT)
            pause(max(0.0, min(ramp.interval.total_seconds(), hold - held)))
    after = backend.weights(target)
    summary = _render(services, "ramp_done", {"region": region, "stages": done, "after": after})
    return ActionResult(summary, dry_run=False, changed=True,
                        details={"before": before, "after": after, "stages": done})


class _Progress:
    """Writes where the ramp is into its running step's row and queues the progress update
    (folded into an undelivered one). Nothing when the step is not recorded (a direct call)."""

    def __init__(self, services: Services, req: ChangeRequest, position: int | None, attempt: int):
        self.services, self.req, self.position, self.attempt = services, req, position, attempt
        self.last = ""

    def __call__(self, summary: str, state: dict[str, Any]) -> None:
        if self.position is None or summary == self.last:
            return
        self.last = summary
        req = self.req
        shown = req.parent_id if req.kind is RequestKind.RESUME else req.id
        with session_scope(self.services.engine) as s:
            run = s.exec(select(Run).where(Run.request_id == shown)).first()
            if run is None:
                return
            s.execute(update(RunStep).where(
                RunStep.run_id == run.id, RunStep.position == self.position, RunStep.attempt == self.attempt,
                RunStep.rollback == False, RunStep.state == StepState.RUNNING)  # noqa: E712
                .values(output=json.dumps({"summary": summary, "ramp": state}))
                .execution_options(synchronize_session=False))
            progress = s.get(ChangeRequest, shown)
            if progress is not None:
                queue_progress(self.services, s, progress)
        if self.services.outbox is not None:
            self.services.outbox.poke()


def _render(services: Services, template: str, ctx: dict[str, Any]) -> str:
    return services.renderer.text(Reply(template, ctx)).strip()
