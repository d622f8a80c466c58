"""The core's Messenger over Slack's Web API (chat.postMessage, chat.update, ...).

Slack allows about one message per second per channel. Posts wait for their turn per
channel (a short burst is allowed). Updates are paced per message: one that comes too
soon after the last is coalesced, and only the newest version of each message is sent,
as soon as its turn comes. 429 answers are retried by slack_sdk's RateLimitErrorRetryHandler.
"""
from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.render import Renderer, Reply

log = logging.getLogger(__name__)


class Pacer:
    """A token bucket per channel: ``burst`` at once, then ``rate`` per second."""

    def __init__(self, rate: float = 1.0, burst: int = 4, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, channel: str, consume: bool = True) -> float:
        """0.0 when a message may go now (and, with ``consume``, counts it), else the
        seconds to wait."""
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(channel, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[channel] = (tokens - 1.0 if consume else tokens, now)
                return 0.0
            self._buckets[channel] = (tokens, now)
            return (1.0 - tokens) / self.rate


class SlackMessenger:
    def __init__(self, client: WebClient, renderer: Renderer, pacer: Pacer | None = None,
                 update_pacer: Pacer | None = None):
        self.client = client
        self.renderer = renderer
        self.pacer = pacer or Pacer()
        self.update_pacer = update_pacer or Pacer(rate=1.0, burst=2)
        self._pending: dict[tuple[str, str], tuple[list, str]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._flusher: threading.Thread | None = None

    def _turn(self, channel: str) -> None:
        while (wait := self.pacer.take(channel)) > 0:
            time.sleep(wait)

    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str:
        blocks, text = self.renderer.blocks(reply)
        self._turn(channel)
        resp = self.client.chat_postMessage(channel=channel, blocks=blocks, text=text, thread_ts=thread_ts,
                                            unfurl_links=False, unfurl_media=False)
        return resp["ts"]

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        blocks, text = self.renderer.blocks(reply)
        with self._lock:
            if (channel, ts) not in self._pending and self.update_pacer.take(f"{channel}/{ts}") == 0.0:
                send_now = True
            else:
                self._pending[(channel, ts)] = (blocks, text)  # the newest version wins
                send_now = False
                self._ensure_flusher()
                self._wake.notify_all()
        if send_now:
            self.client.chat_update(channel=channel, ts=ts, blocks=blocks, text=text)

    def _ensure_flusher(self) -> None:
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(target=self._flush_loop, name="drbot-slack-updates", daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._wake.notify_all()
                    self._flusher = None
                    return
                waits = {key: self.update_pacer.take(f"{key[0]}/{key[1]}", consume=False) for key in self._pending}
                key, wait = min(waits.items(), key=lambda kv: kv[1])
                item = None
                if wait == 0.0 and self.update_pacer.take(f"{key[0]}/{key[1]}") == 0.0:
                    item = self._pending.pop(key)
            if item is None:
                time.sleep(wait)
                continue
            try:
                self.client.chat_update(channel=key[0], ts=key[1], blocks=item[0], text=item[1])
            except Exception:
                log.exception("could not update message %s in %s", key[1], key[0])

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every coalesced update is sent (shutdown, tests)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.1))
        return True

    def notify(self, channel: str, user: str, reply: Reply) -> None:
        blocks, text = self.renderer.blocks(reply)
        self.client.chat_postEphemeral(channel=channel, user=user, blocks=blocks, text=text)

    def create_channel(self, name: str) -> tuple[str, str]:
        for n in range(1, 20):
            candidate = name if n == 1 else f"{name[:76]}-{n}"
            try:
                channel = self.client.conversations_create(name=candidate)["channel"]
                return channel["id"], channel["name"]
            except SlackApiError as e:
                if e.response.get("error") != "name_taken":
                    raise
        raise RuntimeError(f"no free channel name like {name!r}")

    def invite(self, channel: str, users: list[str]) -> None:
        if not users:
            return
        try:
            self.client.conversations_invite(channel=channel, users=",".join(users))
        except SlackApiError as e:
            if e.response.get("error") not in ("already_in_channel", "cant_invite_self"):
                raise

    def pin(self, channel: str, ts: str) -> None:
        try:
            self.client.pins_add(channel=channel, timestamp=ts)
        except SlackApiError as e:
            if e.response.get("error") != "already_pinned":
                raise

    def upload(self, channel: str, filename: str, content: str, title: str) -> str:
        resp = self.client.files_upload_v2(channel=channel, filename=filename, content=content, title=title)
        return (resp.get("file") or {}).get("id", "")
