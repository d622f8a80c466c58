"""What the step-kind tests share: services from a config text, a change request that is
not stored (a step only reads it), the text of ``/dr plan``, and a clock driven by sleep."""
from __future__ import annotations

from bot.config import parse_config
from bot.store.models import ChangeRequest, RequestKind
from bot.wiring import build_services
from commands.router import dispatch
from tests.estates import estate
from tests.helpers import ALICE

def config_text(sources: str, steps: str) -> str:
    return estate(sources, steps, approvers=("UBOB", "UCAROL"))


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
