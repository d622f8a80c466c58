"""A local fake of the Atlassian Statuspage REST API v1, served over real HTTP.

Point the ``statuspage`` backend (or anything else speaking the API) at ``fake.url``:

    with FakeStatuspage(page_id="pg1", api_key="key-1") as fake:
        options = {"page_id": "pg1", "api_key": "key-1", "base_url": fake.url}
        ...                                   # drive the code under test
        [incident] = fake.incidents.values()  # the stored incident, in Statuspage's shape
        posts = fake.requests_for("POST")     # what was sent, in order

Endpoints (under ``/v1``; every one needs ``Authorization: OAuth <api_key>``, else 401):
    GET   /pages/{page_id}                                  the page
    GET   /pages/{page_id}/components                       components, by position
    GET   /pages/{page_id}/incidents?q=&limit=&page=        all incidents, newest first;
                                                            ``q`` searches name, status and
                                                            update bodies (not metadata)
    GET   /pages/{page_id}/incidents/unresolved             realtime, not resolved
    GET   /pages/{page_id}/incidents/upcoming|scheduled     maintenance with status scheduled
    GET   /pages/{page_id}/incidents/active_maintenance     in_progress or verifying
    GET   /pages/{page_id}/incidents/{id}                   one incident
    POST  /pages/{page_id}/incidents                        create (201)
    PATCH|PUT /pages/{page_id}/incidents/{id}               update

Bodies are ``{"incident": {...}}`` as the real API takes them; an update's ``metadata``
replaces the incident's metadata whole (so a client sends all of it). Invalid statuses, a blank
name or unknown component ids answer 422 ``{"error": [...]}``; an unknown page or incident
404. Component ids the fake has never seen are created on first use (named after the id)
unless ``strict_components`` is set.

Failure injection, for retry/pacing tests (e.g. an outbox worker):
    fake.fail_next(429, times=2, retry_after=3)  next 2 requests: 429 + Retry-After: 3
    fake.fail_next(420)                          Statuspage's historical rate-limit status
    fake.fail_next(500, times=3)                 server errors
    fake.delay = 2.0                             every request is *processed*, then the
                                                 answer is held 2 s (a client with a
                                                 shorter timeout gives up although the
                                                 change was made); reset to 0 to stop
    fake.slow_next(2.0, method="POST")           the same for the next POST only

A failed (injected) request changes nothing. Every request, including refused and failed
ones, is recorded in ``fake.requests`` as a ``Request`` (method, path, query, headers,
json, at, status).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

REALTIME = ("investigating", "identified", "monitoring", "resolved")
MAINTENANCE = ("scheduled", "in_progress", "verifying", "completed")
COMPONENT_STATUSES = ("operational", "degraded_performance", "partial_outage", "major_outage",
                      "under_maintenance")
IMPACT_BY_STATUS = {"major_outage": "critical", "partial_outage": "major",
                    "degraded_performance": "minor"}
ERROR_TEXT = {420: "Rate limit exceeded", 429: "Rate limit exceeded",
              500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable"}


@dataclass
class Request:
    """One request the fake received. ``headers`` names are lower-cased; ``json`` is the
    decoded body (None when there was none); ``at`` is ``time.monotonic()`` on arrival;
    ``status`` is what the fake answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    at: float
    status: int = 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FakeStatuspage:
    page_id: str = "pg1"
    api_key: str = "test-key"
    page_name: str = "Example Status"
    strict_components: bool = False
    delay: float = 0.0
    """Seconds to hold every answer after the request has been processed."""
    components: dict[str, dict] = field(default_factory=dict, repr=False)
    """component id -> component object (Statuspage's shape); see add_component."""
    incidents: dict[str, dict] = field(default_factory=dict, repr=False)
    """incident id -> incident object (Statuspage's shape), in creation order."""
    requests: list[Request] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[tuple[int, float | None]] = []
        self._slow: list[tuple[float, str | None]] = []
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeStatuspage:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._stopping.clear()
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="FakeStatuspage", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; answers held by ``delay`` are released at once."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeStatuspage:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API base URL, the ``base_url`` option: http://127.0.0.1:PORT/v1"""
        assert self._server is not None, "FakeStatuspage is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # -- configuration and inspection -----------------------------------------------------

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``times`` requests with HTTP ``status`` (and a ``Retry-After``
        header when given) without processing them. Calls queue up in order."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * times)

    def slow_next(self, seconds: float, method: str | None = None, times: int = 1) -> None:
        """Hold the answer to the next ``times`` requests (of ``method``, if given) for
        ``seconds`` after processing them, like ``delay`` but only for those."""
        with self._lock:
            self._slow.extend([(seconds, method)] * times)

    def _take_slow(self, method: str) -> float:
        for i, (seconds, only) in enumerate(self._slow):
            if only is None or only == method:
                del self._slow[i]
                return seconds
        return 0.0

    def add_component(self, component_id: str, name: str, status: str = "operational") -> dict:
        with self._lock:
            return self._component(component_id, name, status)

    def requests_for(self, method: str | None = None, path_suffix: str = "") -> list[Request]:
        """Recorded requests, optionally only one method and paths ending with a suffix."""
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method)
                    and r.path.endswith(path_suffix)]

    def by_key(self, key: str) -> list[dict]:
        """Stored incidents whose ``metadata.drbot.key`` equals ``key``."""
        with self._lock:
            return [i for i in self.incidents.values()
                    if (i.get("metadata") or {}).get("drbot", {}).get("key") == key]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- the API (called from server threads, under the lock) ------------------------------

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:010d}"

    def _component(self, component_id: str, name: str | None = None,
                   status: str = "operational") -> dict:
        if component_id not in self.components:
            self.components[component_id] = {
                "id": component_id, "page_id": self.page_id, "group_id": None,
                "name": name or component_id, "description": None, "status": status,
                "position": len(self.components) + 1, "showcase": True, "group": False,
                "only_show_if_degraded": False, "created_at": _now(), "updated_at": _now()}
        return self.components[component_id]

    def _page(self) -> dict:
        return {"id": self.page_id, "name": self.page_name, "subdomain": "example",
                "url": "https://status.example.com", "time_zone": "UTC",
                "created_at": "2024-01-01T00:00:00.000Z", "updated_at": _now()}

    def _validate(self, data: dict, creating: bool) -> list[str]:
        errors = []
        if creating and not str(data.get("name") or "").strip():
            errors.append("Name can't be blank")
        status = data.get("status")
        if status is not None and status not in REALTIME + MAINTENANCE:
            errors.append(f"Status is not included in the list ({status})")
        for cid, cstatus in (data.get("components") or {}).items():
            if cstatus not in COMPONENT_STATUSES:
                errors.append(f"Component status {cstatus!r} is not valid")
        for cid in [*(data.get("component_ids") or []), *(data.get("components") or {})]:
            if self.strict_components and cid not in self.components:
                errors.append(f"Component {cid} not found")
        return errors

    def _apply(self, incident: dict, data: dict) -> None:
        now = _now()
        for key in ("name", "impact_override", "scheduled_for", "scheduled_until",
                    "scheduled_remind_prior", "scheduled_auto_in_progress",
                    "scheduled_auto_completed", "auto_transition_to_maintenance_state",
                    "auto_transition_to_operational_state", "metadata"):
            if key in data:
                incident[key] = data[key]
        affected = list(incident.get("_component_ids", []))
        if "component_ids" in data:
            affected = list(data["component_ids"] or [])
        for cid in data.get("components") or {}:
            if cid not in affected:
                affected.append(cid)
        changes = []
        for cid in affected:
            component = self._component(cid)
            new = (data.get("components") or {}).get(cid)
            if new is not None and new != component["status"]:
                changes.append({"code": cid, "name": component["name"],
                                "old_status": component["status"], "new_status": new})
                component["status"], component["updated_at"] = new, now
        incident["_component_ids"] = affected
        incident["components"] = [dict(self.components[cid]) for cid in affected]
        old_status, status = incident.get("status"), data.get("status") or incident.get("status")
        incident["status"], incident["updated_at"] = status, now
        if status == "monitoring" and not incident.get("monitoring_at"):
            incident["monitoring_at"] = now
        if status in ("resolved", "completed"):
            incident["resolved_at"] = incident.get("resolved_at") or now
        worst = [IMPACT_BY_STATUS.get(c["status"]) for c in incident["components"]]
        incident["impact"] = incident.get("impact_override") or (
            "maintenance" if status in MAINTENANCE else
            next((i for i in ("critical", "major", "minor") if i in worst), "none"))
        if data.get("body") or status != old_status or changes:
            incident["incident_updates"].insert(0, {
                "id": self._next_id("upd"), "incident_id": incident["id"], "status": status,
                "body": data.get("body") or "", "created_at": now, "display_at": now,
                "updated_at": now, "affected_components": changes,
                "deliver_notifications": data.get("deliver_notifications", True)})

    def _public(self, incident: dict) -> dict:
        return {k: v for k, v in incident.items() if not k.startswith("_")}

    def _list(self, which: str, query: dict[str, str]) -> list[dict]:
        newest = list(reversed(self.incidents.values()))
        filters = {
            "unresolved": lambda i: i["status"] in REALTIME[:3],
            "upcoming": lambda i: i["status"] == "scheduled",
            "scheduled": lambda i: i["status"] == "scheduled",
            "active_maintenance": lambda i: i["status"] in ("in_progress", "verifying"),
        }
        if which:
            found = [i for i in newest if filters[which](i)]
            per_page = int(query.get("per_page") or 100)
        else:
            q = (query.get("q") or "").lower()
            found = [i for i in newest if not q or q in i["name"].lower() or q == i["status"]
                     or any(q in u["body"].lower() for u in i["incident_updates"])]
            per_page = min(int(query.get("limit") or 100), 100)
        start = (max(int(query.get("page") or 1), 1) - 1) * per_page
        return [self._public(i) for i in found[start:start + per_page]]

    def _handle(self, method: str, parts: list[str], query: dict[str, str],
                body: Any) -> tuple[int, Any]:
        if len(parts) < 3 or parts[:2] != ["v1", "pages"] or parts[2] != self.page_id:
            return 404, {"error": "The requested resource could not be found."}
        rest = parts[3:]
        if method == "GET" and not rest:
            return 200, self._page()
        if method == "GET" and rest == ["components"]:
            return 200, sorted(self.components.values(), key=lambda c: c["position"])
        if not rest or rest[0] != "incidents" or len(rest) > 2:
            return 404, {"error": "The requested resource could not be found."}
        if len(rest) == 1:
            if method == "GET":
                return 200, self._list("", query)
            if method != "POST":
                return 405, {"error": "Method not allowed"}
            data = (body or {}).get("incident") if isinstance(body, dict) else None
            if not isinstance(data, dict):
                return 400, {"error": "incident is missing"}
            errors = self._validate(data, creating=True)
            if errors:
                return 422, {"error": errors}
            now = _now()
            incident_id = self._next_id("inc")
            incident = {
                "id": incident_id, "page_id": self.page_id, "name": data["name"],
                "status": None, "impact": "none", "impact_override": None,
                "shortlink": f"https://stspg.io/{incident_id[-6:]}", "created_at": now,
                "updated_at": now, "monitoring_at": None, "resolved_at": None,
                "started_at": now, "scheduled_for": None, "scheduled_until": None,
                "scheduled_remind_prior": False, "scheduled_auto_in_progress": False,
                "scheduled_auto_completed": False, "metadata": {}, "postmortem_body": None,
                "components": [], "incident_updates": []}
            data = {**data, "status": data.get("status") or "investigating"}
            self._apply(incident, data)
            self.incidents[incident_id] = incident
            return 201, self._public(incident)
        name = rest[1]
        if method == "GET" and name in ("unresolved", "upcoming", "scheduled",
                                        "active_maintenance"):
            return 200, self._list(name, query)
        incident = self.incidents.get(name)
        if incident is None:
            return 404, {"error": "The requested resource could not be found."}
        if method == "GET":
            return 200, self._public(incident)
        if method not in ("PATCH", "PUT"):
            return 405, {"error": "Method not allowed"}
        data = (body or {}).get("incident") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return 400, {"error": "incident is missing"}
        errors = self._validate(data, creating=False)
        if errors:
            return 422, {"error": errors}
        self._apply(incident, data)
        return 200, self._public(incident)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeStatuspage

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _serve(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        request = Request(self.command, url.path, query,
                          {k.lower(): v for k, v in self.headers.items()}, body,
                          time.monotonic())
        with fake._lock:
            fake.requests.append(request)
            failure = fake._failures.pop(0) if fake._failures else None
            if failure is not None:
                status, retry_after = failure
                answer: tuple[int, Any] = (status, {"error": ERROR_TEXT.get(status, "Error")})
            elif self.headers.get("Authorization", "") != f"OAuth {fake.api_key}":
                retry_after, answer = None, (401, {"error": "Could not authenticate"})
            elif isinstance(body, str):
                retry_after, answer = None, (400, {"error": "The body is not valid JSON"})
            else:
                retry_after = None
                answer = fake._handle(self.command, [p for p in url.path.split("/") if p],
                                      query, body)
            request.status = answer[0]
            hold = max(fake.delay, fake._take_slow(self.command))
        if hold:
            fake._stopping.wait(hold)
        extra = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        payload = json.dumps(answer[1]).encode()
        try:
            self.send_response(answer[0])
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout) before the answer
            pass


@pytest.fixture
def fake_statuspage() -> Iterator[FakeStatuspage]:
    """A running FakeStatuspage (page "pg1", API key "test-key") for one test."""
    with FakeStatuspage() as fake:
        yield fake
