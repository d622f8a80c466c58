"""Send requests to a running app exactly as Slack does: real HTTP, Slack's payload shapes,
signed with the app's signing secret (v0 HMAC-SHA256 over "v0:{timestamp}:{body}").

    with SlackSender("http://127.0.0.1:3000", "secret") as slack:
        r = slack.slash_command("status")
        assert r.status_code == 200

Every sending method returns the httpx.Response and accepts the options of post():
timestamp=..., signature=..., signed=False, headers={...} for negative tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx

TEAM_ID = "T1"  # the same workspace FakeSlack's auth.test answers with
TEAM_DOMAIN = "drbot-test"
API_APP_ID = "A_DRBOT"
VERIFICATION_TOKEN = "legacy-verification-token"  # deprecated by Slack, still sent


def sign(signing_secret: str, timestamp: str, body: bytes) -> str:
    """The X-Slack-Signature value for this body."""
    basestring = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), basestring, hashlib.sha256).hexdigest()


def _trigger_id() -> str:
    return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"


def _now_ts() -> str:
    return f"{time.time():.6f}"


def _user(user_id: str, user_name: str | None) -> dict:
    name = user_name or user_id.removeprefix("U_").lower()
    return {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID}


class SlackSender:
    def __init__(self, base_url: str, signing_secret: str, path: str = "/slack/events") -> None:
        self.url = base_url.rstrip("/") + path
        self.signing_secret = signing_secret
        self.http = httpx.Client(timeout=10.0)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SlackSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------

    def post(
        self,
        body: bytes | str,
        content_type: str,
        *,
        timestamp: int | str | None = None,
        signature: str | None = None,
        signed: bool = True,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST body to the app. timestamp/signature override the computed values;
        signed=False sends neither header."""
        body = body.encode() if isinstance(body, str) else body
        sent = {"Content-Type": content_type}
        if signed:
            ts = str(int(time.time()) if timestamp is None else timestamp)
            sent["X-Slack-Request-Timestamp"] = ts
            sent["X-Slack-Signature"] = signature or sign(self.signing_secret, ts, body)
        sent.update(headers or {})
        return self.http.post(self.url, content=body, headers=sent)

    def _form(self, fields: dict[str, Any], **opts: Any) -> httpx.Response:
        return self.post(urlencode(fields), "application/x-www-form-urlencoded", **opts)

    def _interaction(self, payload: dict, **opts: Any) -> httpx.Response:
        return self._form({"payload": json.dumps(payload)}, **opts)

    # -- what Slack sends --------------------------------------------------------------

    def slash_command(
        self,
        text: str,
        user_id: str = "U_ALICE",
        user_name: str = "alice",
        channel_id: str = "C_INC",
        command: str = "/dr",
        response_url: str | None = None,
        trigger_id: str | None = None,
        channel_name: str = "inc-test",
        **opts: Any,
    ) -> httpx.Response:
        return self._form({
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": API_APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url or f"https://hooks.slack.com/commands/{TEAM_ID}/1/x",
            "trigger_id": trigger_id or _trigger_id(),
        }, **opts)

    def block_action(
        self,
        action_id: str,
        value: str,
        user_id: str,
        user_name: str | None = None,
        channel_id: str = "C_INC",
        message_ts: str | None = None,
        response_url: str | None = None,
        container: dict | None = None,
        message: dict | None = None,
        block_id: str | None = None,
        **opts: Any,
    ) -> httpx.Response:
        """A button click. Pass message=fake_slack.message(channel, ts) to click a button on a
        message the app posted: its ts and blocks are sent, and block_id is found in them."""
        message_ts = message_ts or (message or {}).get("ts") or _now_ts()
        message = message or {"type": "message", "user": "UBOT", "bot_id": "BBOT",
                              "ts": message_ts, "text": "", "blocks": []}
        block_id = block_id or _find_block_id(message.get("blocks", []), action_id) or secrets.token_hex(3)
        payload = {
            "type": "block_actions",
            "user": _user(user_id, user_name),
            "api_app_id": API_APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": container or {"type": "message", "message_ts": message_ts,
                                       "channel_id": channel_id, "is_ephemeral": False},
            "trigger_id": _trigger_id(),
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel_id, "name": "inc-test"},
            "message": message,
            "state": {"values": {}},
            "response_url": response_url or f"https://hooks.slack.com/actions/{TEAM_ID}/1/x",
            "actions": [{
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": value, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": _now_ts(),
            }],
        }
        return self._interaction(payload, **opts)

    def view_submission(
        self,
        callback_id: str,
        values: dict[str, dict[str, Any]],
        user_id: str,
        private_metadata: str = "",
        user_name: str | None = None,
        **opts: Any,
    ) -> httpx.Response:
        """values: {block_id: {action_id: state}}; a plain string state is sent as a
        plain_text_input value."""
        state = {
            block: {action: {"type": "plain_text_input", "value": v} if isinstance(v, str) else v
                    for action, v in actions.items()}
            for block, actions in values.items()
        }
        view_id = "V" + secrets.token_hex(5).upper()
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "user": _user(user_id, user_name),
            "api_app_id": API_APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": _trigger_id(),
            "view": {
                "id": view_id,
                "team_id": TEAM_ID,
                "type": "modal",
                "callback_id": callback_id,
                "private_metadata": private_metadata,
                "state": {"values": state},
                "hash": secrets.token_hex(8),
                "title": {"type": "plain_text", "text": "drbot"},
                "blocks": [],
                "root_view_id": view_id,
                "app_id": API_APP_ID,
                "bot_id": "BBOT",
            },
            "response_urls": [],
            "enterprise": None,
            "is_enterprise_install": False,
        }
        return self._interaction(payload, **opts)

    def event(self, event: dict, event_id: str | None = None, **opts: Any) -> httpx.Response:
        body = {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "api_app_id": API_APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": "UBOT",
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }
        return self.post(json.dumps(body), "application/json", **opts)

    def url_verification(self, challenge: str, **opts: Any) -> httpx.Response:
        body = {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
        return self.post(json.dumps(body), "application/json", **opts)


def _find_block_id(blocks: list[dict], action_id: str) -> str | None:
    for block in blocks:
        elements = block.get("elements", []) + ([block["accessory"]] if "accessory" in block else [])
        if any(e.get("action_id") == action_id for e in elements):
            return block.get("block_id")
    return None
