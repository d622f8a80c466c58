"""Helpers shared by several test modules: bounded polling, reading rows back from the
store, the people who ask and approve, the plain sandbox config, and a real
``python -m transports run --mode http`` subprocess."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import httpx
from sqlmodel import Session, col, select

from bot.actor import Actor
from bot.store.incident_tables import Alert
from bot.store.models import ChangeRequest, Run
from tests.slack_client import SlackSender

ROOT = Path(__file__).resolve().parent.parent

# -- people ---------------------------------------------------------------------------------

ALICE = Actor("UALICE", "alice", "slack", "C_INC")
BOB = Actor("UBOB", "bob", "slack", "C_INC")
CAROL = Actor("UCAROL", "carol", "slack", "C_INC")
DAVE = Actor("UDAVE", "dave", "slack", "C_INC")
ERIN = Actor("UERIN", "erin", "slack", "C_INC")
MALLORY = Actor("UMALLORY", "mallory", "slack", "C_INC")

# -- config ---------------------------------------------------------------------------------

SANDBOX_CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 20, jitter: 0}
      payments: {lag: 100, jitter: 0}
services:
  - name: orders
    tier: critical
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
  - name: payments
    rpo: 5m
    rto: 30m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
"""
"""Two sandbox services, orders (critical) and payments, with readings only."""

TWO_STEP_CONFIG = """
regions: [us-east-1, us-west-2]
sources:
  sim: {kind: sandbox, timeout: 1.0, profiles: {orders: {lag: 20, jitter: 0}}}
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {source: sim}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    database: {source: sim}
    runbooks:
      failover:
        - {name: switch writer, action: database.switchover}
        - {name: shift traffic, action: traffic.shift}
      failback:
        - {name: switch writer back, action: database.switchover}
        - {name: shift traffic back, action: traffic.shift}
approvals:
  required_approvals: 1
  approvers: [UBOB]
  expires: 30m
"""
"""orders in the sandbox with 2-step failover and failback runbooks; UBOB approves."""

# -- waiting --------------------------------------------------------------------------------


def wait_until(what: str, predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05,
               details: Callable[[], str] | None = None):
    """Poll ``predicate`` until it returns something truthy and return that; fail after
    ``timeout`` seconds, adding ``details()`` (e.g. process logs) to the message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


# -- reading the store ----------------------------------------------------------------------


def rows(services, model, *where, order=None) -> list:
    """The rows of ``model`` matching ``where``, ordered by ``order`` (default: id)."""
    with Session(services.engine) as s:
        stmt = select(model).where(*where)
        return list(s.exec(stmt.order_by(order if order is not None else col(model.id))))


def alerts_processed(services, timeout: float = 30.0) -> None:
    """Wait until the alert drain has processed every accepted payload: a 200 from an
    alert endpoint means stored, not yet processed (bot.alerts.drain)."""
    assert services.inbox.drain(timeout=timeout), services.inbox.waiting()


def incident_of_alert(services, fingerprint: str) -> int | None:
    """The incident the alert ``fingerprint`` (as stored: ``am:...``) joined, once processed."""
    alerts_processed(services)
    [alert] = rows(services, Alert, Alert.fingerprint == fingerprint)
    return alert.incident_id


def request_row(services, request_id: int) -> ChangeRequest | None:
    with Session(services.engine) as s:
        return s.get(ChangeRequest, request_id)


def the_request(services, service: str) -> ChangeRequest:
    """The one change request for ``service``."""
    (req,) = rows(services, ChangeRequest, ChangeRequest.service == service)
    return req


def runs_of(services, request_id: int) -> list[Run]:
    return rows(services, Run, Run.request_id == request_id)


# -- a real bot process ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BotProcess:
    """One ``python -m transports run --mode http`` (or ``socket``) subprocess against the fake
    Slack Web API; its output goes to a file, shown when a test fails. A context manager:
    stopped on exit. In Socket Mode the HTTP port still serves /healthz, /readyz, /metrics."""

    def __init__(self, tmp_path: Path, name: str, config: Path, db_url: str, fake, secret: str,
                 env: dict[str, str] | None = None, mode: str = "http", args: tuple[str, ...] = ()):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"{name}.log"
        extra = env or {}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DRBOT_"))}
        env |= {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": secret, "SLACK_API_URL": fake.base_url,
                "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1"} | extra
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "transports", "run", "--mode", mode, "--port", str(self.port), "--config", str(config),
             *args],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.sender = SlackSender(self.url, secret)

    def __enter__(self) -> BotProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not answer /healthz within {timeout}s:\n{self.output()}")
            time.sleep(0.1)

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)  # reaped: the pid is gone, as after a crash

    def stop(self) -> None:
        self.sender.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def bot_logs(bots: Iterable[BotProcess]) -> str:
    """What the bots said, for a failure message."""
    return "\n".join(f"--- {b.name} (pid {b.pid}):\n{b.output()}" for b in bots)


def answered(fake, name: str, timeout: float = 10.0):
    """The app's answer at ``fake.response_url(name)``: clicks and commands are answered after
    their ack, so a test that needs one click decided before the next waits for it here."""
    return wait_until(f"the answer at response_url {name!r}", lambda: next(
        (c for c in fake.calls("response_url") if c.params.get("_path") == f"/response/{name}"), None), timeout)


def delivered(services, timeout: float = 15.0) -> None:
    """Wait until the outbox has delivered everything queued (request messages, progress,
    posts are delivered by the outbox worker after the state change that queued them)."""
    assert services.outbox.drain(timeout=timeout), "the outbox did not deliver everything in time"
