"""Public status page on Atlassian Statuspage (kind ``statuspage``, capability STATUS).

REST API v1 (https://api.statuspage.io/v1), authenticated with ``Authorization: OAuth
<api_key>``. Incidents and scheduled maintenances are created with a drbot ``key`` in
``metadata.drbot.key``; creating again with the same key returns the incident already
there instead of opening a second one, so a retry after a timeout (when the first POST may
have succeeded) is safe. The lookup reads the unresolved incidents and then the most recent
``recent_limit`` incidents (the API's ``q`` search does not cover metadata).

Updates are idempotent too, given a ``marker`` (the caller's id of that update, the same on
every retry): the incident is read first, and when ``metadata.drbot.update`` already holds
the marker the update was applied (e.g. by a request whose answer timed out) and is not
sent again; otherwise it is sent with the marker in its metadata (the whole metadata
object, so it is kept whether the API merges or replaces it).

A drill's scheduled maintenance can be moved (``reschedule_maintenance``: new window, with
an update telling subscribers) or cancelled (``cancel_maintenance``: Statuspage has no
cancelled status, so the maintenance is completed with a message saying it was cancelled,
and its automatic transitions are switched off so it never puts components under
maintenance or back to operational).

Statuses are checked before anything is sent: incidents use investigating, identified,
monitoring, resolved; maintenances scheduled, in_progress, verifying, completed;
components operational, degraded_performance, partial_outage, major_outage,
under_maintenance.

Errors: HTTP 420/429 raise ``RateLimited`` (TRANSIENT, with ``retry_after`` seconds from
the Retry-After header); 5xx, timeouts and connection failures are TRANSIENT; 401/403 are
NOT_PERMITTED; other 4xx are PERMANENT with the API's own message. The backend never
retries or sleeps: the caller (the outbox worker) retries and paces requests (Statuspage
allows about one request per second per API key). One call may make several requests
(creating looks the key up first), so a caller that paces passes ``pace``: it is called
before every HTTP request of that call, lookups included, and may wait there.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
from pydantic import Field, SecretStr, field_validator

from integrations.base import (
    STATUS, BackendOptions, CheckResult, ErrorKind, IntegrationError,
)
from integrations.http_client import HttpBackend, RateLimited, check_http_url, retry_after

INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
MAINTENANCE_STATUSES = ("scheduled", "in_progress", "verifying", "completed")
COMPONENT_STATUSES = ("operational", "degraded_performance", "partial_outage",
                      "major_outage", "under_maintenance")
IMPACTS = ("none", "minor", "major", "critical")



@dataclass(frozen=True)
class PublishedIncident:
    """An incident or scheduled maintenance as Statuspage holds it."""

    id: str
    status: str
    shortlink: str | None
    name: str
    impact: str | None = None
    key: str | None = None
    """The drbot key in ``metadata.drbot.key``, if any."""
    components: dict[str, str] = field(default_factory=dict)
    """Affected component id -> its status now."""
    scheduled_for: str | None = None
    scheduled_until: str | None = None
    update: str | None = None
    """The marker of the last update drbot applied (``metadata.drbot.update``)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The incident's whole metadata, as the page holds it."""


