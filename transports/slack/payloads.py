"""Slack's requests as drbot reads them: typed models of the payloads it handles, checked
at the HTTP edge (a request that does not fit is answered 400 before Bolt sees it) and
again by the listeners (Socket Mode has no HTTP edge). Slack adds fields over time, so
unknown fields are allowed; the fields drbot and Bolt read must have Slack's types."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

SlackId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")]
"""A user, channel or team id (U012AB3CD, C0123, W0456, T1)."""

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Control characters nobody types on purpose (tab, newline and return excepted);
PostgreSQL cannot even store NUL."""

HANDLED_EVENTS = ("message", "reaction_added", "app_home_opened")
"""The Events API events drbot listens to (deploy/slack-app-manifest.yaml subscribes to
these); others are acknowledged and ignored at the edge."""


class BadPayload(ValueError):
    """A Slack payload drbot cannot read; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


# -- what Bolt reads of every request (slack_bolt.request.internals.build_context) ---------

class _Ref(_Model):
    id: Optional[str] = None
    team_id: Optional[str] = None
    enterprise_id: Optional[str] = None


_IdOrRef = Union[str, _Ref, None]


class _Context(_Model):
    """The fields Bolt looks up in any request, at any of the levels it looks."""

    enterprise: _IdOrRef = None
    team: _IdOrRef = None
    user: _IdOrRef = None
    channel: _IdOrRef = None
    enterprise_id: Optional[str] = None
    team_id: Optional[str] = None
    user_id: Optional[str] = None
    channel_id: Optional[str] = None
    thread_ts: Optional[str] = None
    is_enterprise_install: Union[bool, str, None] = None
    is_ext_shared_channel: Optional[bool] = None
    authorizations: Optional[list[_Context]] = None
    event: Optional[_Context] = None
    message: Optional[_Context] = None
    previous_message: Optional[_Context] = None
    item: Optional[_Context] = None
    assistant_thread: Optional[_Context] = None
    function_data: Optional[dict[str, Any]] = None
    function_execution_id: Optional[str] = None
    bot_access_token: Optional[str] = None
    view: Optional[dict[str, Any]] = None
    response_url: Optional[str] = None
    response_urls: Optional[list[dict[str, Any]]] = None


# -- the requests drbot handles -------------------------------------------------------------

class User(_Model):
    id: SlackId
    username: str = ""
    name: str = ""


class Channel(_Model):
    id: SlackId


class Action(_Model):
    action_id: str = Field(min_length=1, max_length=255)
    value: str = Field("", max_length=2000)  # Slack's limit for a button's value


class Container(_Model):
    is_ephemeral: bool = True


class BlockActions(_Model):
    type: Literal["block_actions"]
    user: User
    actions: list[Action] = Field(min_length=1)
    channel: Optional[Channel] = None
    container: Container = Field(default_factory=Container)
    trigger_id: Optional[str] = None
    response_url: Optional[str] = None


class Option(_Model):
    value: str = ""


class Element(_Model):
    """One input's state in a submitted modal."""

    type: str = ""
    value: Optional[str] = None
    selected_date_time: Optional[int] = None
    selected_option: Optional[Option] = None
    selected_options: Optional[list[Option]] = None
    selected_user: Optional[str] = None


class ViewState(_Model):
    values: dict[str, dict[str, Element]] = Field(default_factory=dict)


class View(_Model):
    callback_id: str = Field(max_length=255)
    private_metadata: str = Field("", max_length=3000)
    state: ViewState = Field(default_factory=ViewState)


class ViewSubmission(_Model):
    type: Literal["view_submission"]
    user: User
    view: View


class SlashCommand(_Model):
    command: str = Field(min_length=1, max_length=100)
    user_id: SlackId
    user_name: str = ""
    channel_id: str = ""
    text: str = ""


class Field_(_Model):
    title: Optional[str] = None
    value: Optional[str] = None


class Attachment(_Model):
    title: Optional[str] = None
    text: Optional[str] = None
    fallback: Optional[str] = None
    fields: Optional[list[Field_]] = None


class MessageEvent(_Model):
    type: Literal["message"]
    subtype: Optional[str] = None
    channel: Optional[str] = None
    user: Optional[str] = None
    text: Optional[str] = None
    ts: str = ""
    attachments: Optional[list[Attachment]] = None


class ReactionItem(_Model):
    type: str = ""
    channel: str = ""
    ts: str = ""


class ReactionEvent(_Model):
    type: Literal["reaction_added"]
    user: str = ""
    reaction: str = ""
    item_user: str = ""
    item: ReactionItem = Field(default_factory=ReactionItem)


