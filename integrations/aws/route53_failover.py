"""Traffic switch over Route 53 records (kind ``route53_failover``, capability TRAFFIC).

One DNS name and type (``record_name``/``record_type``) has one record per drbot region,
told apart by ``SetIdentifier`` (``records`` maps region -> SetIdentifier).

- ``policy: failover``: exactly two records, one ``Failover: PRIMARY`` and one
  ``SECONDARY``. The active region is the PRIMARY one. Shifting makes ``to_region``
  PRIMARY and the other SECONDARY.
- ``policy: weighted``: two or more records with ``Weight``. The active region is the one
  with the single highest weight; a tie (or all weights 0, which Route 53 treats as equal
  shares) means no single active region and raises PERMANENT. Shifting sets ``to_region``
  to 100 and every other record to 0. A staged ramp (capability WEIGHTS) sets each
  record's Weight to its percentage (0-100) in one batch; a region's share of the traffic
  is its weight over the sum (all 0: equal shares, as Route 53 answers them).

A shift UPSERTs, in one ChangeResourceRecordSets batch, only the records whose role
changes; every other attribute of a record (TTL and ResourceRecords or AliasTarget,
HealthCheckId, SetIdentifier, ...) is copied unchanged from what Route 53 returned.
Nothing to change returns ``changed=False`` without calling Route 53's change API.
With ``wait_insync`` the shift returns only when GetChange reports INSYNC (all Route 53
name servers answer with the new records); still PENDING after ``insync_timeout``
raises TRANSIENT naming the change id (the change was submitted and will complete).
``PriorRequestNotComplete`` and throttling are retried with exponential backoff.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Literal

from botocore.exceptions import ClientError
from pydantic import Field, field_validator, model_validator

from integrations.aws.session import AwsBackend, error_code, translate_error
from integrations.base import (
    TRAFFIC, WEIGHTS, ActionResult, BackendOptions, CheckResult, ErrorKind,
    IntegrationError, Target,
)

MAX_PAGES = 20
RETRY_CODES = frozenset({"PriorRequestNotComplete", "Throttling", "ThrottlingException"})
RETRY_ATTEMPTS = 5
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 8.0


def normalise_name(name: str) -> str:
    """Route 53's spelling: lower case, trailing dot, ``*`` as Route 53 escapes it."""
    name = name.strip().lower().replace("\\052", "*")
    return name if name.endswith(".") else name + "."


class Route53FailoverOptions(BackendOptions):
    region: str = "us-east-1"
    """Route 53 is global; its API lives in us-east-1."""
    endpoint_url: str | None = None
    hosted_zone_id: str = Field(min_length=1)
    record_name: str = Field(min_length=1)
    record_type: Literal["A", "AAAA", "CNAME"] = "A"
    policy: Literal["failover", "weighted"] = "failover"
    records: dict[str, str]
    """drbot region -> the record's SetIdentifier."""
    wait_insync: bool = True
    insync_timeout: float = Field(300, gt=0)
    poll_interval: float = Field(5, gt=0)

    @field_validator("record_name")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return normalise_name(value)

    @model_validator(mode="after")
    def _records_fit_policy(self) -> "Route53FailoverOptions":
        ids = list(self.records.values())
        if len(ids) < 2:
            raise ValueError("records must map at least two regions to SetIdentifiers")
        if any(not i for i in ids) or len(set(ids)) != len(ids):
            raise ValueError("each region needs its own, non-empty SetIdentifier")
        if self.policy == "failover" and len(ids) != 2:
            raise ValueError("a failover policy has exactly two records (PRIMARY and "
                             "SECONDARY); use policy: weighted for more regions")
        return self


