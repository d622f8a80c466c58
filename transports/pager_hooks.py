"""The pagers' webhooks, on the same server as the alert endpoints: acknowledgements and
resolutions made in the pager, reflected in the incident's channel and on its timeline
(``bot.pager_actions.pager_news``).

- ``POST /pager/pagerduty``: PagerDuty v3 webhooks, ``X-PagerDuty-Signature: v1=<hex
  HMAC-SHA256 of the body with paging.webhook_secret>`` (several, comma-separated, during
  a secret rotation: one must match). ``incident.acknowledged`` and ``incident.resolved``
  are reflected; the drbot incident is the one of the PagerDuty incident's
  ``incident_key`` (drbot's dedup key). Other event types: 202, ignored.
- ``POST /pager/opsgenie``: Opsgenie's webhook integration, ``X-Drbot-Token:
  paging.opsgenie_webhook_token`` (a custom header set in the integration). Actions
  ``Acknowledge`` and ``Close``; the alert's ``alias`` is drbot's dedup key.

Unsigned or badly signed: 401; an endpoint whose secret is unset: 404; a page that is
none of drbot's incidents: 202, ignored, with a log line. Rejections are logged
(``pager.rejected``) with the reason and the size, never the body."""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.oplog import op
from bot.pager_actions import pager_news
from bot.services import Services
from transports.limits import MiB, Rejected, parse_json, read_body, utf8

PAGER_BODY = 1 * MiB
PAGERDUTY_EVENTS = {"incident.acknowledged": "acknowledged", "incident.resolved": "resolved"}
OPSGENIE_ACTIONS = {"Acknowledge": "acknowledged", "Close": "resolved"}


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def _rejected(request: Request, e: Rejected) -> JSONResponse:
    op("pager.rejected", endpoint=request.url.path, status=e.status, reason=e.reason,
       bytes=request.headers.get("content-length", "?"))
    return _problem(e.status, e.reason)


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise Rejected(400, f"{what} must be a JSON object")
    return value


def signed_by_pagerduty(secret: str, body: bytes, header: str) -> bool:
    """Does one of the header's ``v1=`` signatures match the body's HMAC-SHA256 with ``secret``?"""
    expected = ("v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()).encode()
    return any(hmac.compare_digest(sig.strip().encode("utf-8", "replace"), expected) for sig in header.split(","))


async def _reflect(services: Services, pager: str, key: Any, what: str, by: Any, ref: str) -> Response:
    key = key if isinstance(key, str) else None
    by = by if isinstance(by, str) else ""
    found = await run_in_threadpool(pager_news, services, pager, key, what, by[:200], ref[:200])
    if found is None:
        op("pager.ignored", pager=pager, key=(key or "")[:80], what=what, reason="not a drbot incident")
        return JSONResponse({"ok": True, "ignored": "not a drbot incident"}, status_code=202)
    return JSONResponse({"ok": True, "incident": found, "what": what})


def routes(services: Services) -> list[Route]:
    cfg = services.config.paging

    async def pagerduty(request: Request) -> Response:
        secret = cfg.webhook_secret.get_secret_value() if cfg and cfg.webhook_secret else ""
        if not secret:
            return _problem(404, "the PagerDuty webhook is off (set paging.webhook_secret)")
        try:
            body = await read_body(request, PAGER_BODY)
            if not signed_by_pagerduty(secret, body, request.headers.get("x-pagerduty-signature", "")):
                raise Rejected(401, "missing or bad X-PagerDuty-Signature (v1=HMAC-SHA256 of the body with "
                                    "paging.webhook_secret)")
            event = _object(_object(parse_json(utf8(body)), "the body").get("event"), "event")
            what = PAGERDUTY_EVENTS.get(event.get("event_type"))
            if what is None:
                return JSONResponse({"ok": True, "ignored": str(event.get("event_type"))[:80]}, status_code=202)
            data = _object(event.get("data"), "event.data")
            agent = event.get("agent") if isinstance(event.get("agent"), dict) else {}
            ref = str(event.get("id") or hashlib.sha256(body).hexdigest())
            return await _reflect(services, "PagerDuty", data.get("incident_key"), what, agent.get("summary"), ref)
        except Rejected as e:
            return _rejected(request, e)

    async def opsgenie(request: Request) -> Response:
        token = cfg.opsgenie_webhook_token.get_secret_value() if cfg and cfg.opsgenie_webhook_token else ""
        if not token:
            return _problem(404, "the Opsgenie webhook is off (set paging.opsgenie_webhook_token)")
        try:
            given = request.headers.get("x-drbot-token", "")
            if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode()):
                raise Rejected(401, "missing or wrong X-Drbot-Token")
            body = await read_body(request, PAGER_BODY)
            data = _object(parse_json(utf8(body)), "the body")
            what = OPSGENIE_ACTIONS.get(data.get("action"))
            if what is None:
                return JSONResponse({"ok": True, "ignored": str(data.get("action"))[:80]}, status_code=202)
            alert = _object(data.get("alert"), "alert")
            when = alert.get("updatedAt") or hashlib.sha256(body).hexdigest()
            ref = f"{alert.get('alertId')}:{data.get('action')}:{when}"
            return await _reflect(services, "Opsgenie", alert.get("alias"), what, alert.get("username"), ref)
        except Rejected as e:
            return _rejected(request, e)

    return [Route("/pager/pagerduty", pagerduty, methods=["POST"]),
            Route("/pager/opsgenie", opsgenie, methods=["POST"])]
