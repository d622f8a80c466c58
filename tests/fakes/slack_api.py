"""A local fake of the Slack Web API, served over real HTTP.

Point slack_sdk at it:

    with FakeSlack() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.base_url)
        client.chat_postMessage(channel="C1", text="hi")
        [call] = fake.wait_for("chat.postMessage")

Paths served:
    POST|GET /api/<method>     Web API methods (token required), answered in Slack's shapes
    POST /response/<name>      response_url endpoints (see FakeSlack.response_url)
    POST /upload/<file_id>     upload URLs handed out by files.getUploadURLExternal

Every request is recorded as a Call, including rate-limited and refused ones.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T1"


@dataclass
class Call:
    """One request the fake received.

    params: query string and body merged (form, multipart or JSON). Fields that slack_sdk
    sends JSON-encoded inside a form (e.g. "blocks") stay strings; use parsed().
    headers: lower-cased names. status: the HTTP status the fake answered with.
    """

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int = 200
    body: bytes = b""

    def parsed(self, key: str, default: Any = None) -> Any:
        """params[key], JSON-decoded when it was sent as a JSON string."""
        value = self.params.get(key, default)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                return json.loads(value)
            except ValueError:
                pass
        return value

    @property
    def blocks(self) -> list[dict]:
        return self.parsed("blocks") or []


class FakeSlack:
    def __init__(self) -> None:
        self.usergroups: dict[str, list[str]] = {}  # usergroup id -> user ids
        self.users: dict[str, dict] = {}  # user id -> fields overriding the synthesized profile
        self.emails: dict[str, str] = {}  # e-mail address -> user id (users.lookupByEmail)
        self.messages: dict[tuple[str, str], dict] = {}  # (channel, ts) -> current message
        self.uploads: dict[str, bytes] = {}  # file_id -> uploaded content
        self.strict_updates = True  # chat.update of a message never posted -> message_not_found
        self.topics: dict[str, str] = {}  # channel -> topic (conversations.setTopic)
        self.home_views: dict[str, dict] = {}  # user -> the Home view last published (views.publish)
        self.socket_url: str | None = None  # apps.connections.open answers with it (FakeSocketMode.url)
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._rate_limits: dict[str, list[int]] = {}  # method -> [remaining, retry_after]
        self._outage: dict[str, Any] | None = None  # see outage()
        self._last_ts_us = 0
        self._counter = 0
        self._channel_names: set[str] = set()
        self._upload_names: dict[str, str] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeSlack:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeSlack", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        assert self._server is not None, "FakeSlack is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """For WebClient(base_url=...): slack_sdk joins it with the method name."""
        return f"{self.root_url}/api/"

    def response_url(self, name: str = "default") -> str:
        return f"{self.root_url}/response/{name}"

    # -- configuration ---------------------------------------------------------------

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """The next `times` calls of `method` get HTTP 429 + Retry-After."""
        with self._lock:
            self._rate_limits[method] = [times, retry_after]

    def outage(self, prefix: str = "chat.", status: int = 500, error: str = "internal_error",
               retry_after: int | None = None, channel: str | None = None) -> None:
        """Until heal(): every call of a method starting with ``prefix`` (to ``channel``, if
        given) is answered ``status`` with ``error`` (and Retry-After, if given)."""
        with self._lock:
            self._outage = {"prefix": prefix, "status": status, "error": error, "retry_after": retry_after,
                            "channel": channel}

    def heal(self) -> None:
        with self._lock:
            self._outage = None

    def _outage_for(self, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            o = self._outage
        if o is None or not method.startswith(o["prefix"]):
            return None
        if o["channel"] is not None and params.get("channel") != o["channel"]:
            return None
        return o

    def succeeded(self, method: str) -> list[Call]:
        """Calls of ``method`` that the fake answered with ok (not refused by an outage)."""
        return [c for c in self.calls(method) if c.status == 200 and c.params.get("_ok", True)]

    # -- inspection ------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Poll until at least `count` calls of `method` arrived; return all of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.calls(method)
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                seen = [(c.method, c.params) for c in self.calls()]
                raise AssertionError(
                    f"expected {count} call(s) of {method} within {timeout}s, got {len(found)}; "
                    f"all calls received: {seen!r}"
                )
            time.sleep(0.02)

    def message(self, channel: str, ts: str) -> dict:
        """The message as it stands now (after any chat.update)."""
        with self._lock:
            return self.messages[(channel, ts)]

    def clear(self) -> None:
        """Forget the recorded calls; messages, uploads and configuration stay."""
        with self._lock:
            self._calls.clear()

    # -- request handling (called from server threads) --------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _take_rate_limit(self, method: str) -> int | None:
        with self._lock:
            limit = self._rate_limits.get(method)
            if not limit or limit[0] <= 0:
                return None
            limit[0] -= 1
            return limit[1]

    def _next_ts(self) -> str:
        """Unique, increasing, epoch-based like Slack's message ts."""
        with self._lock:
            self._last_ts_us = max(int(time.time() * 1_000_000), self._last_ts_us + 100)
            return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}{self._counter:08d}"

    def _api(self, method: str, p: dict[str, Any], call: Call) -> dict:
        channel = p.get("channel")
        if method == "auth.test":
            return {"ok": True, "url": "https://drbot-test.slack.com/", "team": "drbot test",
                    "user": "drbot", "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.socket_url} if self.socket_url else {"ok": False, "error": "invalid_auth"}
        if method == "chat.postMessage":
            if not channel:
                return {"ok": False, "error": "channel_not_found"}
            if not (p.get("text") or p.get("blocks") or p.get("attachments")):
                return {"ok": False, "error": "no_text"}
            ts = self._next_ts()
            message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": ts,
                       "text": p.get("text", ""), "blocks": call.blocks}
            if p.get("thread_ts"):
                message["thread_ts"] = p["thread_ts"]
            with self._lock:
                self.messages[(channel, ts)] = message
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            key = (channel, p.get("ts"))
            with self._lock:
                if key not in self.messages:
                    if self.strict_updates:
                        return {"ok": False, "error": "message_not_found"}
                    self.messages[key] = {"type": "message", "user": BOT_USER_ID, "ts": key[1]}
                message = self.messages[key]
                if "text" in p:
                    message["text"] = p["text"]
                if "blocks" in p:
                    message["blocks"] = call.blocks
                message["edited"] = {"user": BOT_USER_ID}
            return {"ok": True, "channel": channel, "ts": key[1], "text": message.get("text", ""),
                    "message": message}
        if method == "chat.postEphemeral":
            if not channel or not p.get("user"):
                return {"ok": False, "error": "channel_not_found" if not channel else "user_not_found"}
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "conversations.create":
            name = p.get("name", "")
            with self._lock:
                if name in self._channel_names:
                    return {"ok": False, "error": "name_taken"}
                self._channel_names.add(name)
            return {"ok": True, "channel": {
                "id": self._next_id("C"), "name": name, "is_channel": True,
                "is_private": str(p.get("is_private", "")).lower() in ("true", "1"),
                "created": int(time.time()), "creator": BOT_USER_ID}}
        if method == "conversations.setTopic":
            topic = p.get("topic", "")
            if len(topic) > 250:
                return {"ok": False, "error": "too_long"}
            with self._lock:
                self.topics[channel] = topic
            return {"ok": True, "channel": {"id": channel, "topic": {"value": topic}}}
        if method == "conversations.history":
            # the channel's recorded messages, newest first, within (oldest, latest]
            # ([oldest, latest] with inclusive), as Slack answers it; `limit` caps the page
            inclusive = str(p.get("inclusive", "")).lower() in ("true", "1")
            latest, oldest = float(p.get("latest") or "inf"), float(p.get("oldest") or 0)
            with self._lock:
                found = sorted((m for (ch, ts), m in self.messages.items() if ch == channel and (
                    oldest <= float(ts) <= latest if inclusive else oldest < float(ts) < latest)),
                    key=lambda m: float(m["ts"]), reverse=True)
            limit = int(p.get("limit") or 100)
            return {"ok": True, "messages": [dict(m) for m in found[:limit]], "has_more": len(found) > limit}
        if method == "chat.getPermalink":
            if not channel or not p.get("message_ts"):
                return {"ok": False, "error": "channel_not_found" if not channel else "message_not_found"}
            return {"ok": True, "channel": channel, "permalink":
                    f"https://drbot-test.slack.com/archives/{channel}/p{str(p.get('message_ts', '')).replace('.', '')}"}
        if method in ("views.open", "views.publish", "views.update", "views.push"):
            view = call.parsed("view") or {}
            if not isinstance(view, dict) or not view.get("type"):
                return {"ok": False, "error": "invalid_arguments"}
            if method == "views.publish":
                if not p.get("user_id"):
                    return {"ok": False, "error": "user_not_found"}
                with self._lock:
                    self.home_views[p["user_id"]] = view
            return {"ok": True, "view": {"id": self._next_id("V"), **view}}
        if method == "usergroups.users.list":
            users = self.usergroups.get(p.get("usergroup", ""))
            if users is None:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": list(users)}
        if method == "users.lookupByEmail":
            uid = self.emails.get(p.get("email", "").lower())
            return {"ok": True, "user": {"id": uid, "team_id": TEAM_ID}} if uid else {"ok": False, "error": "users_not_found"}
        if method == "users.info":
            uid = p.get("user", "")
            name = uid.removeprefix("U_").lower() or uid.lower()
            user = {"id": uid, "team_id": TEAM_ID, "name": name, "real_name": name.title(),
                    "tz": "Europe/Berlin", "is_bot": False, "deleted": False,
                    "profile": {"real_name": name.title(), "display_name": name}}
            user.update(self.users.get(uid, {}))
            return {"ok": True, "user": user}
        if method == "files.getUploadURLExternal":
            file_id = self._next_id("F")
            with self._lock:
                self._upload_names[file_id] = p.get("filename", "")
            return {"ok": True, "upload_url": f"{self.root_url}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = []
            for f in call.parsed("files", []):
                if f["id"] not in self.uploads:
                    return {"ok": False, "error": "file_not_found"}
                files.append({"id": f["id"], "title": f.get("title") or "", "size": len(self.uploads[f["id"]]),
                              "name": self._upload_names.get(f["id"], "")})
            return {"ok": True, "files": files}
        return {"ok": True}


def _parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    if content_type.startswith("application/json"):
        return json.loads(body)
    if content_type.startswith("application/x-www-form-urlencoded"):
        return _flatten(parse_qs(body.decode(), keep_blank_values=True))
    if content_type.startswith("multipart/form-data"):
        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        out: dict[str, Any] = {}
        for part in msg.iter_parts():
            payload = part.get_payload(decode=True)
            out[part.get_param("name", header="content-disposition")] = (
                payload if part.get_filename() else payload.decode())
        return out
    return {"_raw": body.decode(errors="replace")}


def _flatten(qs: dict[str, list[str]]) -> dict[str, Any]:
    return {k: v[0] if len(v) == 1 else v for k, v in qs.items()}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSlack

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        params = _flatten(parse_qs(url.query, keep_blank_values=True))
        params.update(_parse_body(headers.get("content-type", ""), body))

        if url.path.startswith("/api/"):
            method = url.path.removeprefix("/api/")
        elif url.path.startswith("/response/"):
            method = "response_url"
            params["_path"] = url.path
        elif url.path.startswith("/upload/"):
            method = "file_upload"
            params["_path"] = url.path
        else:
            return self._send(404, b"not found", "text/plain")
        call = Call(method, params, headers, time.time(), body=body)

        retry_after = fake._take_rate_limit(method)
        if retry_after is not None:
            call.status = 429
            fake._record(call)
            return self._send_json({"ok": False, "error": "ratelimited"}, 429,
                                   {"Retry-After": str(retry_after)})
        outage = fake._outage_for(method, params)
        if outage is not None:
            call.status = outage["status"]
            call.params["_ok"] = False
            fake._record(call)
            extra = {"Retry-After": str(outage["retry_after"])} if outage["retry_after"] is not None else None
            return self._send_json({"ok": False, "error": outage["error"]}, outage["status"], extra)
        fake._record(call)

        if method == "response_url":
            return self._send(200, b"ok", "text/html")
        if method == "file_upload":
            with fake._lock:
                fake.uploads[url.path.removeprefix("/upload/")] = body
            return self._send(200, f"OK - {len(body)}".encode(), "text/plain")

        token = headers.get("authorization", "").removeprefix("Bearer ").strip() or params.get("token")
        if not token:
            return self._send_json({"ok": False, "error": "not_authed"})
        app_level = method == "apps.connections.open"  # the one method of an app-level token (xapp-)
        if not token.startswith(("xapp-" if app_level else "xox")):
            return self._send_json({"ok": False, "error": "not_allowed_token_type" if token.startswith(("xox", "xapp"))
                                    else "invalid_auth"})
        self._send_json(fake._api(method, params, call))

    def _send_json(self, data: dict, status: int = 200, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8", extra)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A running FakeSlack for one test."""
    with FakeSlack() as fake:
        yield fake
