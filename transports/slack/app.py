"""The Slack transport: Bolt listeners that ack at once and do the work after the ack.

Only this package imports slack_bolt / slack_sdk. Listeners turn a Slack payload into an
``Actor`` and words, call the same command code as the shell, and render the ``Reply``
as Block Kit.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from slack_bolt import App
from slack_sdk import WebClient

from bot.actor import Actor
from bot.alerts.intake import ingest
from bot.alerts.normalise import from_slack_message
from bot.incidents import pin_message
from bot.directory import Directory
from bot.render import Reply
from bot.services import Services
from transports.slack.messenger import SlackMessenger
from commands import router
from commands.base import FormError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str
    signing_secret: str | None = None
    api_url: str | None = None
    """Web API base URL override (tests, proxies), e.g. http://127.0.0.1:8099/api/"""


def make_client(settings: SlackSettings) -> WebClient:
    # no retry handler: the outbox retries what the core sends (it must not sleep inside a
    # call), and a click's own call (views.open) is worthless after its 3-second trigger
    return WebClient(token=settings.bot_token, base_url=settings.api_url or WebClient.BASE_URL, timeout=10)


def build_app(services: Services, settings: SlackSettings) -> App:
    """A Bolt app wired to ``services``. Without a signing secret (Socket Mode) request
    verification is off, so the caller must not expose ``/slack/events`` over HTTP."""
    app = App(
        client=make_client(settings),
        signing_secret=settings.signing_secret,
        request_verification_enabled=settings.signing_secret is not None,
        process_before_response=False,
        logger=logging.getLogger("drbot.slack"),
    )
    attach(services, app.client)
    register(app, services)
    return app


def attach(services: Services, client: WebClient) -> None:
    """The core posts through this Slack client and resolves user groups with it."""
    services.messenger = SlackMessenger(client, services.renderer)
    services.directory = Directory(lambda group: client.usergroups_users_list(usergroup=group)["users"], ttl=60)


class TimeZones:
    """Each person's time zone from users.info, cached for an hour; None when unknown,
    and then times are shown in the config's zone."""

    def __init__(self, client: WebClient, ttl: float = 3600.0):
        self.client, self.ttl = client, ttl
        self._cache: dict[str, tuple[float, str | None]] = {}

    def of(self, user_id: str) -> str | None:
        now = time.monotonic()
        hit = self._cache.get(user_id)
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        try:
            tz = self.client.users_info(user=user_id)["user"].get("tz")
        except Exception as e:  # users:read missing, or Slack slow: fall back, never fail the command
            log.info("no time zone for %s: %s", user_id, e)
            tz = None
        self._cache[user_id] = (now, tz)
        return tz


def _form_values(view: dict) -> dict[str, str]:
    """Slack's view state as action_id -> text (inputs, selects, date-time pickers)."""
    out = {}
    for block in (view.get("state") or {}).get("values", {}).values():
        for action_id, element in block.items():
            value = element.get("value")
            if value is None and element.get("selected_date_time") is not None:
                value = str(element["selected_date_time"])
            if value is None and element.get("selected_option"):
                value = element["selected_option"].get("value")
            out[action_id] = value or ""
    return out


def _actor(body: dict) -> Actor:
    user = body["user"]
    return Actor(id=user["id"], name=user.get("username") or user.get("name", ""), origin="slack",
                 channel=(body.get("channel") or {}).get("id"))


def send(respond, services: Services, reply: Reply) -> None:
    blocks, text = services.renderer.blocks(reply)
    respond(text=text, blocks=blocks, response_type="ephemeral" if reply.ephemeral else "in_channel",
            replace_original=reply.replace_original)


def _ack(ack) -> None:
    ack()


def register(app: App, services: Services) -> None:
    """Ack at once; the work runs after the ack (Bolt's lazy listeners)."""
    zones = TimeZones(app.client)

    def on_command(body, respond) -> None:
        actor = Actor(id=body["user_id"], name=body.get("user_name", ""), origin="slack",
                      channel=body.get("channel_id"), tz=zones.of(body["user_id"]))
        send(respond, services, router.dispatch(services, actor, body.get("text", "")))

    def on_click(body, action, respond, client) -> None:
        reply = router.click(services, _actor(body), action["action_id"], action.get("value", ""))
        if reply is None:
            return  # the message itself shows the new state
        if reply.modal:
            client.views_open(trigger_id=body["trigger_id"], view=services.renderer.view(reply))
            return
        blocks, text = services.renderer.blocks(reply)
        if reply.replace_original:  # e.g. Refresh: the message the button is on, as it was shown
            ephemeral = bool((body.get("container") or {}).get("is_ephemeral", True))
            respond(text=text, blocks=blocks, response_type="ephemeral" if ephemeral else "in_channel",
                    replace_original=True)
        else:  # only the clicker sees why nothing happened
            respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)

    def on_reaction(event, client) -> None:
        if event.get("reaction") != services.config.incidents.pin_reaction:
            return
        item = event.get("item") or {}
        if item.get("type") != "message":
            return
        history = client.conversations_history(channel=item["channel"], latest=item["ts"], inclusive=True, limit=1)
        messages = history.get("messages") or []
        text = messages[0].get("text", "") if messages else ""
        by = Actor(id=event.get("user", ""), name="", origin="slack", channel=item["channel"])
        pin_message(services, item["channel"], event.get("item_user", ""), text, item["ts"], by)

    rules = services.config.alerts.slack_rules

    def on_message(event) -> None:
        if event.get("subtype") not in (None, "bot_message"):
            return
        found = [a for rule in rules if rule.channel == event.get("channel")
                 for a in [from_slack_message(event, rule, services.config)] if a is not None]
        if found:
            ingest(services, found)
            services.outbox.poke()

    def check_form(ack, body, view) -> None:
        try:
            router.validate(services, view["callback_id"], _form_values(view))
        except FormError as e:
            ack(response_action="errors", errors={e.field: e.message})
            return
        ack()

    def on_form(body, view, client) -> None:
        actor = _actor(body)
        try:
            reply = router.submit(services, actor, view["callback_id"], view.get("private_metadata", ""),
                                  _form_values(view))
        except FormError:
            return  # already answered by check_form
        if reply is not None:
            blocks, text = services.renderer.blocks(reply)
            client.chat_postMessage(channel=actor.id, blocks=blocks, text=text)  # a DM to the submitter

    app.command(services.command)(ack=_ack, lazy=[on_command])
    app.action(router.action_pattern())(ack=_ack, lazy=[on_click])
    app.event("message")(ack=_ack, lazy=[on_message])
    app.event("reaction_added")(ack=_ack, lazy=[on_reaction])
    app.view(router.form_pattern())(ack=check_form, lazy=[on_form])
