"""One INFO line per operation, with stable keys (``op(event, **keys)``).

The keys go into the record's ``extra`` under ``op`` (the event) and ``keys``; the JSON
formatter (``DRBOT_LOG_FORMAT=json``) puts them at the top level of the line, the text
formatter appends them as ``key=value``. Keys are stable for dashboards and log queries:
``request_id``, ``service``, ``kind``, ``user``, ``outcome``, ``reason``, ``run_id``, ...
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("drbot.ops")

RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def op(event: str, level: int = logging.INFO, **keys: Any) -> None:
    """Log one operation: ``op("request.created", request_id=7, service="payments", user="U1")``;
    keys whose value is None are left out."""
    keys = {k: v for k, v in keys.items() if v is not None}
    log.log(level, "%s %s", event, " ".join(f"{k}={_text(v)}" for k, v in keys.items()),
             extra={"op": event, "keys": keys})


def _text(value: Any) -> str:
    text = str(getattr(value, "value", value))
    return json.dumps(text) if (not text or any(c.isspace() or c in '"=' for c in text)) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then the operation's keys."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if getattr(record, "op", None):
            line["event"] = record.op
            for k, v in getattr(record, "keys", {}).items():
                line.setdefault(k, getattr(v, "value", v))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


QUIET = ("apscheduler", "httpx", "httpcore", "botocore", "boto3", "urllib3", "alembic", "slack_bolt",
         "slack_sdk", "uvicorn", "uvicorn.error", "uvicorn.access", "s3transfer", "asyncio")
"""Third-party loggers kept at WARNING unless DRBOT_LOG_LEVEL_LIBS says otherwise."""


def setup(level: str = "INFO", fmt: str = "text", libs: str = "WARNING", stream: Any = None) -> None:
    """Configure the root logger once (``drbot`` start-up). ``fmt``: 'json' or 'text'."""
    if fmt not in ("json", "text"):
        raise ValueError(f"DRBOT_LOG_FORMAT must be 'json' or 'text', not {fmt!r}")
    for what, value in (("--log-level / DRBOT_LOG_LEVEL", level), ("DRBOT_LOG_LEVEL_LIBS", libs)):
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"{what} must be DEBUG, INFO, WARNING or ERROR, not {value!r}")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(libs.upper())
