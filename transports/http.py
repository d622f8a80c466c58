"""HTTP mode: one Starlette app serving Slack (``POST /slack/events``) and ``/healthz``.
Bolt verifies Slack's signature and answers 401 for a bad, missing or old one."""
from __future__ import annotations

import logging

from slack_bolt import App, BoltRequest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from transports import webhooks
from bot.services import Services

log = logging.getLogger(__name__)


def build_http_app(services: Services, bolt_app: App | None) -> Starlette:
    """``bolt_app`` is None in Socket Mode: then ``/slack/events`` is not served at all."""

    async def slack_events(request: Request) -> Response:
        body = (await request.body()).decode("utf-8")
        bolt_request = BoltRequest(body=body, query=str(request.query_params),
                                   headers={k: v for k, v in request.headers.items()})
        # dispatch blocks until the listener acks (milliseconds); keep it off the event loop
        result = await run_in_threadpool(bolt_app.dispatch, bolt_request)
        return Response(status_code=result.status, content=result.body,
                        headers=result.first_headers_without_set_cookie())

    async def healthz(_request: Request) -> Response:
        try:
            await run_in_threadpool(_db_ping, services)
        except Exception as e:
            log.warning("healthz: database check failed: %s", e)
            return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
        return JSONResponse({"ok": True, "database": "ok"})

    routes = [Route("/healthz", healthz, methods=["GET"]), *webhooks.routes(services)]
    if bolt_app is not None:
        routes.append(Route("/slack/events", slack_events, methods=["POST"]))
    return Starlette(routes=routes)


def _db_ping(services: Services) -> None:
    with services.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
