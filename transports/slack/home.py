"""The App Home tab: on ``app_home_opened`` (acked at once like every event), the work after
the ack builds the person's Home view (``commands.surfaces.home``) and publishes it with
``views.publish``. Reads only."""
from __future__ import annotations

import logging
from typing import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.actor import Actor
from bot.services import Services
from commands import surfaces
from transports.slack import payloads

log = logging.getLogger(__name__)


def on_home_opened(services: Services, zone_of: Callable[[str], str | None]) -> Callable:
    """The lazy listener of ``app_home_opened``; ``zone_of``: a user's time zone (or None)."""

    def listener(event, client: WebClient) -> None:
        try:
            opened = payloads.parse(payloads.AppHomeOpened, event, "event")
        except payloads.BadPayload as e:
            log.info("app home not published: %s", e)
            return
        if opened.tab != "home":  # the Messages tab: nothing to draw
            return
        actor = Actor(id=opened.user, name="", origin="slack", tz=zone_of(opened.user))
        view = services.renderer.view(surfaces.home(services, actor))
        try:
            client.views_publish(user_id=opened.user, view=view)
        except SlackApiError as e:
            log.warning("home of %s not published: %s", opened.user, e.response.get("error"))

    return listener
