"""Alert intake over HTTP, on the same server as /slack/events:

- ``POST /alerts/alertmanager``: Alertmanager webhook (v4), ``Authorization: Bearer``.
- ``POST /alerts/webhook``: generic JSON, ``X-Drbot-Signature: v0=HMAC-SHA256(secret,
  "v0:{X-Drbot-Timestamp}:{body}")``, timestamps older than 5 minutes refused (replay).
- ``POST /alerts/sns``: CloudWatch alarms through SNS; signature verified (certificate from
  an SNS host only), subscription confirmations answered, failures rejected and counted.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.alerts.intake import ingest
from bot.alerts.normalise import BadPayload, from_alertmanager, from_cloudwatch_sns, from_webhook
from bot.services import Services
from integrations.aws.sns_confirm import confirm_subscription
from integrations.aws.sns_verify import SignatureInvalid, SnsVerifier

log = logging.getLogger(__name__)
REPLAY_WINDOW = 300


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def _count(services: Services, name: str) -> None:
    counters = services.extras.setdefault("counters", {})
    counters[name] = counters.get(name, 0) + 1


async def _accept(services: Services, normalise: Callable[[Any], list], data: Any) -> Response:
    try:
        alerts = normalise(data)
    except BadPayload as e:
        return _problem(400, str(e))
    result = await run_in_threadpool(ingest, services, alerts)
    _count(services, "alerts_received")
    if services.outbox is not None:
        services.outbox.poke()
    return JSONResponse({"ok": True, **result.as_dict()})


async def _json(request: Request) -> tuple[bytes, Any]:
    body = await request.body()
    try:
        return body, json.loads(body)
    except ValueError:
        raise BadPayload("the body is not JSON") from None


def routes(services: Services) -> list[Route]:
    cfg = services.config.alerts

    async def alertmanager(request: Request) -> Response:
        if not cfg.alertmanager_token:
            return _problem(404, "the Alertmanager endpoint is off (set alerts.alertmanager_token)")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {cfg.alertmanager_token}".encode()):
            _count(services, "alerts_rejected_auth")
            return _problem(401, "missing or wrong bearer token")
        try:
            _, data = await _json(request)
        except BadPayload as e:
            return _problem(400, str(e))
        return await _accept(services, lambda d: from_alertmanager(d, services.config), data)

    async def webhook(request: Request) -> Response:
        if not cfg.webhook_secret:
            return _problem(404, "the webhook endpoint is off (set alerts.webhook_secret)")
        body = await request.body()
        ts = request.headers.get("x-drbot-timestamp", "")
        given = request.headers.get("x-drbot-signature", "")
        if not ts.isdigit() or abs(time.time() - int(ts)) > REPLAY_WINDOW:
            _count(services, "alerts_rejected_auth")
            return _problem(401, "missing or stale X-Drbot-Timestamp (5 minute window)")
        expected = "v0=" + hmac.new(cfg.webhook_secret.encode(), f"v0:{ts}:".encode() + body,
                                    hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            _count(services, "alerts_rejected_auth")
            return _problem(401, "bad X-Drbot-Signature")
        try:
            data = json.loads(body)
        except ValueError:
            return _problem(400, "the body is not JSON")
        return await _accept(services, lambda d: from_webhook(d, services.config), data)

    async def sns(request: Request) -> Response:
        if not cfg.sns_topics:
            return _problem(404, "the SNS endpoint is off (set alerts.sns_topics)")
        try:
            _, message = await _json(request)
        except BadPayload as e:
            return _problem(400, str(e))
        if not isinstance(message, dict) or message.get("TopicArn") not in cfg.sns_topics:
            _count(services, "sns_rejected")
            return _problem(403, "unknown SNS topic")
        verifier = services.extras.get("sns_verifier")
        if verifier is None:
            verifier = services.extras.setdefault("sns_verifier", SnsVerifier())
        try:
            await run_in_threadpool(verifier.verify, message)
        except SignatureInvalid as e:
            _count(services, "sns_rejected")
            log.warning("SNS message rejected: %s", e)
            return _problem(403, f"signature verification failed: {e}")
        kind = message.get("Type")
        if kind == "SubscriptionConfirmation":
            confirm = services.extras.get("sns_confirm", confirm_subscription)
            await run_in_threadpool(confirm, message["SubscribeURL"])
            _count(services, "sns_confirmed")
            return JSONResponse({"ok": True, "confirmed": message["TopicArn"]})
        if kind != "Notification":
            return JSONResponse({"ok": True, "ignored": kind})
        return await _accept(services, lambda m: [from_cloudwatch_sns(m, services.config)], message)

    return [Route("/alerts/alertmanager", alertmanager, methods=["POST"]),
            Route("/alerts/webhook", webhook, methods=["POST"]),
            Route("/alerts/sns", sns, methods=["POST"])]
