"""Who is on call now, read from a pager's schedule (for on-call approval slots).

PagerDuty (REST API v2, not the Events API): ``GET {api_url}/oncalls?schedule_ids[]=ID
&include[]=users&earliest=true`` with ``Authorization: Token token=KEY`` and ``Accept:
application/vnd.pagerduty+json;version=2``; each entry of ``oncalls`` has a ``user`` whose
``email`` is there because of ``include[]=users``.

Opsgenie (Who Is On Call API): ``GET {api_url}/v2/schedules/{schedule}/on-calls?flat=true
&scheduleIdentifierType=name|id`` with ``Authorization: GenieKey KEY``; ``flat=true`` makes
``data.onCallRecipients`` the usernames (e-mail addresses) of everyone on call now.

Both return ``OnCallNow``: the schedule and the lower-cased e-mails/usernames on call. A
failure raises ``IntegrationError`` (kinds as in ``common.send``); never an empty answer
that would look like "nobody is on call".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from integrations.base import ErrorKind, IntegrationError
from integrations.pager.common import send

OPSGENIE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class OnCallNow:
    schedule: str
    people: frozenset[str]
    """E-mail addresses (PagerDuty) or usernames (Opsgenie, also e-mails), lower case."""


def pagerduty_on_call(backend, schedule: str) -> OnCallNow:
    """Who is on call now in PagerDuty schedule ``schedule`` (its ID, e.g. ``P1ABCD2``)."""
    o = backend.options
    if o.api_token is None:
        raise IntegrationError(f"{backend.name}: cannot read schedule {schedule}: set api_token (a PagerDuty "
                               "REST API key with read access) on the source.", ErrorKind.PERMANENT)
    headers = {"Authorization": f"Token token={o.api_token.get_secret_value()}",
               "Accept": "application/vnd.pagerduty+json;version=2"}
    answer = send(backend.client, backend.name, f"PagerDuty REST API at {o.api_url}", "GET", f"{o.api_url}/oncalls",
                  o.timeout, "api_token (a REST API key)", headers=headers,
                  params=[("schedule_ids[]", schedule), ("include[]", "users"), ("earliest", "true")])
    entries = answer.get("oncalls") if isinstance(answer, dict) else None
    if not isinstance(entries, list):
        raise IntegrationError(f"{backend.name}: PagerDuty answered without 'oncalls' for schedule {schedule}.",
                               ErrorKind.TRANSIENT)
    people = set()
    for entry in entries:
        user = entry.get("user") if isinstance(entry, dict) else None
        if isinstance(user, dict) and user.get("email"):
            people.add(str(user["email"]).lower())
    return OnCallNow(schedule, frozenset(people))


def opsgenie_on_call(backend, schedule: str) -> OnCallNow:
    """Who is on call now in Opsgenie schedule ``schedule`` (its name or id)."""
    kind = "id" if OPSGENIE_ID.match(schedule) else "name"
    answer = backend._request("GET", f"/v2/schedules/{quote(schedule, safe='')}/on-calls"
                                     f"?flat=true&scheduleIdentifierType={kind}")
    data = answer.get("data") if isinstance(answer, dict) else None
    recipients = data.get("onCallRecipients") if isinstance(data, dict) else None
    if not isinstance(recipients, list):
        raise IntegrationError(f"{backend.name}: Opsgenie answered without 'onCallRecipients' for schedule "
                               f"{schedule}.", ErrorKind.TRANSIENT)
    return OnCallNow(schedule, frozenset(str(r).lower() for r in recipients if r))

