"""The core's Messenger over Slack's Web API (chat.postMessage, chat.update, chat.postEphemeral)."""
from __future__ import annotations

from slack_sdk import WebClient

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
