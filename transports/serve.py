"""``drbot run``: pick the mode from the environment and serve until stopped."""
from __future__ import annotations

import logging
import os
import sys

import uvicorn
from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.followups import recover_interrupted
from bot.services import Services
from transports.http import build_http_app
from transports.slack.app import SlackSettings, build_app

log = logging.getLogger(__name__)


def pick_mode(explicit: str | None, env=os.environ) -> str | None:
    if explicit:
        return explicit
    if env.get("SLACK_APP_TOKEN"):
        return "socket"
    if env.get("SLACK_SIGNING_SECRET"):
        return "http"
    return None


def run(services: Services, mode: str | None, host: str, port: int, env=os.environ) -> int:
    mode = pick_mode(mode, env)
    missing = [v for v, need in (("SLACK_BOT_TOKEN", True),
                                 ("SLACK_APP_TOKEN", mode == "socket"),
                                 ("SLACK_SIGNING_SECRET", mode == "http")) if need and not env.get(v)]
    if mode is None or missing:
        what = ", ".join(missing) if mode else "SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)"
        print(f"drbot run: {what} not set. Set it (README.md, 'Connect Slack'), "
              "or try drbot without Slack: drbot shell --config deploy/demo.yaml", file=sys.stderr)
        return 2
    settings = SlackSettings(bot_token=env["SLACK_BOT_TOKEN"],
                             signing_secret=env.get("SLACK_SIGNING_SECRET") if mode == "http" else None,
                             api_url=env.get("SLACK_API_URL"))
    app = build_app(services, settings)
    interrupted = recover_interrupted(services)
    if interrupted:
        log.warning("runs interrupted by a previous stop, announced in their threads: %s", interrupted)
    services.scheduler.start()  # periodic jobs, on the leader replica only
    services.outbox.start()  # delivers what a previous process left pending, then new items
    services.runner.start()  # starts what is approved and due, now and whenever it is poked
    if mode == "socket":
        handler = SocketModeHandler(app, env["SLACK_APP_TOKEN"])
        handler.connect()  # background threads; the HTTP server below keeps the process alive
        log.info("connected to Slack in Socket Mode; serving /healthz on http://%s:%d", host, port)
        http_app = build_http_app(services, None)
    else:
        log.info("HTTP mode: Slack events at http://%s:%d/slack/events", host, port)
        http_app = build_http_app(services, app)
    try:
        uvicorn.run(http_app, host=host, port=port, log_level="warning")
    finally:
        services.runner.stop()
        services.outbox.stop()
        services.scheduler.stop(wait=False)
    return 0