class AppHomeOpened(_Model):
    type: Literal["app_home_opened"]
    user: SlackId
    tab: str = "home"


class Shortcut(_Model):
    """A global shortcut (the lightning menu): no channel, no response_url."""

    type: Literal["shortcut"]
    callback_id: str = Field(min_length=1, max_length=255)
    trigger_id: str = Field(min_length=1)
    user: User


class ShortcutMessage(_Model):
    ts: str = Field(min_length=1, max_length=40)
    text: str = ""
    user: Optional[str] = None
    bot_id: Optional[str] = None
    username: Optional[str] = None


class MessageAction(_Model):
    """A message shortcut (a message's ... menu)."""

    type: Literal["message_action"]
    callback_id: str = Field(min_length=1, max_length=255)
    trigger_id: Optional[str] = None
    response_url: Optional[str] = None
    user: User
    channel: Channel
    message: ShortcutMessage


class EventBody(_Model):
    type: str = Field(min_length=1, max_length=100)


class EventCallback(_Model):
    type: Literal["event_callback"]
    event: EventBody


class UrlVerification(_Model):
    type: Literal["url_verification"]
    challenge: str = Field(max_length=500)


_BY_TYPE: dict[str, type[_Model]] = {
    "block_actions": BlockActions, "view_submission": ViewSubmission, "event_callback": EventCallback,
    "url_verification": UrlVerification, "shortcut": Shortcut, "message_action": MessageAction}
_EVENTS: dict[str, type[_Model]] = {"message": MessageEvent, "reaction_added": ReactionEvent,
                                    "app_home_opened": AppHomeOpened}


def _reason(e: ValidationError, where: str) -> str:
    first = e.errors(include_url=False)[0]
    path = ".".join(str(p) if len(str(p)) <= 60 else str(p)[:59] + "…" for p in first["loc"])
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}{'.' if where and path else ''}{path}: {first['msg']}{more}"


def parse(model: type[_Model], body: Any, where: str = "") -> Any:
    """``body`` as ``model``, or BadPayload naming the first field that does not fit."""
    if not isinstance(body, dict):
        raise BadPayload(f"{where or 'the payload'} must be a JSON object, not {type(body).__name__}")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise BadPayload(_reason(e, where)) from None


def event(body: dict[str, Any]) -> Any:
    """The event of an ``event_callback`` drbot handles, typed (MessageEvent, ReactionEvent, AppHomeOpened)."""
    inner = body.get("event")
    kind = inner.get("type") if isinstance(inner, dict) else None
    if kind not in _EVENTS:
        raise BadPayload(f"event.type: drbot does not handle {kind!r} events")
    return parse(_EVENTS[kind], inner, "event")


def check(body: dict[str, Any], interactive: bool) -> str | None:
    """What ``body`` is, if drbot handles it: 'command', 'block_actions', 'view_submission',
    'shortcut', 'message_action', 'url_verification', or 'event' (of a kind in HANDLED_EVENTS); None for an event or an
    interaction drbot does not handle (acknowledge and ignore it). Raises BadPayload
    naming the field when a request drbot handles does not have Slack's shape.
    ``interactive``: the body came as the ``payload`` field of a form."""
    where = "payload" if interactive else ""
    parse(_Context, body, where)
    if not interactive and "command" in body:
        parse(SlashCommand, body)
        return "command"
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        raise BadPayload(f"{where or 'the body'} has no 'type' (text): not a request from Slack")
    if kind not in _BY_TYPE:
        return None
    parse(_BY_TYPE[kind], body, where)
    if kind != "event_callback":
        return kind
    if body["event"]["type"] not in _EVENTS:
        return None
    event(body)
    return "event"


def form_values(view: View) -> dict[str, str]:
    """Slack's view state as action_id -> text (inputs, selects, date-time pickers; a
    multi-select's values joined by commas, a user select's user ID)."""
    out = {}
    for block in view.state.values.values():
        for action_id, element in block.items():
            value = element.value
            if value is None and element.selected_date_time is not None:
                value = str(element.selected_date_time)
            if value is None and element.selected_option is not None:
                value = element.selected_option.value
            if value is None and element.selected_options is not None:
                value = ",".join(o.value for o in element.selected_options)
            if value is None and element.selected_user is not None:
                value = element.selected_user
            out[action_id] = value or ""
    return out


def control_character(text: str) -> tuple[int, str] | None:
    """(position from 1, 'U+0000') of the first control character in ``text``, or None."""
    m = CONTROL.search(text)
    return (m.start() + 1, f"U+{ord(m.group()):04X}") if m else None


def strip_controls(text: str) -> str:
    return CONTROL.sub("", text)