class StatuspageOptions(BackendOptions):
    page_id: str = Field(min_length=1)
    api_key: SecretStr
    """Use ``${STATUSPAGE_API_KEY}`` in the config; never write the key itself."""
    base_url: str = "https://api.statuspage.io/v1"
    components: dict[str, str] = {}
    """drbot service name -> Statuspage component id."""
    recent_limit: int = Field(100, ge=1, le=100)
    """How many recent incidents the idempotency lookup reads (the API's maximum: 100)."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value, "base_url").rstrip("/")


def _refuse(message: str) -> IntegrationError:
    return IntegrationError(message, ErrorKind.PERMANENT)


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise _refuse(f"{value!r} is not a valid Statuspage {what}; use one of: "
                      f"{', '.join(allowed)}.")


def _check_components(components: Mapping[str, str]) -> dict[str, str]:
    for component_id, status in components.items():
        if not component_id:
            raise _refuse("a Statuspage component id is empty.")
        _check(status, COMPONENT_STATUSES, f"component status (component {component_id})")
    return dict(components)


def _iso(value: datetime, what: str) -> str:
    if value.tzinfo is None:
        raise _refuse(f"{what} must be timezone-aware (UTC), got {value}.")
    return value.astimezone(timezone.utc).isoformat()



def _api_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(body, dict):
        said = body.get("error") or body.get("message") or body.get("errors") or ""
        return "; ".join(map(str, said)) if isinstance(said, list) else str(said)
    return ""


Pace = Callable[[], None] | None
"""Called before each HTTP request of a call; may wait there (the caller's rate limit)."""


class Statuspage(HttpBackend):
    """Opens, updates and resolves incidents and maintenances on one Statuspage page."""

    kind = "statuspage"
    Options = StatuspageOptions
    capabilities = frozenset({STATUS})
    options: StatuspageOptions

    # -- incidents ----------------------------------------------------------------------

    def create_incident(self, key: str, name: str, status: str, body: str,
                        components: Mapping[str, str], impact: str | None = None,
                        pace: Pace = None) -> PublishedIncident:
        """Open an incident, or return the one already opened with ``key``."""
        _check(status, INCIDENT_STATUSES, "incident status")
        components = _check_components(components)
        if impact is not None:
            _check(impact, IMPACTS, "impact")
        incident = self._new(key, name, body, status=status, component_ids=list(components),
                             components=components)
        if impact is not None:
            incident["impact_override"] = impact
        return self._create_once(key, incident, pace)

    def create_maintenance(self, key: str, name: str, body: str, scheduled_for: datetime,
                           scheduled_until: datetime, components: Iterable[str],
                           remind_prior: bool = True, pace: Pace = None) -> PublishedIncident:
        """Schedule a maintenance (or return the one scheduled with ``key``). Statuspage
        moves it to in progress and completed at the given times and sets ``components``
        (ids) under_maintenance meanwhile, operational afterwards."""
        start, end = _iso(scheduled_for, "scheduled_for"), _iso(scheduled_until, "scheduled_until")
        if scheduled_until <= scheduled_for:
            raise _refuse(f"the maintenance window ends ({end}) before it starts ({start}).")
        incident = self._new(key, name, body, status="scheduled",
                             component_ids=[c for c in components if c])
        incident.update(scheduled_for=start, scheduled_until=end,
                        scheduled_remind_prior=remind_prior, scheduled_auto_in_progress=True,
                        scheduled_auto_completed=True,
                        auto_transition_to_maintenance_state=True,
                        auto_transition_to_operational_state=True)
        return self._create_once(key, incident, pace)

    def find_incident(self, key: str, pace: Pace = None) -> PublishedIncident | None:
        """The incident or maintenance created with ``key``, or None."""
        base = f"/pages/{self.options.page_id}/incidents"
        for path, params in ((base + "/unresolved", {"per_page": "100"}),
                             (base, {"limit": str(self.options.recent_limit)})):
            listed = self._request("GET", path, pace, params=params)
            for item in listed if isinstance(listed, list) else []:
                if isinstance(item, dict) and self._key_of(item) == key:
                    return self._parse(item)
        return None

    def get_incident(self, incident_id: str, pace: Pace = None) -> PublishedIncident:
        """The incident or maintenance as the page holds it now."""
        return self._parse(self._request(
            "GET", f"/pages/{self.options.page_id}/incidents/{incident_id}", pace))

    def update_incident(self, incident_id: str, status: str, body: str,
                        components: Mapping[str, str], pace: Pace = None,
                        marker: str | None = None) -> PublishedIncident:
        """Post an update: new status, message and component statuses. Non-empty
        ``components`` is the whole affected set (it replaces ``component_ids``). With a
        ``marker``, an update already applied is not applied again."""
        _check(status, INCIDENT_STATUSES + MAINTENANCE_STATUSES, "incident status")
        components = _check_components(components)
        incident: dict[str, Any] = {"status": status, "body": body}
        if components:
            incident.update(components=components, component_ids=list(components))
        return self._patch_once(incident_id, incident, marker, pace)

    def resolve_incident(self, incident_id: str, body: str, components: Iterable[str],
                         pace: Pace = None, marker: str | None = None) -> PublishedIncident:
        """Resolve the incident and set ``components`` (ids) operational."""
        return self.update_incident(incident_id, "resolved", body,
                                    {c: "operational" for c in components}, pace, marker)

    def reschedule_maintenance(self, incident_id: str, scheduled_for: datetime,
                               scheduled_until: datetime, body: str, pace: Pace = None,
                               marker: str | None = None,
                               current: PublishedIncident | None = None) -> PublishedIncident:
        """Move a scheduled maintenance to a new window, posting ``body`` as an update.
        ``current``: the maintenance as just read (saves reading it again)."""
        start, end = _iso(scheduled_for, "scheduled_for"), _iso(scheduled_until, "scheduled_until")
        if scheduled_until <= scheduled_for:
            raise _refuse(f"the maintenance window ends ({end}) before it starts ({start}).")
        return self._patch_once(incident_id, {"status": "scheduled", "body": body,
                                              "scheduled_for": start, "scheduled_until": end},
                                marker, pace, current)

    def cancel_maintenance(self, incident_id: str, body: str, pace: Pace = None,
                           marker: str | None = None,
                           current: PublishedIncident | None = None) -> PublishedIncident:
        """Cancel a scheduled maintenance: completed with ``body`` (saying it was cancelled),
        its automatic transitions off, its components left as they are."""
        return self._patch_once(incident_id, {
            "status": "completed", "body": body, "scheduled_auto_in_progress": False,
            "scheduled_auto_completed": False, "auto_transition_to_maintenance_state": False,
            "auto_transition_to_operational_state": False, "scheduled_remind_prior": False,
        }, marker, pace, current)

    def _patch_once(self, incident_id: str, incident: dict[str, Any], marker: str | None,
                    pace: Pace, current: PublishedIncident | None = None) -> PublishedIncident:
        path = f"/pages/{self.options.page_id}/incidents/{incident_id}"
        if marker is not None:
            if current is None or current.id != incident_id:
                current = self.get_incident(incident_id, pace)
            if current.update == marker:
                return current  # applied before (its answer was lost): not again
            drbot = current.metadata.get("drbot")
            incident = {**incident, "metadata": {
                **current.metadata, "drbot": {**(drbot if isinstance(drbot, dict) else {}),
                                              "update": marker}}}
        return self._parse(self._request("PATCH", path, pace, json={"incident": incident}))

    def _new(self, key: str, name: str, body: str, **fields: Any) -> dict[str, Any]:
        if not key:
            raise _refuse("an incident needs a non-empty drbot key.")
        if not name.strip() or len(name) > 255:
            raise _refuse(f"the incident name must be 1 to 255 characters (it is {len(name)}).")
        return {"name": name, "body": body, **fields,
                "metadata": {"drbot": {"key": key}}, "deliver_notifications": True}

    def _create_once(self, key: str, incident: dict[str, Any], pace: Pace) -> PublishedIncident:
        existing = self.find_incident(key, pace)
        if existing is not None:
            return existing
        return self._parse(self._request("POST", f"/pages/{self.options.page_id}/incidents", pace,
                                         json={"incident": incident}))

    @staticmethod
    def _drbot(item: dict, name: str) -> str | None:
        drbot = (item.get("metadata") or {}).get("drbot")
        return drbot.get(name) if isinstance(drbot, dict) else None

    @classmethod
    def _key_of(cls, item: dict) -> str | None:
        return cls._drbot(item, "key")

    def _parse(self, item: Any) -> PublishedIncident:
        try:
            return PublishedIncident(
                id=str(item["id"]), status=str(item["status"]),
                shortlink=item.get("shortlink"), name=str(item.get("name", "")),
                impact=item.get("impact"), key=self._key_of(item),
                components={str(c["id"]): str(c["status"])
                            for c in item.get("components") or []},
                scheduled_for=item.get("scheduled_for"),
                scheduled_until=item.get("scheduled_until"),
                update=self._drbot(item, "update"),
                metadata=dict(item.get("metadata") or {}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _refuse(f"{self.name}: the answer from {self.options.base_url} is not a "
                          f"Statuspage incident ({type(exc).__name__}: {exc}); check "
                          f"base_url.") from exc

    # -- HTTP ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, pace: Pace = None, **kwargs: Any) -> Any:
        o = self.options
        where = f"Statuspage at {o.base_url}"
        headers = {"Authorization": f"OAuth {o.api_key.get_secret_value()}",
                   "Accept": "application/json"}
        client = self.client  # created first, so the pacing is not eaten by its setup
        if pace is not None:
            pace()
        try:
            response = client.request(method, o.base_url + path, headers=headers,
                                      timeout=o.timeout, **kwargs)
        except httpx.TimeoutException as exc:
            outcome = " (the change may have been made)" if method != "GET" else ""
            raise IntegrationError(f"{self.name}: {where} did not answer {method} {path} "
                                   f"within {o.timeout:g} s{outcome}.",
                                   ErrorKind.TRANSIENT) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise _refuse(f"{self.name}: the base_url {o.base_url} is not usable ({exc}).") from exc
        except httpx.TransportError as exc:
            raise IntegrationError(f"{self.name}: cannot connect to {where} ({exc}).",
                                   ErrorKind.TRANSIENT) from exc
        status = response.status_code
        if status in (420, 429):
            later = retry_after(response.headers.get("Retry-After"))
            wait = f"; retry after {later:g} s" if later is not None else ""
            raise RateLimited(f"{self.name}: {where} is rate limiting requests (HTTP "
                              f"{status}){wait}.", later)
        if status >= 400:
            said = _api_message(response)
            said = f"HTTP {status}: {said}" if said else f"HTTP {status}"
            if status in (401, 403):
                raise IntegrationError(
                    f"{self.name}: {where} refused the API key for page {o.page_id} "
                    f"({said}); check api_key and the key's access to the page.",
                    ErrorKind.NOT_PERMITTED)
            if status >= 500:
                raise IntegrationError(f"{self.name}: {where} failed ({said}); try again "
                                       f"shortly.", ErrorKind.TRANSIENT)
            if status == 404:
                raise _refuse(f"{self.name}: {where} has no {path} ({said}); check page_id "
                              f"and the incident id.")
            raise _refuse(f"{self.name}: {where} rejected {method} {path} ({said}).")
        try:
            return response.json()
        except ValueError as exc:
            raise _refuse(f"{self.name}: {o.base_url} did not answer with JSON (HTTP "
                          f"{status}); check base_url.") from exc

    # -- check-config -------------------------------------------------------------------

    def check(self) -> CheckResult:
        """Reads the page (proves base_url, page_id and api_key) and, when ``components``
        are configured, that each id exists on the page. Never raises."""
        o = self.options
        try:
            page = self._request("GET", f"/pages/{o.page_id}")
            known = set()
            if o.components:
                listed = self._request("GET", f"/pages/{o.page_id}/components")
                known = {c.get("id") for c in listed if isinstance(c, dict)}
        except IntegrationError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:  # check() never raises
            return CheckResult(False, f"{self.name}: unexpected error reading {o.base_url}: "
                                      f"{type(exc).__name__}: {exc}")
        missing = sorted(f"{service} -> {cid}" for service, cid in o.components.items()
                         if cid not in known)
        if missing:
            return CheckResult(False, f"{self.name}: page {o.page_id} has no component(s) "
                                      f"{', '.join(missing)}; fix components.")
        title = page.get("name") if isinstance(page, dict) else None
        return CheckResult(True, f"{self.name}: Statuspage page '{title or o.page_id}' "
                                 f"({o.page_id}) answers; the API key is accepted.")
