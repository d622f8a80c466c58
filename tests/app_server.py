"""Run the real app over HTTP (uvicorn on 127.0.0.1, a free port) against a FakeSlack."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn

from bot.services import Services
from transports.slack.app import SlackSettings, build_app
from transports.http import build_http_app
from tests.fakes.slack_api import FakeSlack
from tests.slack_client import SlackSender

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class RunningApp:
    def __init__(self, services: Services, url: str, sender: SlackSender):
        self.services = services
        self.url = url
        self.sender = sender


@contextmanager
def running_app(services: Services, fake: FakeSlack) -> Iterator[RunningApp]:
    settings = SlackSettings(bot_token="xoxb-test-token", signing_secret=SIGNING_SECRET, api_url=fake.base_url)
    bolt_app = build_app(services, settings)
    try:
        with serving(build_http_app(services, bolt_app)) as url:
            yield from _with_workers(services, url)
    finally:
        bolt_app.stop(wait=False)  # the Slack work in hand finishes on its own threads


def _with_workers(services: Services, url: str) -> Iterator[RunningApp]:
    if services.outbox is not None and not services.outbox.inline:
        services.outbox.start(interval=0.2)  # as `drbot run` does: request messages, progress, posts
    if services.inbox is not None:
        services.inbox.start(interval=0.2)  # as `drbot run` does: accepted alerts, processed in batches
    sender = SlackSender(url, SIGNING_SECRET)
    try:
        yield RunningApp(services, url, sender)
    finally:
        if services.inbox is not None:  # after the batch in progress; what waits stays stored
            services.inbox.stop()
        if services.outbox is not None:  # what is queued goes out before the fake stops
            services.outbox.drain(timeout=10)
            services.outbox.stop()
        sender.close()


@contextmanager
def serving(http_app) -> Iterator[str]:
    """``http_app`` served by uvicorn on 127.0.0.1 (a free port) in a thread; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(http_app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