class Route53Failover(AwsBackend):
    """Moves traffic between regions by rewriting Route 53 failover or weighted records.
    ``client``: the injected boto3 Route 53 client, or one created on first use."""

    kind = "route53_failover"
    title = "Route 53"
    Options = Route53FailoverOptions
    capabilities = frozenset({TRAFFIC, WEIGHTS})
    boto3_service = "route53"
    options: Route53FailoverOptions

    def describe(self) -> str:
        o = self.options
        return f"{o.record_name} {o.record_type}"

    # -- capability -------------------------------------------------------------------

    def active_region(self, target: Target) -> str:
        """The PRIMARY region (failover) or the single highest-weighted one (weighted)."""
        return self._active(self._roles(self._current()))

    def _active(self, roles: dict[str, Any]) -> str:
        if self.options.policy == "failover":
            primaries = [r for r, role in roles.items() if role == "PRIMARY"]
            if len(primaries) == 1:
                return primaries[0]
            raise IntegrationError(
                f"{self.name}: {self.describe()} has {len(primaries)} PRIMARY records "
                f"among {_fmt(roles)}; expected exactly one.", ErrorKind.PERMANENT)
        top = max(roles.values())
        leaders = [r for r, weight in roles.items() if weight == top]
        if top == 0 or len(leaders) > 1:
            raise IntegrationError(
                f"{self.name}: {self.describe()} weights are {_fmt(roles)}: traffic is "
                f"split, so no single region is active. Shift to one region to fix it.",
                ErrorKind.PERMANENT)
        return leaders[0]

    def shift(self, target: Target, to_region: str, dry_run: bool = False) -> ActionResult:
        """Make ``to_region`` take the traffic (see the module docstring). Details hold
        ``before``/``after`` (region -> role or weight), the ``change_batch`` and, once
        submitted, ``change_id`` and ``status``."""
        o = self.options
        if to_region not in o.records:
            raise IntegrationError(
                f"{self.name}: {to_region} is not one of the regions configured for "
                f"{self.describe()} ({', '.join(o.records)}).", ErrorKind.PERMANENT)
        current = self._current()
        changes = self._plan(current, to_region)
        before = self._roles(current)
        after = self._roles({r: changes[r]["ResourceRecordSet"] if r in changes else rr
                             for r, rr in current.items()})
        batch = {"Comment": f"drbot {self.name}: shift {self.describe()} to {to_region}"[:256],
                 "Changes": list(changes.values())}
        details: dict[str, Any] = {"before": before, "after": after, "change_batch": batch}
        if not changes:
            return ActionResult(f"already: {self._state_text(to_region, after)}",
                                dry_run=dry_run, changed=False, details=details)
        was = self._was_text(before)
        if dry_run:
            return ActionResult(f"would {self._verb_text(to_region)} (was {was})",
                                dry_run=True, changed=False, details=details)
        response = self._call("changing", self.client.change_resource_record_sets,
                              HostedZoneId=o.hosted_zone_id, ChangeBatch=batch)
        info = response.get("ChangeInfo", {})
        change_id, status = str(info.get("Id", "?")), str(info.get("Status", "?"))
        if o.wait_insync and status != "INSYNC":
            status = self._wait_insync(change_id, status)
        details.update(change_id=change_id, status=status)
        return ActionResult(f"{self._verb_text(to_region, done=True)} (was {was}); "
                            f"change {change_id} {status}",
                            dry_run=False, changed=True, details=details)

    # -- weights (a staged ramp) -------------------------------------------------------

    def weights(self, target: Target) -> dict[str, float]:
        """region -> its share of the traffic in percent (weight over the sum of weights)."""
        return _shares(self._roles(self._weighted()))

    def set_weights(self, target: Target, weights: dict[str, float], dry_run: bool = False) -> ActionResult:
        """Set each region's record to ``weights[region]`` (a percentage, rounded to a whole
        Route 53 weight) in one ChangeResourceRecordSets batch, waiting for INSYNC."""
        o = self.options
        unknown = sorted(set(weights) - set(o.records))
        if unknown or round(sum(weights.values())) != 100:
            raise IntegrationError(f"{self.name}: cannot set weights {_fmt(weights)}: they must name regions of "
                                   f"{self.describe()} ({', '.join(o.records)}) and sum to 100.", ErrorKind.PERMANENT)
        current = self._weighted()
        before = _shares(self._roles(current))
        changes = []
        for region, rr in current.items():
            want = copy.deepcopy(rr)
            want["Weight"] = int(round(weights.get(region, 0)))
            if want != rr:
                changes.append({"Action": "UPSERT", "ResourceRecordSet": want})
        after = _shares({r: int(round(weights.get(r, 0))) for r in current})
        batch = {"Comment": f"drbot {self.name}: weights of {self.describe()} {_fmt(after)}"[:256],
                 "Changes": changes}
        details: dict[str, Any] = {"before": before, "after": after, "change_batch": batch}
        text = f"weights of {self.describe()} {_pct(after)}"
        if not changes:
            return ActionResult(f"already: {text}", dry_run=dry_run, changed=False, details=details)
        if dry_run:
            return ActionResult(f"would set {text} (now {_pct(before)})", dry_run=True, changed=False,
                                details=details)
        response = self._call("changing", self.client.change_resource_record_sets,
                              HostedZoneId=o.hosted_zone_id, ChangeBatch=batch)
        info = response.get("ChangeInfo", {})
        change_id, status = str(info.get("Id", "?")), str(info.get("Status", "?"))
        if o.wait_insync and status != "INSYNC":
            status = self._wait_insync(change_id, status)
        details.update(change_id=change_id, status=status)
        return ActionResult(f"set {text} (was {_pct(before)}); change {change_id} {status}", dry_run=False,
                            changed=True, details=details)

    def _weighted(self) -> dict[str, dict[str, Any]]:
        if self.options.policy != "weighted":
            raise IntegrationError(f"{self.name}: {self.describe()} uses failover records, which move traffic "
                                   f"all at once; a staged ramp needs weighted records (policy: weighted).",
                                   ErrorKind.PERMANENT)
        return self._current()

    # -- reading and planning ---------------------------------------------------------

    def _current(self) -> dict[str, dict[str, Any]]:
        """region -> the record set Route 53 holds for it; a missing one is PERMANENT."""
        o = self.options
        kwargs: dict[str, Any] = {"HostedZoneId": o.hosted_zone_id,
                                  "StartRecordName": o.record_name,
                                  "StartRecordType": o.record_type}
        by_id: dict[str, dict[str, Any]] = {}
        for _ in range(MAX_PAGES):
            response = self._call("reading", self.client.list_resource_record_sets, **kwargs)
            passed = False
            for rr in response.get("ResourceRecordSets", []):
                if normalise_name(rr.get("Name", "")) != o.record_name \
                        or rr.get("Type") != o.record_type:
                    passed = True  # sorted by name and type: ours are behind us
                    break
                if rr.get("SetIdentifier"):
                    by_id[rr["SetIdentifier"]] = rr
            if passed or not response.get("IsTruncated"):
                break
            kwargs.update(StartRecordName=response["NextRecordName"],
                          StartRecordType=response["NextRecordType"])
            kwargs.pop("StartRecordIdentifier", None)
            if response.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = response["NextRecordIdentifier"]
        missing = [f"{region} (SetIdentifier {sid})" for region, sid in o.records.items()
                   if sid not in by_id]
        if missing:
            raise IntegrationError(
                f"{self.name}: hosted zone {o.hosted_zone_id} has no {self.describe()} "
                f"record for {', '.join(missing)}. Create it, or fix record_name, "
                f"record_type or records in the source's options.", ErrorKind.PERMANENT)
        return {region: by_id[sid] for region, sid in o.records.items()}

    def _roles(self, current: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """region -> "PRIMARY"/"SECONDARY" (failover) or the weight (weighted)."""
        field = "Failover" if self.options.policy == "failover" else "Weight"
        roles = {}
        for region, rr in current.items():
            if rr.get(field) is None:
                raise IntegrationError(
                    f"{self.name}: the {self.describe()} record {rr.get('SetIdentifier')} "
                    f"({region}) has no {field}, so it is not a {self.options.policy} "
                    f"record; fix policy in the source's options.", ErrorKind.PERMANENT)
            roles[region] = rr[field]
        return roles

    def _plan(self, current: dict[str, dict[str, Any]], to_region: str) -> dict[str, Any]:
        """region -> UPSERT change, for the records whose role must change."""
        self._roles(current)  # every record must already carry the policy's field
        changes: dict[str, Any] = {}
        for region in sorted(current, key=lambda r: r != to_region):
            rr = current[region]
            want = copy.deepcopy(rr)
            if self.options.policy == "failover":
                want["Failover"] = "PRIMARY" if region == to_region else "SECONDARY"
            else:
                want["Weight"] = 100 if region == to_region else 0
            if want != rr:
                changes[region] = {"Action": "UPSERT", "ResourceRecordSet": want}
        return changes

    def _verb_text(self, to_region: str, done: bool = False) -> str:
        if self.options.policy == "failover":
            return f"{'made' if done else 'make'} {self.describe()} PRIMARY in {to_region}"
        return f"set {self.describe()} weight 100 in {to_region} and 0 elsewhere"

    def _state_text(self, to_region: str, after: dict[str, Any]) -> str:
        if self.options.policy == "failover":
            return f"{self.describe()} is PRIMARY in {to_region}"
        return f"{self.describe()} weights are {_fmt(after)}"

    def _was_text(self, before: dict[str, Any]) -> str:
        if self.options.policy == "failover":
            primaries = [r for r, role in before.items() if role == "PRIMARY"]
            return ", ".join(primaries) or "no PRIMARY"
        return _fmt(before)

    # -- calls ------------------------------------------------------------------------

    def _wait_insync(self, change_id: str, status: str) -> str:
        o = self.options
        if status == "INSYNC":
            return status
        for _ in self._polls(o.insync_timeout, o.poll_interval, wait_first=True):
            response = self._call("waiting for", self.client.get_change, Id=change_id)
            status = str(response.get("ChangeInfo", {}).get("Status", status))
            if status == "INSYNC":
                return status
        raise IntegrationError(
            f"{self.name}: Route 53 change {change_id} for {self.describe()} was "
            f"submitted but is still {status} after {o.insync_timeout:g}s; it usually "
            f"completes within a minute (aws route53 get-change --id {change_id}).",
            ErrorKind.TRANSIENT)

    def _call(self, doing: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        """Call with up to RETRY_ATTEMPTS tries on PriorRequestNotComplete/throttling."""
        delay = BACKOFF_FIRST
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                return method(**kwargs)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in RETRY_CODES and attempt < RETRY_ATTEMPTS:
                    self._sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
                    continue
                raise self._error(exc, doing) from exc
            except Exception as exc:
                raise self._error(exc, doing) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, exc: Exception, doing: str) -> IntegrationError:
        o = self.options
        if error_code(exc) == "NoSuchHostedZone":
            return IntegrationError(
                f"{self.name}: hosted zone {o.hosted_zone_id} does not exist. Check "
                f"hosted_zone_id (aws route53 list-hosted-zones).", ErrorKind.PERMANENT)
        return translate_error(exc, f"{self.name}: {doing} {self.describe()} in hosted "
                                    f"zone {o.hosted_zone_id}")

    # -- check-config -----------------------------------------------------------------

    def check(self) -> CheckResult:
        """Reads the records: each configured region has one carrying the policy's field,
        and which is active (split weights are reported, not an error). Never raises."""
        try:
            roles = self._roles(self._current())
        except IntegrationError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:  # pragma: no cover - defensive: check never raises
            return CheckResult(False, f"{self.name}: unexpected error {exc!r}")
        try:
            active = f"{self._active(roles)} is active"
        except IntegrationError:
            active = "no single region is active"
        return CheckResult(True, f"{self.name}: {self.options.policy} records "
                                 f"{self.describe()} exist ({_fmt(roles)}); {active}.")


def _fmt(roles: dict[str, Any]) -> str:
    return ", ".join(f"{region}={role}" for region, role in roles.items())


def _shares(weights: dict[str, Any]) -> dict[str, float]:
    """region -> percent of the traffic: weight over the sum; all 0 is equal shares."""
    total = sum(weights.values())
    if not total:
        return {region: round(100 / len(weights), 2) for region in weights}
    return {region: round(100 * w / total, 2) for region, w in weights.items()}


def _pct(shares: dict[str, float]) -> str:
    return ", ".join(f"{region}={share:g}%" for region, share in shares.items())
