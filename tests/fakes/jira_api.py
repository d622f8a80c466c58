"""A local fake of the Jira Cloud REST API v3 (the calls drbot makes), over real HTTP.

    POST /rest/api/3/issue            create: {"fields": {project: {key}, issuetype: {name},
                                      summary, description (ADF doc), labels, duedate?}}
                                      -> 201 {id, key, self}; 400 {errorMessages, errors}
                                      for a missing summary, an unknown project or issue
                                      type, a bad duedate
    GET  /rest/api/3/search/jql       ?jql=project = "OPS" AND labels = "X" -> {issues: [...]}
    GET  /rest/api/3/project/{key}    the project, or 404 {errorMessages}

Basic auth with ``email`` and ``token``, else 401. ``fail_next(status, times, after=True)``:
with ``after``, the request is processed and then answered with ``status`` (a create whose
answer is lost); without, it is refused before anything happens.
"""
from __future__ import annotations

import base64
import re
from datetime import date

from tests.fakes.json_server import Answer, JsonServer, Request

_LABEL = re.compile(r'labels\s*=\s*"([^"]+)"')


class FakeJira(JsonServer):
    def __init__(self, email: str = "drbot@example.com", token: str = "jira-token", project: str = "OPS"):
        super().__init__()
        self.auth = "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()
        self.project = project
        self.issues: dict[str, dict] = {}  # key -> fields as sent
        self._fail: list[tuple[int, bool]] = []

    def fail_next(self, status: int, times: int = 1, after: bool = False) -> None:
        with self.lock:
            self._fail += [(status, after)] * times

    def handle(self, req: Request) -> Answer:
        if req.headers.get("authorization") != self.auth:
            return Answer(401, {"errorMessages": ["You are not authenticated."]})
        with self.lock:
            fail = self._fail.pop(0) if self._fail else None
        if fail is not None and not fail[1]:
            return Answer(fail[0], {"errorMessages": ["injected failure"]}, {"Retry-After": "1"})
        answer = self._serve(req)
        return Answer(fail[0], {"errorMessages": ["injected failure"]}) if fail is not None else answer

    def _serve(self, req: Request) -> Answer:
        if req.method == "GET" and req.path == f"/rest/api/3/project/{self.project}":
            return Answer(200, {"key": self.project, "name": "Operations", "id": "10000"})
        if req.method == "GET" and req.path.startswith("/rest/api/3/project/"):
            return Answer(404, {"errorMessages": [f"No project could be found with key '{req.path.rsplit('/', 1)[1]}'."]})
        if req.method == "GET" and req.path == "/rest/api/3/search/jql":
            wanted = _LABEL.search(req.query.get("jql", [""])[0])
            with self.lock:
                found = [{"id": str(i), "key": k, "fields": {"summary": f["summary"]}}
                         for i, (k, f) in enumerate(self.issues.items()) if wanted and wanted.group(1) in f["labels"]]
            return Answer(200, {"issues": found[:int(req.query.get("maxResults", ["50"])[0])]})
        if req.method == "POST" and req.path == "/rest/api/3/issue":
            return self._create((req.json or {}).get("fields") or {})
        return Answer(404, {"errorMessages": ["not found"]})

    def _create(self, fields: dict) -> Answer:
        errors = {}
        if (fields.get("project") or {}).get("key") != self.project:
            errors["project"] = "valid project is required"
        if (fields.get("issuetype") or {}).get("name") not in ("Task", "Bug", "Story"):
            errors["issuetype"] = "The issue type selected is invalid."
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if fields.get("description", {}).get("type") != "doc":
            errors["description"] = "Operation value must be an Atlassian Document."
        if "duedate" in fields:
            try:
                date.fromisoformat(fields["duedate"])
            except (TypeError, ValueError):
                errors["duedate"] = "Error parsing date string"
        if errors:
            return Answer(400, {"errorMessages": [], "errors": errors})
        with self.lock:
            key = f"{self.project}-{len(self.issues) + 1}"
            self.issues[key] = fields
        return Answer(201, {"id": str(10000 + len(self.issues)), "key": key, "self": f"{self.url}/rest/api/3/issue/{key}"})
