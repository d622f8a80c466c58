"""One runbook step: the integration action, cut at the step's timeout, then its verify,
polled until it holds or its time is up.

Traffic and database actions go to the service's controls (``act``); ``http``,
``kubernetes.*``, ``argo_workflow`` and ``aws_ssm`` to their named source
(``bot.step_kinds``), which polls within the step's timeout and cancels what it started
when that runs out; ``wait`` waits here, on the service's own readings; ``manual`` waits
for a person's answer (``bot.manual_steps``). ``would_do`` says
what a step would do, with live values, for ``/dr plan``.
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from bot.conditions import side, unmet
from bot.config import ServiceConfig
from bot.config.runbooks import Step, Verify
from bot.config.step_specs import WaitSpec
from bot.durations import format_duration
from bot import ramp
from bot.manual_steps import ManualStepFailed, plan_text, wait_for_answer
from bot.services import Services
from bot.step_kinds import KINDS, idempotency_key, perform, run_vars
from bot.store.models import ChangeRequest
from integrations.base import ActionResult, IntegrationError, Target

GRACE = 30.0
"""Seconds past a step's timeout given to a backend that polls within it to cancel what it
started and answer, before the step is cut regardless."""


class StepFailed(Exception):
    def __init__(self, message: str, output: dict[str, Any] | None = None):
        super().__init__(message)
        self.output = output or {}


def source_of(svc: ServiceConfig, action: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    control = getattr(svc, action.split(".")[0])
    return control.source


def act(services: Services, svc: ServiceConfig, step_action: str, source: str | None, region: str,
        allow_data_loss: bool = False, dry_run: bool = False) -> ActionResult:
    backend = services.backends[source_of(svc, step_action, source)]
    target = Target(svc.name, region)
    if step_action == "traffic.shift":
        return backend.shift(target, region, dry_run=dry_run)
    mode = step_action.split(".")[1]
    return backend.promote(target, region, mode=mode, allow_data_loss=allow_data_loss, dry_run=dry_run)


def would_do(services: Services, svc: ServiceConfig, step: Step, kind: str, from_region: str, to_region: str,
             request_id: int | str = "NEW") -> str:
    """What ``step`` would do now, read live where its backend can (``/dr plan``)."""
    region = to_region if step.to == "target" else from_region
    try:
        if step.action == "check":
            return ""
        if step.action == "wait":
            return _wait_text(step.wait, SimpleNamespace(from_region=from_region, to_region=to_region))
        if step.action == "manual":
            return plan_text(step, run_vars(svc.name, kind, from_region, to_region, region, request_id))
        if step.action.split(".")[0] in KINDS:
            variables = run_vars(svc.name, kind, from_region, to_region, region, request_id)
            return perform(services, step, variables, dry_run=True).summary
        if step.ramp is not None:  # the stages and the weights read now (bot.ramp)
            return ramp.would(services, svc, step, SimpleNamespace(from_region=from_region, to_region=to_region),
                              region)
        return act(services, svc, step.action, step.source, region, allow_data_loss=step.allow_data_loss,
                   dry_run=True).summary
    except IntegrationError as e:
        return f"cannot tell: {e}"


def _with_timeout(fn, seconds: float):
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drbot-step")
    try:
        return pool.submit(fn).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)


def execute_step(services: Services, req: ChangeRequest, step: Step, region: str,
                 reason: str | None = None, position: int | None = None, attempt: int = 1,
                 stop: threading.Event | None = None) -> dict[str, Any]:
    """Run ``step``; its output (what it did, what it read) or StepFailed with what is known.
    ``stop``, when set, makes a polling step cancel what it started and fail."""
    svc = services.config.service(req.service)
    output: dict[str, Any] = {"region": region}
    if step.action == "database.failover" and "data loss" not in (reason or req.reason).lower():
        raise StepFailed("database.failover needs a reason that names the data loss it accepts", output)
    if step.action == "wait":
        output |= wait(services, svc, req, step.wait, step.timeout.total_seconds(), stop=stop)
    elif step.action == "manual":  # a person answers in the run's thread (bot.manual_steps)
        variables = run_vars(svc.name, req.kind.value, req.from_region, req.to_region, region, req.id)
        try:
            output |= wait_for_answer(services, req, step, variables, position, attempt, stop=stop)
        except ManualStepFailed as e:
            raise StepFailed(str(e), output | e.output) from None
    elif step.action != "check":
        notes: dict[str, Any] = {}
        budget = step.timeout.total_seconds()
        if step.ramp is not None:  # stages held within the step's timeout (bot.ramp)
            def call():
                return ramp.run(services, svc, req, step, region, position=position, attempt=attempt, notes=notes,
                                stop=stop)
            budget += GRACE
        elif step.action.split(".")[0] in KINDS:
            variables = run_vars(svc.name, req.kind.value, req.from_region, req.to_region, region, req.id)
            key = idempotency_key(variables, step, _position(svc, req, step, position), attempt)

            def call():
                return perform(services, step, variables, key=key, notes=notes, stop=stop)
            budget += GRACE
        else:
            def call():
                return act(services, svc, step.action, step.source, region, allow_data_loss=step.allow_data_loss)
        try:
            result = _with_timeout(call, budget)
        except FutureTimeout:
            raise StepFailed(f"no result within {budget:g}s; the change may still "
                             "complete: check before rolling back", output | dict(notes)) from None
        except IntegrationError as e:
            raise StepFailed(str(e), output | dict(notes) | {"error_kind": e.kind.value}) from None
        except Exception as e:
            raise StepFailed(f"{type(e).__name__}: {e}", output | dict(notes)) from None
        output |= {"summary": result.summary, "changed": result.changed, "details": result.details}
    if step.verify is not None:
        output["verify"] = verify(services, svc, req, step.verify)
    return output


def _position(svc: ServiceConfig, req: ChangeRequest, step: Step, given: int | None) -> int | None:
    if given is not None:
        return given
    steps = svc.runbooks.steps(req.kind.value, getattr(req, "scenario", None) or None)
    return next((i for i, st in enumerate(steps) if st is step or st == step), None)


def verify(services: Services, svc: ServiceConfig, req: ChangeRequest, v: Verify,
           sleep=time.sleep) -> dict[str, Any]:
    """Poll until every condition holds; StepFailed with the last values when time is up."""
    deadline = time.monotonic() + v.within.total_seconds()
    while True:
        failing, read = unmet(services, svc, req, v)
        if not failing:
            return {"verified": read}
        if time.monotonic() >= deadline:
            raise StepFailed("verify failed after " f"{v.within.total_seconds():g}s: " + "; ".join(failing.values()),
                             {"verify_failing": failing})
        sleep(min(v.interval.total_seconds(), max(0.0, deadline - time.monotonic())))


def wait(services: Services, svc: ServiceConfig, req: ChangeRequest, w: WaitSpec, budget: float,
         stop: threading.Event | None = None, sleep: Callable[[float], Any] | None = None,
         clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """A ``wait`` step: ``duration``, or ``until`` held for ``hold`` without a break, within
    ``budget`` seconds. ``sleep`` and ``clock`` are injectable, so tests drive the time."""
    pause = sleep or (stop.wait if stop is not None else time.sleep)
    started = clock()
    deadline = started + budget
    if w.duration is not None:
        seconds = w.duration.total_seconds()
        if seconds > budget:
            raise StepFailed(f"the wait of {format_duration(w.duration)} is longer than the step's timeout",
                             {"waited_s": 0})
        pause(seconds)
        if stop is not None and stop.is_set():
            raise StepFailed("stopped while waiting", {"waited_s": round(clock() - started, 3)})
        return {"summary": f"waited {format_duration(w.duration)}", "waited_s": round(clock() - started, 3)}
    hold, held_since, failing = w.hold.total_seconds(), None, {}
    while True:
        failing, read = unmet(services, svc, req, w.until)
        now = clock()
        held_since = None if failing else (now if held_since is None else held_since)
        if held_since is not None and now - held_since >= hold:
            return {"summary": f"{_until_text(w.until, req)} held for {format_duration(w.hold)}",
                    "verified": read, "waited_s": round(now - started, 3)}
        if now >= deadline or (stop is not None and stop.is_set()):
            why = "; ".join(failing.values()) if failing else \
                f"held {now - held_since:g}s of {hold:g}s"  # type: ignore[operator]
            raise StepFailed(f"{_until_text(w.until, req)} did not hold for {format_duration(w.hold)} "
                             f"within {budget:g}s: {why}", {"waited_s": round(now - started, 3),
                                                            "verify_failing": failing})
        pause(max(0.0, min(w.interval.total_seconds(), deadline - now)))


def _until_text(c, req: Any = None) -> str:
    where = (lambda s: side(req, s)) if req is not None else (lambda s: s)
    parts = [f"{where(c.healthy)} healthy" if c.healthy else "",
             f"lag below {format_duration(c.lag_below)}" if c.lag_below is not None else "",
             f"traffic in {where(c.traffic_in)}" if c.traffic_in else "",
             f"writer in {where(c.writer_in)}" if c.writer_in else ""]
    return " and ".join(p for p in parts if p)


def _wait_text(w: WaitSpec, req: Any) -> str:
    if w.duration is not None:
        return f"would wait {format_duration(w.duration)}"
    held = f" for {format_duration(w.hold)}" if w.hold else ""
    return f"would wait until {_until_text(w.until, req)}{held}, reading every {format_duration(w.interval)}"
