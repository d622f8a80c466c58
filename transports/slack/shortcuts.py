"""Slack shortcuts: the "Declare incident" global shortcut (opens the modal; its submission
goes through the app's form listener, which checks its permission in Slack's 3-second
answer so a refusal shows next to a field) and the "Add to incident timeline" message shortcut.

Like every listener of ``transports.slack.app``: ack at once, the work after the ack (a Bolt
lazy listener on the app's pool), every payload read through ``payloads`` first."""
from __future__ import annotations

import logging

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.actor import Actor
from bot.render import Reply
from bot.services import Services
from commands import surfaces
from commands.shortcuts import message_value
from transports.slack import payloads

log = logging.getLogger(__name__)

MAX_FIELD_ERROR = 300
"""A field's error is one short paragraph under the field."""


def _ack(ack) -> None:
    ack()


def tell_privately(client: WebClient, services: Services, user: str, reply: Reply) -> None:
    """What only ``user`` should see, where no response_url exists: a DM from the bot."""
    blocks, text = services.renderer.blocks(reply)
    try:
        client.chat_postMessage(channel=user, blocks=blocks, text=text)
    except SlackApiError as e:
        log.warning("could not tell %s: %s", user, e.response.get("error"))


def _open_modal(client: WebClient, services: Services, trigger_id: str, reply: Reply) -> None:
    try:
        client.views_open(trigger_id=trigger_id, view=services.renderer.view(reply))
    except SlackApiError as e:  # the trigger expired (3 s) or Slack refused the view
        log.warning("modal %s not opened: %s", reply.template, e.response.get("error"))


def _permalink(client: WebClient, channel: str, ts: str) -> str:
    try:
        return client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink") or ""
    except SlackApiError as e:
        log.info("no permalink for %s in %s: %s", ts, channel, e.response.get("error"))
        return ""


def _tell(respond, client: WebClient, services: Services, channel: str, user: str, reply: Reply) -> None:
    """An ephemeral answer to a message shortcut: through its response_url, else chat.postEphemeral."""
    blocks, text = services.renderer.blocks(reply)
    try:
        if respond is not None and respond.response_url:
            respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
        else:
            client.chat_postEphemeral(channel=channel, user=user, blocks=blocks, text=text)
    except Exception as e:  # noqa: BLE001 - the timeline is already written; the answer is best effort
        log.warning("could not answer the shortcut: %s", type(e).__name__)


def register(app: App, services: Services) -> None:
    """The listener of the shortcuts declared in ``commands.table.SHORTCUTS``."""

    def on_shortcut(body, client, respond) -> None:
        kind = body.get("type") if isinstance(body, dict) else None
        try:
            if kind == "message_action":
                _on_message_action(payloads.parse(payloads.MessageAction, body), client, respond)
                return
            shortcut = payloads.parse(payloads.Shortcut, body)
        except payloads.BadPayload as e:
            log.info("shortcut not acted on: %s", e)
            return
        user = shortcut.user
        actor = Actor(id=user.id, name=user.username or user.name, origin="slack")
        reply = surfaces.shortcut(services, actor, shortcut.callback_id)
        if reply is None:
            return
        if reply.modal:
            _open_modal(client, services, shortcut.trigger_id, reply)
        else:
            tell_privately(client, services, user.id, reply)

    def _on_message_action(action: payloads.MessageAction, client: WebClient, respond) -> None:
        user, channel, message = action.user, action.channel.id, action.message
        actor = Actor(id=user.id, name=user.username or user.name, origin="slack", channel=channel)
        author = message.user or message.bot_id or message.username or ""
        value = message_value(message.ts, author, payloads.strip_controls(message.text),
                              _permalink(client, channel, message.ts))
        reply = surfaces.shortcut(services, actor, action.callback_id, value)
        if reply is not None:
            _tell(respond, client, services, channel, user.id, reply)

    app.shortcut(surfaces.shortcut_pattern())(ack=_ack, lazy=[on_shortcut])
