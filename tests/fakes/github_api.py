"""A local fake of the GitHub REST API's issues (the calls drbot makes), over real HTTP.

    POST /repos/{owner}/{repo}/issues      {title, body, labels} -> 201 {id, number, html_url,
                                           title, body, labels: [{name}], state}; 422
                                           {message: "Validation Failed", errors} without a title
    GET  /repos/{owner}/{repo}/issues      ?labels=A,B&state=all -> [issue, ...] having every label
    GET  /repos/{owner}/{repo}             {full_name, has_issues}

``Authorization: Bearer TOKEN``, else 401 {message: "Bad credentials"}; another repository
404 {message: "Not Found"}. ``fail_next(status, times, after=False, headers=None)``: with
``after``, the request is processed and then answered with ``status`` (a create whose answer
is lost); without, refused before anything happens."""
from __future__ import annotations

from tests.fakes.json_server import Answer, JsonServer, Request


class FakeGithub(JsonServer):
    def __init__(self, token: str = "ghp-test-token", repository: str = "acme/dr-followups"):
        super().__init__()
        self.token, self.repository = token, repository
        self.issues: dict[int, dict] = {}
        self._fail: list[tuple[int, bool, dict]] = []

    def fail_next(self, status: int, times: int = 1, after: bool = False, headers: dict | None = None) -> None:
        with self.lock:
            self._fail += [(status, after, headers or {})] * times

    def _issue(self, number: int) -> dict:
        i = self.issues[number]
        return {"id": 1000 + number, "number": number, "state": "open", "title": i["title"], "body": i["body"],
                "labels": [{"name": n} for n in i["labels"]],
                "html_url": f"https://github.com/{self.repository}/issues/{number}"}

    def handle(self, req: Request) -> Answer:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return Answer(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        with self.lock:
            failing = self._fail.pop(0) if self._fail else None
        if failing is not None and not failing[1]:
            return Answer(failing[0], {"message": f"injected HTTP {failing[0]}"}, failing[2])
        answer = self._serve(req)
        if failing is not None:
            return Answer(failing[0], {"message": f"injected HTTP {failing[0]}"}, failing[2])
        return answer

    def _serve(self, req: Request) -> Answer:
        base = f"/repos/{self.repository}"
        if req.path == base and req.method == "GET":
            return Answer(200, {"full_name": self.repository, "has_issues": True})
        if req.path != f"{base}/issues":
            return Answer(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
        if req.method == "POST":
            body = req.json if isinstance(req.json, dict) else {}
            if not str(body.get("title") or "").strip():
                return Answer(422, {"message": "Validation Failed",
                                    "errors": [{"resource": "Issue", "field": "title", "code": "missing_field"}]})
            with self.lock:
                number = len(self.issues) + 1
                self.issues[number] = {"title": body["title"], "body": body.get("body") or "",
                                       "labels": [str(x) for x in body.get("labels") or []]}
                return Answer(201, self._issue(number))
        if req.method == "GET":
            wanted = [x for x in (req.query.get("labels") or [""])[0].split(",") if x]
            with self.lock:
                found = [self._issue(n) for n, i in sorted(self.issues.items(), reverse=True)
                         if all(w in i["labels"] for w in wanted)]
            per_page = int((req.query.get("per_page") or ["30"])[0])
            return Answer(200, found[:per_page])
        return Answer(404, {"message": "Not Found"})
