"""Alert intake over HTTP, on the same server as /slack/events:

- ``POST /alerts/alertmanager``: Alertmanager webhook (v4), ``Authorization: Bearer``.
- ``POST /alerts/webhook``: generic JSON, ``X-Drbot-Signature: v0=HMAC-SHA256(secret,
  "v0:{X-Drbot-Timestamp}:{body}")``, timestamps older than 5 minutes refused (replay).
- ``POST /alerts/sns``: CloudWatch alarms through SNS; signature verified (certificate from
  an SNS host only), subscription confirmations answered, failures rejected and counted.

Every request is checked before it is read: its size (413, ``transports.limits``), who sent
it (401/403), then its body: UTF-8 JSON of at most 64 levels, and the typed model of what
its sender documents (``bot.alerts.normalise``): 400 naming the field; more than
``MAX_ALERTS`` alerts: 413. A notification that passes is stored as it came, in one INSERT
(``bot.alerts.drain``, table ``alert_inbox``), and answered 200 ``{"ok": true, "accepted":
n, "id": inbox id}``: a 200 means its alerts will be processed, by the drain worker, in
batches, even across a restart. Nothing here answers 500 to bad input, and rejections are
logged (``alert.rejected``, ``bot.oplog``) with the reason and the size, never the body,
and counted in ``drbot_alerts_rejected_total{endpoint, reason}``.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.alerts.normalise import BadPayload, read
from bot.oplog import op
from bot.services import Services
from integrations.aws.sns_confirm import confirm_subscription
from integrations.aws.sns_verify import CertificateUnavailable, SignatureInvalid, SnsVerifier
from integrations.base import IntegrationError
from transports.limits import ALERTS_BODY, MAX_ALERTS, SNS_BODY, UNIX_TIME, Rejected, parse_json, read_body, utf8

log = logging.getLogger(__name__)
REPLAY_WINDOW = 300


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def _endpoint(request: Request) -> str:
    return request.url.path.rsplit("/", 1)[-1]


async def _accept(services: Services, endpoint: str, text: str, data: Any) -> Response:
    """Validate ``data`` as its sender documents it, store ``text`` (the body), answer 200."""
    alerts = read(endpoint, data, services.config)  # raises BadPayload
    if len(alerts) > MAX_ALERTS:
        raise Rejected(413, f"{len(alerts)} alerts in one request; at most {MAX_ALERTS} are taken "
                            "(set max_alerts in Alertmanager's webhook_config)")
    inbox_id = await run_in_threadpool(services.inbox.accept, endpoint, text, alerts)
    services.metrics.alerts.labels(endpoint).inc(len(alerts))
    return JSONResponse({"ok": True, "accepted": len(alerts), "id": inbox_id})


def _rejected(services: Services, request: Request, e: Rejected | BadPayload) -> JSONResponse:
    status, reason = (e.status, e.reason) if isinstance(e, Rejected) else (400, str(e))
    services.metrics.alert_rejected(_endpoint(request), status)
    op("alert.rejected", endpoint=request.url.path, status=status, reason=reason,
       bytes=request.headers.get("content-length", "?"))
    return _problem(status, reason)


def routes(services: Services) -> list[Route]:
    cfg = services.config.alerts

    async def alertmanager(request: Request) -> Response:
        if not cfg.alertmanager_token:
            return _problem(404, "the Alertmanager endpoint is off (set alerts.alertmanager_token)")
        try:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {cfg.alertmanager_token}".encode()):
                raise Rejected(401, "missing or wrong bearer token")
            text = utf8(await read_body(request, ALERTS_BODY))
            return await _accept(services, "alertmanager", text, parse_json(text))
        except (Rejected, BadPayload) as e:
            return _rejected(services, request, e)

    async def webhook(request: Request) -> Response:
        if not cfg.webhook_secret:
            return _problem(404, "the webhook endpoint is off (set alerts.webhook_secret)")
        try:
            body = await read_body(request, ALERTS_BODY)
            ts = request.headers.get("x-drbot-timestamp", "")
            given = request.headers.get("x-drbot-signature", "")
            if not UNIX_TIME.fullmatch(ts) or abs(time.time() - int(ts)) > REPLAY_WINDOW:
                raise Rejected(401, "missing or stale X-Drbot-Timestamp (Unix seconds in ASCII digits, "
                                    "5 minute window)")
            expected = "v0=" + hmac.new(cfg.webhook_secret.encode(), f"v0:{ts}:".encode() + body,
                                        hashlib.sha256).hexdigest()
            if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
                raise Rejected(401, "bad X-Drbot-Signature")
            text = utf8(body)
            return await _accept(services, "webhook", text, parse_json(text))
        except (Rejected, BadPayload) as e:
            return _rejected(services, request, e)

    async def sns(request: Request) -> Response:
        if not cfg.sns_topics:
            return _problem(404, "the SNS endpoint is off (set alerts.sns_topics)")
        try:
            text = utf8(await read_body(request, SNS_BODY))
            message = parse_json(text)
            if not isinstance(message, dict) or message.get("TopicArn") not in cfg.sns_topics:
                raise Rejected(403, "unknown SNS topic")
            verifier = services.extras.get("sns_verifier")
            if verifier is None:
                verifier = services.extras.setdefault("sns_verifier", SnsVerifier())
            try:
                await run_in_threadpool(verifier.verify, message)
            except CertificateUnavailable as e:  # may pass later: SNS retries a 5xx
                raise Rejected(503, f"signature not verified yet: {e}") from None
            except SignatureInvalid as e:
                raise Rejected(403, f"signature verification failed: {e}") from None
            kind = message.get("Type")
            if kind == "SubscriptionConfirmation":
                confirm = services.extras.get("sns_confirm", confirm_subscription)
                try:
                    await run_in_threadpool(confirm, message["SubscribeURL"])
                except IntegrationError as e:
                    raise Rejected(503 if e.transient else 400, str(e)) from None
                services.metrics.sns_confirmed.inc()
                return JSONResponse({"ok": True, "confirmed": message["TopicArn"]})
            if kind != "Notification":
                return JSONResponse({"ok": True, "ignored": kind})
            return await _accept(services, "sns", text, message)
        except (Rejected, BadPayload) as e:
            return _rejected(services, request, e)

    return [Route("/alerts/alertmanager", alertmanager, methods=["POST"]),
            Route("/alerts/webhook", webhook, methods=["POST"]),
            Route("/alerts/sns", sns, methods=["POST"])]
