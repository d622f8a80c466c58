"""A fake PagerDuty Events API v2 over HTTP (``POST /v2/enqueue``), with the documented
shapes: 202 ``{status: "success", message: "Event processed", dedup_key}``; 400
``{status: "invalid event", message: "Event object is invalid", errors: [...]}``. Alerts
are kept per (routing key, dedup key) as PagerDuty keeps them: a trigger on an open alert
is merged into it (its severity and summary updated), acknowledge and resolve act on the
open alert of the same routing key, a trigger after a resolve opens a new alert.

The REST API's ``GET /oncalls?schedule_ids[]=ID&include[]=users`` (who is on call, for
on-call approval slots) answers from ``on_call`` (schedule ID -> list of (user id, name,
e-mail)); it needs ``Authorization: Token token=API_TOKEN`` (401 otherwise) and counts
in ``oncall_reads()``. ``schedule_faults.fail(...)`` fails only those reads.

Faults: ``fail(status, times, retry_after)`` answers the next requests with that status
(429 with a Retry-After header when given)."""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

from tests.fakes.json_server import Answer, JsonServer, Request

SEVERITIES = ("critical", "error", "warning", "info")


class Faults:
    """Answers to give instead of the real ones, oldest first (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queue: list[Answer] = []

    def fail(self, status: int, times: int = 1, retry_after: float | None = None, body: dict | None = None) -> None:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        with self._lock:
            self._queue += [Answer(status, body or {"status": "error", "message": f"injected HTTP {status}"},
                                   headers) for _ in range(times)]

    def next(self) -> Answer | None:
        with self._lock:
            return self._queue.pop(0) if self._queue else None


@dataclass
class PdAlert:
    routing_key: str
    dedup_key: str
    summary: str
    severity: str
    status: str = "triggered"
    triggers: int = 1
    custom_details: dict = field(default_factory=dict)


class FakePagerDuty(JsonServer):
    def __init__(self, api_token: str = "pd-rest-token"):
        super().__init__()
        self.faults = Faults()
        self.alerts: list[PdAlert] = []
        self.api_token = api_token
        self.on_call: dict[str, list[tuple[str, str, str]]] = {}
        self.schedule_faults = Faults()

    def oncall_reads(self) -> list[Request]:
        return self.calls("GET", "/oncalls")

    def _oncalls(self, req: Request) -> Answer:
        if req.headers.get("authorization") != f"Token token={self.api_token}":
            return Answer(401, {"error": {"message": "Unauthorized", "code": 2006}})
        injected = self.schedule_faults.next()
        if injected is not None:
            return injected
        with_users = "users" in req.query.get("include[]", [])
        entries = []
        with self.lock:
            for sid in req.query.get("schedule_ids[]", []):
                for uid, name, email in self.on_call.get(sid, []):
                    user = {"id": uid, "type": "user_reference", "summary": name,
                            "self": f"https://api.pagerduty.com/users/{uid}"}
                    if with_users:
                        user |= {"type": "user", "name": name, "email": email}
                    entries.append({"escalation_level": 1, "start": None, "end": None, "user": user,
                                    "schedule": {"id": sid, "type": "schedule_reference", "summary": sid},
                                    "escalation_policy": {"id": "PEP0001", "type": "escalation_policy_reference"}})
        return Answer(200, {"oncalls": entries, "limit": 25, "offset": 0, "more": False, "total": None})

    def open_alert(self, routing_key: str, dedup_key: str) -> PdAlert | None:
        with self.lock:
            return next((a for a in self.alerts if a.routing_key == routing_key and a.dedup_key == dedup_key
                         and a.status != "resolved"), None)

    def alerts_for(self, dedup_key: str) -> list[PdAlert]:
        with self.lock:
            return [a for a in self.alerts if a.dedup_key == dedup_key]

    def enqueued(self, action: str | None = None, ok_only: bool = True) -> list[Request]:
        return [r for r in self.calls("POST", "/v2/enqueue") if (not ok_only or r.status == 202)
                and (action is None or (r.json or {}).get("event_action") == action)]

    @staticmethod
    def _invalid(*errors: str) -> Answer:
        return Answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)})

    def handle(self, req: Request) -> Answer:
        if req.method == "GET" and req.path == "/oncalls":
            return self._oncalls(req)
        if req.method != "POST" or req.path != "/v2/enqueue":
            return Answer(404, {"status": "not found", "message": "Not Found"})
        injected = self.faults.next()
        if injected is not None:
            return injected
        event = req.json if isinstance(req.json, dict) else {}
        key, action = str(event.get("routing_key", "")), event.get("event_action")
        if len(key) != 32:
            return self._invalid("Length of 'routing_key' is incorrect (should be 32 characters)")
        if action not in ("trigger", "acknowledge", "resolve"):
            return self._invalid("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
        dedup = str(event.get("dedup_key") or uuid.uuid4().hex)
        with self.lock:
            return self._apply(key, action, dedup, event)

    def _apply(self, key: str, action: str, dedup: str, event: dict) -> Answer:
        alert = self.open_alert(key, dedup)
        if action == "trigger":
            payload = event.get("payload") if isinstance(event.get("payload"), dict) else {}
            missing = [f"'payload.{f}' is missing or blank" for f in ("summary", "source", "severity")
                       if not payload.get(f)]
            if missing:
                return self._invalid(*missing)
            if payload["severity"] not in SEVERITIES:
                return self._invalid("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
            if alert is None:
                self.alerts.append(PdAlert(key, dedup, payload["summary"], payload["severity"],
                                           custom_details=payload.get("custom_details") or {}))
            else:
                alert.triggers += 1
                alert.summary, alert.severity = payload["summary"], payload["severity"]
        elif alert is not None:  # acknowledge or resolve an open alert; else PagerDuty drops it
            alert.status = "acknowledged" if action == "acknowledge" else "resolved"
        return Answer(202, {"status": "success", "message": "Event processed", "dedup_key": dedup})
