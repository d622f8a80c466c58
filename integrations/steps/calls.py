"""What the core asks of the step backends: small frozen call descriptions, in a module
that imports no client library, so the core does not load httpx, kubernetes or boto3 for
step kinds no source uses (the backends themselves are imported on first use)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    expect_status: tuple[int, ...] = (200,)
    expect: str | None = None
    retries: int = 3
    backoff: float = 1.0
    idempotency_key: str = ""

    def describe(self) -> str:
        wanted = " or ".join(map(str, self.expect_status))
        return f"{self.method} {self.url} expecting {wanted}" + (f" and {self.expect}" if self.expect else "")


@dataclass(frozen=True)
class ObjectRef:
    """A Kubernetes object: its kind, namespace and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.lower()} {self.name} (namespace {self.namespace})"


@dataclass(frozen=True)
class ArgoCall:
    template: str
    parameters: dict[str, str] = field(default_factory=dict)
    cluster_scope: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SsmCall:
    document: str
    parameters: dict[str, list[str]] = field(default_factory=dict)
    document_version: str | None = None
    key: str = ""
    """Idempotency: the same key gives the same ClientToken."""
