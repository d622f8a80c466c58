"""``drbot run``: pick the mode from the environment and serve until stopped."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from typing import Iterator

import uvicorn
from prometheus_client import start_http_server
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError

from bot.followups import recover_interrupted
from bot.services import Services
from transports.http import build_http_app, freeze_startup_heap
from transports.slack.app import SlackSettings, build_app, make_client

log = logging.getLogger(__name__)
GRACE = float(os.environ.get("DRBOT_SHUTDOWN_GRACE", "25"))
"""Seconds a run in progress may take to finish its step after SIGTERM (Kubernetes waits 30 s)."""


class _Server(uvicorn.Server):
    """uvicorn, except that a SIGTERM or SIGINT stops the server and returns (uvicorn would
    raise the signal again afterwards, killing the process before drbot stops its work)."""

    signalled: str = ""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame) -> None:
        self.signalled = signal.Signals(sig).name
        self.handle_exit(sig, frame)


def pick_mode(explicit: str | None, env=os.environ) -> str | None:
    if explicit:
        return explicit
    if env.get("SLACK_APP_TOKEN"):
        return "socket"
    if env.get("SLACK_SIGNING_SECRET"):
        return "http"
    return None


def run(services: Services, mode: str | None, host: str, port: int, env=os.environ,
        metrics_port: int | None = None) -> int:
    """``metrics_port``: serve /metrics there, on its own, instead of on ``port`` (which faces
    Slack in HTTP mode and the alert senders in both modes)."""
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
    refused = _slack_refuses(settings)
    if refused:
        print(f"drbot run: {refused}", file=sys.stderr)
        return 2
    app = build_app(services, settings)
    try:
        metrics_server = _serve_metrics(services, host, metrics_port) if metrics_port else None
    except OSError as e:
        print(f"drbot run: cannot serve /metrics on {host}:{metrics_port} ({e.strerror or e}). Pick a free port "
              "with --metrics-port or DRBOT_METRICS_PORT, or leave it unset to serve /metrics on --port.",
              file=sys.stderr)
        return 2
    interrupted = recover_interrupted(services)
    if interrupted:
        log.warning("runs interrupted by a previous stop, announced in their threads: %s", interrupted)
    services.scheduler.start()  # periodic jobs, on the leader replica only
    services.outbox.start()  # delivers what a previous process left pending, then new items
    services.inbox.start()  # processes alerts accepted (by this process or a previous one), in batches
    services.runner.start()  # starts what is approved and due, now and whenever it is poked
    handler = None
    if mode == "socket":
        handler = SocketModeHandler(app, env["SLACK_APP_TOKEN"])
        try:
            handler.connect()  # background threads; the HTTP server below keeps the process alive
        except SlackApiError as e:
            _stop(services, "Socket Mode refused", None)
            if metrics_server is not None:
                metrics_server.shutdown()
            print(f"drbot run: Slack refused SLACK_APP_TOKEN (apps.connections.open: {e.response.get('error')}). "
                  "Use the app-level token (xapp-..., Slack app settings > Basic Information > App-Level Tokens, "
                  "scope connections:write) and turn Socket Mode on for the app.", file=sys.stderr)
            return 2
        log.info("connected to Slack in Socket Mode; serving alert webhooks, /healthz, /readyz%s on http://%s:%d",
                 "" if metrics_server else ", /metrics", host, port)
        http_app = build_http_app(services, None, socket_handler=handler, serve_metrics=metrics_server is None)
    else:
        log.info("HTTP mode: Slack events at http://%s:%d/slack/events", host, port)
        http_app = build_http_app(services, app, serve_metrics=metrics_server is None)
    server = _Server(uvicorn.Config(http_app, host=host, port=port, log_level="warning"))
    freeze_startup_heap()  # what start-up built is kept out of the collector's scans (no pauses under load)
    try:
        server.run()
    finally:
        app.stop(wait=True)  # replies to commands already acked are still sent
        finished = _stop(services, server.signalled or "exit", handler)
        services.collector.close()
        if metrics_server is not None:
            metrics_server.shutdown()
    if not finished:  # a step still runs past the grace period: its run is recorded interrupted
        logging.shutdown()
        os._exit(0)  # do not wait for it (the pool's threads would hold the exit)
    return 0


def _serve_metrics(services: Services, host: str, port: int):
    """/metrics on its own port, in a background thread; the server, to shut it down."""
    server, _thread = start_http_server(port, addr=host, registry=services.metrics.registry)
    log.info("serving /metrics on http://%s:%d/metrics", host, port)
    return server


def _slack_refuses(settings: SlackSettings) -> str | None:
    """One auth.test before anything starts: a sentence saying what is wrong, or None."""
    client = make_client(settings)
    try:
        client.auth_test()
    except SlackApiError as e:
        error = e.response.get("error") if e.response is not None else None
        if e.response is not None and (e.response.status_code >= 500 or e.response.status_code == 429):
            return (f"Slack answered auth.test with HTTP {e.response.status_code} ({error or 'no error given'}): "
                    "Slack is having trouble, not drbot's token. Start drbot again in a minute.")
        return (f"Slack refused SLACK_BOT_TOKEN (auth.test: {error or e.response.status_code}). Use the app's "
                "Bot User OAuth Token (xoxb-..., Slack app settings > OAuth & Permissions) and check that "
                "the app is installed in the workspace.")
    except Exception as e:  # DNS, refused connection, TLS, timeout: Slack is not reachable from here
        why = " ".join(str(e).split())  # one line, whatever the library put in it
        return (f"cannot reach Slack at {client.base_url} ({type(e).__name__}: {why}). Check this host's "
                "network, proxy and DNS (or SLACK_API_URL if you set it), then start drbot again.")
    return None


def _stop(services: Services, why: str, socket_handler: SocketModeHandler | None) -> bool:
    """Stop taking work, let a step in progress finish within the grace period (else its
    run is interrupted, as after a crash), stop the outbox after its current delivery, hand
    the scheduler's leadership over, close the Socket Mode connection."""
    log.info("stopping (%s): no new work; runs in progress get %.0f s", why, GRACE)
    if socket_handler is not None:
        socket_handler.close()
    finished = services.runner.shutdown(GRACE)
    interrupted = recover_interrupted(services, own=True)  # runs stopped between steps, or still in one
    if interrupted:
        log.warning("runs marked interrupted (%s): %s; Resume continues them",
                    "after their step" if finished else f"still in a step after {GRACE:.0f} s", interrupted)
    services.inbox.stop()  # after its batch in progress; what waits is processed at the next start
    services.outbox.stop()
    log.info("alert drain and outbox worker stopped")
    services.scheduler.stop(wait=False)
    log.info("scheduler stopped, leadership released; drbot stopped")
    return finished
