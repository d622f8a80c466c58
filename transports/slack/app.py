"""The Slack transport: Bolt listeners that ack at once and do the work after the ack.

Only this package imports slack_bolt / slack_sdk. Listeners turn a Slack payload into an
``Actor`` and words, call the same command code as the shell, and render the ``Reply``
as Block Kit.

Acks never wait for work: Bolt runs with ``process_before_response=True``, so the ack
function runs in the thread that dispatches the request (HTTP mode: the adapter's own ack
threads; Socket Mode: the socket client's) and its answer goes back at once, while the
work (building a status report, running a command, a click) is handed to drbot's own
bounded pool, ``SlackApp.work`` (``transports.slack.work``: separate from the runbook
runner's, and yielding to acks in hand), as a Bolt lazy listener. Replies go through
response_url / chat.* as before. ``SlackApp.stop()`` lets the work in hand finish and
takes no more.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.actor import Actor
from bot.alerts.normalise import BadPayload, read
from bot.incidents import pin_message
from bot.directory import Directory
from bot.render import Reply
from bot.services import Services
from transports.slack import payloads, shortcuts
from transports.slack.shortcuts import MAX_FIELD_ERROR, tell_privately
from transports.slack.home import on_home_opened
from transports.slack.messenger import SlackMessenger
from transports.slack.work import AckTraffic, WorkPool
from commands import router, surfaces
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


class SlackApp(App):
    """Bolt's App, knowing the signing secret with which HTTP mode verifies each request
    before Bolt sees it (``transports.http``), and holding the pool its work runs on."""

    def __init__(self, *, signing_secret: str | None, **kwargs):
        self.acks = AckTraffic()
        self.work = WorkPool(self.acks)
        super().__init__(signing_secret=signing_secret, process_before_response=True,
                         listener_executor=self.work, **kwargs)
        self.signing_secret = signing_secret

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        """Bolt's dispatch (the ack; the work is handed to ``work``), counted as ack traffic
        (Socket Mode comes in here; HTTP mode counts from the request's arrival)."""
        with self.acks.acking():
            return super().dispatch(req)

    def stop(self, wait: bool = True) -> None:
        """Take no more work; ``wait``: until the work in hand has finished."""
        self.work.shutdown(wait=wait)


class NoBodies(logging.Filter):
    """Bolt logs request bodies in a few messages (a bad signature at INFO, an unhandled
    request at WARNING, a listener's error with its body). drbot's logs keep the reason
    and the size, never the body: such a message is cut to its first words."""

    MARKERS = ("body:", "body=", "Request body", "Unhandled request (", "for the request (")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > 500 or any(m in message for m in self.MARKERS):
            record.msg = "%s ... (%d characters of request data not logged)"
            record.args = (message[:80].split("(")[0].strip(), len(message))
        return True


def _keep_bodies_out(logger: logging.Logger) -> None:
    """On the logger Bolt is given (Bolt copies its filters to the loggers it makes later)
    and on Bolt's own loggers made so far (a filter applies where a record is made)."""
    names = [logger.name] + [n for n in logging.root.manager.loggerDict
                             if n.startswith(("slack_bolt", f"{logger.name}:", f"{logger.name}."))]
    for name in names:
        target = logging.getLogger(name)
        if not any(isinstance(f, NoBodies) for f in target.filters):
            target.addFilter(NoBodies())


class _NoTokenUnusedWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment even when given a client, then warns
    that the token "will be unused": the client carries that same token (make_client)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def build_app(services: Services, settings: SlackSettings) -> SlackApp:
    """A Bolt app wired to ``services``. Without a signing secret (Socket Mode) request
    verification is off, so the caller must not expose ``/slack/events`` over HTTP."""
    logger = logging.getLogger("drbot.slack")
    _keep_bodies_out(logger)
    if not any(isinstance(f, _NoTokenUnusedWarning) for f in logger.filters):
        logger.addFilter(_NoTokenUnusedWarning())
    app = SlackApp(
        client=make_client(settings),
        signing_secret=settings.signing_secret,
        request_verification_enabled=settings.signing_secret is not None,
        logger=logger,
    )
    attach(services, app.client)
    register(app, services)
    _keep_bodies_out(logger)
    return app


def attach(services: Services, client: WebClient) -> None:
    """The core posts through this Slack client and resolves user groups with it."""
    services.messenger = SlackMessenger(client, services.renderer, services.metrics)
    services.directory = Directory(lambda group: client.usergroups_users_list(usergroup=group)["users"], ttl=60,
                                   by_email=lambda email: client.users_lookupByEmail(email=email)["user"]["id"])


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


def _actor(payload: payloads.BlockActions | payloads.ViewSubmission) -> Actor:
    user = payload.user
    channel = getattr(payload, "channel", None)
    return Actor(id=user.id, name=user.username or user.name, origin="slack",
                 channel=channel.id if channel is not None else None)


def _answer(respond, text: str, blocks: list, response_type: str, replace_original: bool) -> None:
    """Answer through the request's response_url; a click without one, or a response_url
    that fails, is logged (one line) instead of raising in the listener."""
    try:
        respond(text=text, blocks=blocks, response_type=response_type, replace_original=replace_original)
    except Exception as e:  # noqa: BLE001 - Slack's answer is best effort; the state is already saved
        log.warning("could not answer through response_url: %s", type(e).__name__)


def send(respond, services: Services, reply: Reply) -> None:
    blocks, text = services.renderer.blocks(reply)
    _answer(respond, text, blocks, "ephemeral" if reply.ephemeral else "in_channel", reply.replace_original)


def _unreadable(respond, services: Services, what: str, e: payloads.BadPayload) -> None:
    log.info("slack %s not acted on: %s", what, e)
    if respond is not None:
        send(respond, services, Reply("bad_input", {"what": "payload", "p": {"reason": str(e)}}))


def _control(text: str) -> Reply | None:
    found = payloads.control_character(text)
    if found is None:
        return None
    return Reply("bad_input", {"what": "control", "p": {"position": found[0], "char": found[1]}})


def _ack(ack) -> None:
    ack()


def register(app: App, services: Services) -> None:
    """Ack at once; the work runs after the ack (Bolt's lazy listeners, on ``app.work``). Every listener
    reads its payload through ``transports.slack.payloads`` first: in HTTP mode the edge
    checked it already, in Socket Mode this is the only check."""
    zones = TimeZones(app.client)

    def on_command(body, respond) -> None:
        try:
            cmd = payloads.parse(payloads.SlashCommand, body)
        except payloads.BadPayload as e:
            _unreadable(respond, services, "command", e)
            return
        refusal = _control(cmd.text)
        if refusal is not None:
            log.info("command by %s refused: a control character in its text", cmd.user_id)
            send(respond, services, refusal)
            return
        actor = Actor(id=cmd.user_id, name=cmd.user_name, origin="slack", channel=cmd.channel_id or None,
                      tz=zones.of(cmd.user_id))
        send(respond, services, router.dispatch(services, actor, cmd.text))

    def on_click(body, respond, client) -> None:
        try:
            click = payloads.parse(payloads.BlockActions, body)
        except payloads.BadPayload as e:
            _unreadable(respond, services, "click", e)
            return
        action = click.actions[0]
        reply = router.click(services, _actor(click), action.action_id, action.value)
        if reply is None:
            return  # the message itself shows the new state
        if reply.modal:
            if not click.trigger_id:
                _unreadable(respond, services, "click", payloads.BadPayload("trigger_id: missing, so no form can open"))
                return
            client.views_open(trigger_id=click.trigger_id, view=services.renderer.view(reply))
            return
        blocks, text = services.renderer.blocks(reply)
        if reply.replace_original:  # e.g. Refresh: the message the button is on, as it was shown
            ephemeral = click.container.is_ephemeral
            _answer(respond, text, blocks, "ephemeral" if ephemeral else "in_channel", True)
        else:  # only the clicker sees why nothing happened
            _answer(respond, text, blocks, "ephemeral", False)

    def on_reaction(event, client) -> None:
        try:
            reaction = payloads.parse(payloads.ReactionEvent, event, "event")
        except payloads.BadPayload as e:
            log.info("reaction not acted on: %s", e)
            return
        item = reaction.item
        if reaction.reaction != services.config.incidents.pin_reaction or item.type != "message":
            return
        if not item.channel or not item.ts:
            log.info("reaction not acted on: event.item has no channel or ts")
            return
        try:
            history = client.conversations_history(channel=item.channel, latest=item.ts, inclusive=True, limit=1)
        except SlackApiError as e:
            log.warning("pinned message %s in %s not read: %s", item.ts, item.channel, e.response.get("error"))
            return
        messages = history.get("messages") or []
        text = messages[0].get("text", "") if messages else ""
        by = Actor(id=reaction.user, name="", origin="slack", channel=item.channel)
        pin_message(services, item.channel, reaction.item_user, payloads.strip_controls(text or ""), item.ts, by)

    def on_message(event) -> None:
        try:
            message = payloads.parse(payloads.MessageEvent, event, "event")
        except payloads.BadPayload as e:
            log.info("message not read for alerts: %s", e)
            return
        if message.subtype not in (None, "bot_message"):
            return
        plain = message.model_dump(exclude_none=True)
        try:
            found = read("slack", plain, services.config)
        except BadPayload as e:
            log.info("message not read for alerts: %s", e)
            return
        if found:  # stored before anything is done with it, like a webhook's alerts (bot.alerts.drain)
            services.inbox.accept("slack", json.dumps(plain), found)

    def _form_checked(submission: payloads.ViewSubmission) -> tuple[Actor, dict[str, str]]:
        """The submission's fields once they pass what Slack's 3-second answer checks: no
        control characters, the form's own checks, and for the forms of
        ``surfaces.PERMISSION_FIELD`` the declared role. Raises FormError."""
        fields, actor = payloads.form_values(submission.view), _actor(submission)
        for name, value in fields.items():
            found = payloads.control_character(value)
            if found is not None:
                raise FormError(name, f"remove the control character {found[1]} (at position {found[0]})")
        surfaces.check_form(services, actor, submission.view.callback_id, fields)
        return actor, fields

    def check_form(ack, body) -> None:
        try:
            submission = payloads.parse(payloads.ViewSubmission, body)
            _form_checked(submission)
        except payloads.BadPayload as e:
            log.info("form submission not acted on: %s", e)
            ack()
            return
        except FormError as e:
            ack(response_action="errors", errors={e.field: e.message[:MAX_FIELD_ERROR]})
            return
        ack()

    def on_form(body, client) -> None:
        try:
            submission = payloads.parse(payloads.ViewSubmission, body)
            actor, fields = _form_checked(submission)
            reply = router.submit(services, actor, submission.view.callback_id, submission.view.private_metadata,
                                  fields)
        except (payloads.BadPayload, FormError):
            return  # answered by check_form
        if reply is not None:
            tell_privately(client, services, actor.id, reply)  # a DM to the submitter

    app.command(services.command)(ack=_ack, lazy=[on_command])
    app.action(router.action_pattern())(ack=_ack, lazy=[on_click])
    events = {"message": on_message, "reaction_added": on_reaction,
              "app_home_opened": on_home_opened(services, zones.of)}
    for kind in payloads.HANDLED_EVENTS:
        app.event(kind)(ack=_ack, lazy=[events[kind]])
    shortcuts.register(app, services)
    app.view(router.form_pattern())(ack=check_form, lazy=[on_form])
