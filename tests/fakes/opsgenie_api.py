"""A fake Opsgenie Alert API over HTTP, with the documented shapes: ``POST /v2/alerts``
(create; an open alert with the same alias is de-duplicated: its count goes up),
``POST /v2/alerts/{alias}/acknowledge|close?identifierType=alias``, ``PUT
/v2/alerts/{alias}/priority?identifierType=alias``, ``GET /v2/alerts``;
every request needs ``Authorization: GenieKey KEY``. Writes answer 202 ``{result, took,
requestId}`` (processed at once here); a bad body 422 with ``errors``; an unknown key 401.

Who Is On Call: ``GET /v2/schedules/{name}/on-calls?flat=true&scheduleIdentifierType=name``
answers ``data.onCallRecipients`` from ``on_call`` (schedule name -> usernames); an unknown
schedule 404. ``oncall_reads()`` counts them.

Faults: ``faults.fail(status, times, retry_after)`` like the PagerDuty fake."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote

from tests.fakes.json_server import Answer, JsonServer, Request
from tests.fakes.pagerduty_api import Faults

ACTION = re.compile(r"/v2/alerts/([^/]+)/(acknowledge|close|priority)")
ON_CALLS = re.compile(r"/v2/schedules/([^/]+)/on-calls")
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")


@dataclass
class OgAlert:
    alias: str
    message: str
    priority: str
    responders: list = field(default_factory=list)
    status: str = "open"
    acknowledged: bool = False
    count: int = 1
    details: dict = field(default_factory=dict)


def _ok(result: str = "Request will be processed") -> Answer:
    return Answer(202, {"result": result, "took": 0.012, "requestId": str(uuid.uuid4())})


class FakeOpsgenie(JsonServer):
    def __init__(self, api_key: str):
        super().__init__()
        self.api_key = api_key
        self.faults = Faults()
        self.alerts: list[OgAlert] = []
        self.on_call: dict[str, list[str]] = {}

    def oncall_reads(self) -> list[Request]:
        return [r for r in self.calls("GET") if ON_CALLS.fullmatch(r.path)]

    def open_alert(self, alias: str) -> OgAlert | None:
        with self.lock:
            return next((a for a in self.alerts if a.alias == alias and a.status == "open"), None)

    def writes(self, ok_only: bool = True) -> list[Request]:
        return [r for r in self.calls("POST") if not ok_only or r.status == 202]

    def handle(self, req: Request) -> Answer:
        if req.headers.get("authorization") != f"GenieKey {self.api_key}":
            return Answer(401, {"message": "Could not authenticate", "took": 0.0, "requestId": str(uuid.uuid4())})
        injected = self.faults.next()
        if injected is not None:
            return injected
        m = ON_CALLS.fullmatch(req.path)
        if req.method == "GET" and m:
            name = unquote(m.group(1))
            with self.lock:
                people = self.on_call.get(name)
            if people is None or req.query.get("scheduleIdentifierType") != ["name"]:
                return Answer(404, {"message": "Schedule with identifier [" + name + "] does not exist",
                                    "took": 0.0, "requestId": str(uuid.uuid4())})
            flat = req.query.get("flat") == ["true"]
            data = {"_parent": {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), "name": name, "enabled": True}}
            data |= ({"onCallRecipients": list(people)} if flat else
                     {"onCallParticipants": [{"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, p)), "name": p, "type": "user"}
                                             for p in people]})
            return Answer(200, {"data": data, "took": 0.1, "requestId": str(uuid.uuid4())})
        if req.method == "GET" and req.path == "/v2/alerts":
            with self.lock:
                data = [{"alias": a.alias, "message": a.message, "status": a.status} for a in self.alerts[:1]]
            return Answer(200, {"data": data, "took": 0.01, "requestId": str(uuid.uuid4())})
        if req.method == "POST" and req.path == "/v2/alerts":
            return self._create(req.json if isinstance(req.json, dict) else {})
        m = ACTION.fullmatch(req.path)
        if m and req.query.get("identifierType") == ["alias"] and req.method == (
                "PUT" if m.group(2) == "priority" else "POST"):
            alert = self.open_alert(unquote(m.group(1)))
            with self.lock:
                if alert is not None:  # Opsgenie answers 202 and then finds nothing to do otherwise
                    if m.group(2) == "close":
                        alert.status = "closed"
                    elif m.group(2) == "priority":
                        alert.priority = (req.json or {}).get("priority", alert.priority)
                    else:
                        alert.acknowledged = True
            return _ok()
        return Answer(404, {"message": "Not found", "took": 0.0, "requestId": str(uuid.uuid4())})

    def _create(self, body: dict) -> Answer:
        errors = {}
        if not str(body.get("message", "")).strip():
            errors["message"] = "Message can not be empty."
        elif len(body["message"]) > 130:
            errors["message"] = "Message can not be longer than 130 characters."
        if body.get("priority", "P3") not in PRIORITIES:
            errors["priority"] = "Priority should be one of [P1, P2, P3, P4, P5]"
        if errors:
            return Answer(422, {"message": "Request body is not processable. Please check the errors.",
                                "errors": errors, "took": 0.0, "requestId": str(uuid.uuid4())})
        alias = str(body.get("alias") or uuid.uuid4())
        with self.lock:
            alert = next((a for a in self.alerts if a.alias == alias and a.status == "open"), None)
            if alert is not None:
                alert.count += 1
            else:
                self.alerts.append(OgAlert(alias, body["message"], body.get("priority", "P3"),
                                           list(body.get("responders") or []), details=dict(body.get("details") or {})))
        return _ok()
