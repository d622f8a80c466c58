"""What the step-kind tests share: services from a config text, a change request that is
not stored (a step only reads it), the text of ``/dr plan``, and a clock driven by sleep."""
from __future__ import annotations

from bot.config import parse_config
from bot.store.models import ChangeRequest, RequestKind
from bot.wiring import build_services
from commands.router import dispatch
from tests.helpers import ALICE

BASE = """
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {{lag: 5, jitter: 0}}
{sources}
approvals:
  required_approvals: 1
  approvers: [UBOB, UCAROL]
services:
  - name: orders
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {{source: sim}}
    health: {{us-east-1: sim, us-west-2: sim}}
    traffic: {{source: sim}}
    database: {{source: sim}}
    runbooks:
      failover:
{steps}
"""


def indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line if line.strip() else line for line in text.strip("\n").splitlines())


def config_text(sources: str, steps: str) -> str:
    return BASE.format(sources=indent(sources, 2), steps=indent(steps, 8))


def services_for(sources: str, steps: str, tmp_path, env: dict | None = None, clients: dict | None = None):
    loaded = parse_config(config_text(sources, steps), "steps-test.yaml", env or {})
    return build_services(loaded, db_url=f"sqlite:///{tmp_path}/drbot.db", clients=clients)


def a_request(kind: RequestKind = RequestKind.FAILOVER, request_id: int = 41) -> ChangeRequest:
    return ChangeRequest(id=request_id, kind=kind, service="orders", from_region="us-east-1",
                         to_region="us-west-2", reason="region degraded", requester="UALICE")


def plan_text(services, words: str = "plan orders") -> str:
    return services.renderer.text(dispatch(services, ALICE, words))


class FakeTime:
    """A monotonic clock that only moves when ``sleep`` is called."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
