"""The sandbox estate most scenario tests start from: one service in us-east-1 with a
standby in us-west-2, its lag and health read from the ``sim`` sandbox source, and one
failover runbook. Each test adds its own sources and steps and names the backends that
move traffic and the writer; everything else is the same everywhere."""
from __future__ import annotations


def indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line if line.strip() else line for line in text.strip("\n").splitlines())


def estate(sources: str = "", steps: str = "", *, service: str = "orders", traffic: str | None = "sim",
           database: str | None = "sim", health: str = "sim", approvers: tuple[str, ...] = ("UBOB",),
           required: int = 1, tier: str = "medium", lag_seconds: float = 5, extra: str = "") -> str:
    """The config text: ``sources`` and ``steps`` are YAML written at column 0 (a mapping of
    sources; a list of failover steps), indented here; ``extra`` is appended at top level."""
    controls = "".join(f"    {key}: {{source: {name}}}\n" for key, name in (("traffic", traffic), ("database", database))
                       if name)
    runbook = f"    runbooks:\n      failover:\n{indent(steps, 8)}\n" if steps.strip() else ""
    return f"""regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      {service}: {{lag: {lag_seconds:g}, jitter: 0}}
{indent(sources, 2)}
approvals:
  required_approvals: {required}
  approvers: [{', '.join(approvers)}]
services:
  - name: {service}
    tier: {tier}
    rpo: 5m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    lag: {{source: sim}}
    health: {{us-east-1: {health}, us-west-2: {health}}}
{controls}{runbook}{extra}"""
