"""The one place templates are rendered (Jinja2, StrictUndefined).

A ``Reply`` names a template and its context. For Slack it becomes Block Kit blocks plus
fallback text (``templates/blocks/NAME.json.j2``); for the shell and the CLI it becomes
readable text (``templates/text/NAME.txt.j2``).

In Block Kit templates every ``{{ value }}`` is escaped, automatically, both for
Slack mrkdwn (``&``, ``<``, ``>``, so text that came from a person can never ping
``@channel`` or forge a link) and for a JSON string. Only values wrapped in ``Raw`` by
this module (a user mention built from a checked ID) skip the mrkdwn part.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from bot.durations import format_duration

BUNDLED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def templates_dir() -> Path:
    """``$DRBOT_TEMPLATES``, or the templates/ folder next to the bot package: the package
    data of an installed wheel (site-packages/templates), or the checkout's in an editable install."""
    return Path(os.environ.get("DRBOT_TEMPLATES") or BUNDLED_TEMPLATES)
MAX_BLOCKS = 50
SPARKS = "▁▂▃▄▅▆▇█"
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")


@dataclass(frozen=True)
class Reply:
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    ephemeral: bool = True
    replace_original: bool = False
    modal: bool = False
    """A form to open for the clicker (Slack: views.open); the shell prints its text."""


MAX_SECTION = 3000
MAX_HEADER = 150
MAX_FALLBACK = 4000
"""Block Kit's limits on a section's text, a header's text, and (advised) the fallback text."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fit(block: dict) -> dict:
    """Clip texts that Slack would refuse whole (a long reason must not lose the message)."""
    limit = MAX_SECTION if block.get("type") == "section" else MAX_HEADER if block.get("type") == "header" else None
    text = block.get("text")
    if limit is not None and isinstance(text, dict) and len(text.get("text", "")) > limit:
        block = block | {"text": text | {"text": _clip(text["text"], limit)}}
    return block


class Raw(str):
    """Already-valid mrkdwn (built here from checked IDs); JSON-escaped only."""


def mrkdwn_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@jinja2.pass_eval_context
def _json_finalize(_eval_ctx, value: Any) -> Markup:
    """Escape one interpolated value for mrkdwn and a JSON string. Macro results arrive as
    Markup, already escaped piece by piece, and pass through unchanged. (Taking the eval
    context keeps Jinja from folding constant expressions at compile time, where it would
    HTML-escape them, e.g. ``{{ none }}`` -> ``None``, ``"`` -> ``&#34;``, instead.)"""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    text = str(value) if isinstance(value, Raw) else mrkdwn_escape(str(value))
    return Markup(json.dumps(text, ensure_ascii=False)[1:-1])


def sparkline(values: list[float]) -> str:
    """``▁▂▃▅▇`` for a series; empty for none; a flat series is all low bars."""
    values = [v for v in values if v is not None]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo
    return "".join(SPARKS[0] if span == 0 else SPARKS[min(int((v - lo) / span * len(SPARKS)), len(SPARKS) - 1)]
                   for v in values)


def mention(user_id: str) -> str:
    if _USER_ID.match(user_id):
        return Raw(f"<@{user_id}>")
    if _GROUP_ID.match(user_id):
        return Raw(f"<!subteam^{user_id}>")
    return user_id


class Renderer:
    def __init__(self, tz: str | tzinfo = "UTC", templates: Path | None = None):
        templates = templates or templates_dir()
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        loader = jinja2.FileSystemLoader(str(templates))
        common = dict(loader=loader, undefined=jinja2.StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True, keep_trailing_newline=False)
        self.text_env = jinja2.Environment(autoescape=False, **common)
        # autoescape only so that macro results come back as Markup and are not escaped twice;
        # the escaping itself is _json_finalize's.
        self.json_env = jinja2.Environment(autoescape=True, finalize=_json_finalize, **common)
        for env in (self.text_env, self.json_env):
            env.filters.update(dur=format_duration, spark=sparkline, when=self.when, ago=self.ago,
                               reason=self.reason, mention=mention, fromjson=json.loads, plain=Raw,
                               secs=lambda s: format_duration(
                                   None if s is None else timedelta(seconds=s)))
        self.text_env.filters["mention"] = lambda u: f"@{u}"
        self._reasons = self.text_env.get_template("_reasons.j2").module

    # -- filters -------------------------------------------------------------------------
    def when(self, at: datetime | None, fmt: str = "%a %d %b %H:%M %Z", tz: str | None = None) -> str:
        """A time in the config's zone, or in ``tz`` (the reader's) when given."""
        if at is None:
            return "-"
        return at.astimezone(ZoneInfo(tz) if tz else self.tz).strftime(fmt)

    def ago(self, at: datetime | None, now: datetime | None = None) -> str:
        if at is None:
            return "never"
        now = now or datetime.now(timezone.utc)
        delta = now - at
        return f"in {format_duration(-delta)}" if delta.total_seconds() < 0 else f"{format_duration(delta)} ago"

    def reason(self, finding) -> str:
        return str(self._reasons.reason(finding)).strip()

    # -- rendering -----------------------------------------------------------------------
    def text(self, reply: Reply) -> str:
        return self.text_env.get_template(f"text/{reply.template}.txt.j2").render(**reply.context).rstrip() + "\n"

    def view(self, reply: Reply) -> dict:
        """A whole Block Kit view (a modal), from templates/blocks/NAME.json.j2."""
        raw = self.json_env.get_template(f"blocks/{reply.template}.json.j2").render(**reply.context)
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"template blocks/{reply.template}.json.j2 rendered invalid JSON: {e}\n{raw}") from e

    def blocks(self, reply: Reply) -> tuple[list[dict], str]:
        """Block Kit blocks and the fallback text Slack shows in notifications."""
        raw = self.json_env.get_template(f"blocks/{reply.template}.json.j2").render(**reply.context)
        try:
            message = json.loads(raw)
        except json.JSONDecodeError as e:  # a template bug: fail loudly, with the place
            raise ValueError(f"template blocks/{reply.template}.json.j2 rendered invalid JSON: {e}\n{raw}") from e
        blocks = [_fit(b) for b in message.get("blocks", [])]
        if len(blocks) > MAX_BLOCKS:
            hidden = len(blocks) - (MAX_BLOCKS - 1)
            blocks = blocks[:MAX_BLOCKS - 1] + [{"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"{hidden} more blocks not shown (Slack allows {MAX_BLOCKS})."}]}]
        return blocks, _clip(message.get("text", ""), MAX_FALLBACK)
