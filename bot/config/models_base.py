"""Types shared by the config models."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from bot.durations import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
SLACK_ID = re.compile(r"^(U|W|S)[A-Z0-9]{2,}$")


def _slack_id(value: str) -> str:
    if not SLACK_ID.match(value):
        raise ValueError(f"{value!r} is not a Slack user or user-group ID "
                         "(use U0123ABCD for a person, S0123ABCD for a user group)")
    return value


SlackId = Annotated[str, AfterValidator(_slack_id)]
"""A Slack user (U..., W...) or user-group (S...) ID, checked item by item so that a
problem is located at e.g. ``approvals.approvers[1]``."""


class Strict(BaseModel):
    """Unknown keys are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
