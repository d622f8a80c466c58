"""The core's Messenger over Slack's Web API (chat.postMessage, chat.update, ...).

It paces nothing and retries nothing itself: the outbox worker delivers one message at a
time per destination, paced for all replicas, and retries what fails. Slack's errors are
mapped to ``DeliveryFailed``: transient (rate limited, Slack failing, timeouts, network) or
permanent (an unknown or archived channel, blocks Slack refuses, a bad token). Every call is
counted by method and outcome (ok, rate_limited, error) in ``services.metrics``.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.messenger import DeliveryFailed
from bot.metrics import Metrics
from bot.render import Renderer, Reply

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout", "team_added_to_org", "rate_limited"})


def _retry_after(e: SlackApiError) -> float | None:
    value = (e.response.headers or {}).get("Retry-After") or (e.response.headers or {}).get("retry-after")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@contextmanager
def slack_errors(what: str, metrics: Metrics | None = None) -> Iterator[None]:
    """Turn slack_sdk's exceptions into DeliveryFailed, transient or permanent; count the
    call in ``metrics`` (drbot_slack_api_calls_total, drbot_slack_rate_limited_total)."""
    count = metrics.slack_call if metrics is not None else (lambda method, outcome: None)
    try:
        yield
        count(what, "ok")
    except SlackApiError as e:
        status = e.response.status_code
        error = e.response.get("error") if isinstance(e.response.data, dict) else None
        count(what, "rate_limited" if status == 429 or error in ("ratelimited", "rate_limited") else "error")
        transient = status == 429 or status >= 500 or error in TRANSIENT_ERRORS
        raise DeliveryFailed(f"Slack {what}: {error or f'HTTP {status}'}", transient=transient,
                             retry_after=_retry_after(e) if status == 429 or error == "ratelimited" else None,
                             code=error or "") from e
    except (SlackClientError, OSError) as e:  # timeouts, refused connections, bad answers
        count(what, "error")
        raise DeliveryFailed(f"Slack {what}: {type(e).__name__}: {e}", transient=True) from e


class SlackMessenger:
    def __init__(self, client: WebClient, renderer: Renderer, metrics: Metrics | None = None):
        self.client = client
        self.renderer = renderer
        self.metrics = metrics

    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str:
        blocks, text = self.renderer.blocks(reply)
        with slack_errors("chat.postMessage", self.metrics):
            resp = self.client.chat_postMessage(channel=channel, blocks=blocks, text=text, thread_ts=thread_ts,
                                                unfurl_links=False, unfurl_media=False)
        return resp["ts"]

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        blocks, text = self.renderer.blocks(reply)
        with slack_errors("chat.update", self.metrics):
            self.client.chat_update(channel=channel, ts=ts, blocks=blocks, text=text)

    def notify(self, channel: str, user: str, reply: Reply) -> None:
        blocks, text = self.renderer.blocks(reply)
        with slack_errors("chat.postEphemeral", self.metrics):
            self.client.chat_postEphemeral(channel=channel, user=user, blocks=blocks, text=text)

    def create_channel(self, name: str, private: bool = False) -> tuple[str, str]:
        for n in range(1, 20):
            candidate = name if n == 1 else f"{name[:76]}-{n}"
            try:
                with slack_errors("conversations.create", self.metrics):
                    channel = self.client.conversations_create(name=candidate, is_private=private)["channel"]
                return channel["id"], channel["name"]
            except DeliveryFailed as e:
                if e.code != "name_taken":
                    raise
        raise DeliveryFailed(f"no free channel name like {name!r}", transient=False)

    def invite(self, channel: str, users: list[str]) -> None:
        if not users:
            return
        try:
            with slack_errors("conversations.invite", self.metrics):
                self.client.conversations_invite(channel=channel, users=",".join(users))
        except DeliveryFailed as e:
            if e.code not in ("already_in_channel", "cant_invite_self"):
                raise

    def pin(self, channel: str, ts: str) -> None:
        try:
            with slack_errors("pins.add", self.metrics):
                self.client.pins_add(channel=channel, timestamp=ts)
        except DeliveryFailed as e:
            if e.code != "already_pinned":
                raise

    def set_topic(self, channel: str, topic: str) -> None:
        with slack_errors("conversations.setTopic", self.metrics):
            self.client.conversations_setTopic(channel=channel, topic=topic)

    def upload(self, channel: str, filename: str, content: str, title: str) -> str:
        with slack_errors("files.upload", self.metrics):
            resp = self.client.files_upload_v2(channel=channel, filename=filename, content=content, title=title)
        return (resp.get("file") or {}).get("id", "")
