"""The core's Messenger over Slack's Web API (chat.postMessage, chat.update, chat.postEphemeral)."""
from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.render import Renderer, Reply


class SlackMessenger:
    def __init__(self, client: WebClient, renderer: Renderer):
        self.client = client
        self.renderer = renderer

    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str:
        blocks, text = self.renderer.blocks(reply)
        resp = self.client.chat_postMessage(channel=channel, blocks=blocks, text=text, thread_ts=thread_ts,
                                            unfurl_links=False, unfurl_media=False)
        return resp["ts"]

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        blocks, text = self.renderer.blocks(reply)
        self.client.chat_update(channel=channel, ts=ts, blocks=blocks, text=text)

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
