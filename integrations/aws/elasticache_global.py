"""Database promoter and lag source over an ElastiCache (Redis OSS / Valkey) Global Datastore
(kind ``elasticache_global``, capabilities DATABASE and LAG).

``members`` maps each drbot region to its member replication group id. The writer is the
member ``DescribeGlobalReplicationGroups`` (``ShowMemberInfo``) reports with ``Role:
PRIMARY``; the AWS region of each member is read from ``ReplicationGroupRegion``, so the
drbot region names need not be AWS region names.

What a move is, honestly: ElastiCache has ONE operation, ``FailoverGlobalReplicationGroup``,
which promotes a secondary to primary and turns the old primary into a secondary. It is a
planned promotion: it needs the datastore ``available`` (so a working primary region), and
AWS does not promise that writes acknowledged by the old primary in the last moments
(up to the replication lag) reach the new one. So:

- ``promote`` (``database.promote``): runs it; drbot's pre-flight shows the data loss as
  "possible" and checks the replication lag first.
- ``failover`` (``database.failover``, needs ``allow_data_loss``): the same call, for a
  runbook that declares the loss accepted.
- ``switchover``: refused, since ElastiCache cannot promise a move without data loss.

When the primary region is down the call is usually refused (the datastore is not
``available``); the way out then is to disassociate the secondary in the console, which
drbot does not do. After the call ``promote`` polls until the target is PRIMARY, the
datastore ``available`` and the target member ``associated``; ending with another primary
after the operation was seen in progress is PERMANENT; not settled after ``wait_timeout``
is TRANSIENT.

Lag: CloudWatch ``AWS/ElastiCache GlobalDatastoreReplicationLag`` (seconds), read in each
secondary's AWS region with the ``cloudwatch`` backend's reader; the worst secondary is
reported. ElastiCache publishes it per node of the secondary: ``lag_dimensions`` names the
node per region (default ``CacheClusterId: <replication group>-001``).
"""
from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import ClientError
from pydantic import Field, model_validator

from integrations.aws.backoff import with_backoff
from integrations.aws.cloudwatch import CloudWatchLag, CloudWatchOptions
from integrations.aws.session import AwsBackend, error_code, make_client, translate_error
from integrations.base import (
    DATABASE, LAG, ActionResult, BackendOptions, CheckResult, DbRole, ErrorKind, IntegrationError,
    LagReading, RegionDb, Replication, Target, utcnow,
)

LAG_METRIC = ("AWS/ElastiCache", "GlobalDatastoreReplicationLag")
SETTLED = "available"


class ElastiCacheGlobalOptions(BackendOptions):
    global_replication_group_id: str = Field(min_length=1)
    region: str
    """The region whose ElastiCache API is called; any member's region works."""
    endpoint_url: str | None = None
    members: dict[str, str] = Field(min_length=2)
    """drbot region -> that region's member replication group id."""
    wait_timeout: float = Field(900, gt=0)
    poll_interval: float = Field(15, gt=0)
    lag_dimensions: dict[str, dict[str, str]] = {}
    """drbot region -> the CloudWatch dimensions of its lag metric (when it is a secondary)."""
    lag_period: int = Field(60, gt=0)
    lag_window: int = Field(900, gt=0)

    @model_validator(mode="after")
    def _coherent(self) -> "ElastiCacheGlobalOptions":
        if len(set(self.members.values())) != len(self.members) or not all(self.members.values()):
            raise ValueError("each region needs its own, non-empty replication group id")
        unknown = [r for r in self.lag_dimensions if r not in self.members]
        if unknown:
            raise ValueError(f"lag_dimensions names regions not in members: {', '.join(unknown)}")
        return self


class ElastiCacheGlobal(AwsBackend):
    """Moves the primary of an ElastiCache Global Datastore and reads its replication lag.
    ``client``: the injected boto3 ElastiCache client; ``cloudwatch``: an injected boto3
    CloudWatch client for the lag (used for every region); otherwise created on first use."""

    kind = "elasticache_global"
    title = "ElastiCache Global Datastore"
    Options = ElastiCacheGlobalOptions
    capabilities = frozenset({DATABASE, LAG})
    boto3_service = "elasticache"
    options: ElastiCacheGlobalOptions

    def __init__(self, name: str, options: BackendOptions, client: Any = None, *, cloudwatch: Any = None):
        super().__init__(name, options, client)
        self._cloudwatch = cloudwatch
        self._lag_readers: dict[tuple[str, str], CloudWatchLag] = {}
        self._lag_lock = threading.Lock()

    def describe(self) -> str:
        return f"ElastiCache global datastore {self.options.global_replication_group_id}"

    # -- database ---------------------------------------------------------------------

    def writer_region(self, target: Target) -> str:
        group = self._describe()
        primary = _primary(group)
        if primary is None:
            raise IntegrationError(f"{self.name}: {self.describe()} has no PRIMARY member (status "
                                   f"{group.get('Status', '?')}).", _busy_kind(group))
        return self._region_of(primary["ReplicationGroupId"])

    def replication(self, target: Target) -> Replication:
        """PRIMARY is the WRITER; an ``associated`` SECONDARY replicates from it; a
        configured group that is not a member, or a member not associated, is OUTSIDE.
        While the datastore is not ``available`` the roles may be moving: TRANSIENT."""
        group = self._describe()
        primary = _primary(group)
        if group.get("Status") != SETTLED or primary is None:
            raise IntegrationError(f"{self.name}: {self.describe()} is {group.get('Status', '?')}"
                                   + ("" if primary else " with no PRIMARY member") + ".", _busy_kind(group))
        source = self._region_of(primary["ReplicationGroupId"], strict=False)
        source = source if source in self.options.members else None
        members = {m.get("ReplicationGroupId"): m for m in group.get("Members", [])}
        out = []
        for region, rg in self.options.members.items():
            m = members.get(rg)
            where = f"{rg} ({m.get('ReplicationGroupRegion', '?')})" if m else rg
            if m is None:
                out.append(RegionDb(region, DbRole.OUTSIDE, detail=f"{rg} is not a member of {self.describe()}"))
            elif m.get("Role") == "PRIMARY":
                out.append(RegionDb(region, DbRole.WRITER, detail=f"{where} is the primary of {self.describe()}"))
            elif m.get("Status") != "associated":
                out.append(RegionDb(region, DbRole.OUTSIDE, detail=f"{where} is {m.get('Status', '?')}, "
                                                                   f"not associated"))
            else:
                out.append(RegionDb(region, DbRole.REPLICA, source,
                                    detail=f"{where} is a secondary of {self.describe()}"))
        return Replication(tuple(out), utcnow())

    def promote(self, target: Target, to_region: str, mode: str = "promote", allow_data_loss: bool = False,
                dry_run: bool = False) -> ActionResult:
        """Make ``to_region``'s member the primary (see the module docstring)."""
        self._check_mode(mode, allow_data_loss, to_region)
        rg = self._rg(to_region)
        group = self._describe()
        primary = _primary(group)
        was = self._region_of(primary["ReplicationGroupId"], strict=False) if primary else "no primary"
        member = next((m for m in group.get("Members", []) if m.get("ReplicationGroupId") == rg), None)
        details: dict[str, Any] = {"global_replication_group_id": self.options.global_replication_group_id,
                                   "mode": mode, "to_region": to_region, "replication_group": rg,
                                   "from_region": was, "status": group.get("Status"),
                                   "members": self._members(group)}
        if member is None:
            raise IntegrationError(f"{self.name}: {rg} ({to_region}) is not a member of {self.describe()}; "
                                   f"fix members in the source's options.", ErrorKind.PERMANENT)
        if member.get("Role") == "PRIMARY":
            return ActionResult(f"already the primary: {to_region} writes for {self.describe()}",
                                dry_run=dry_run, changed=False, details=details)
        if group.get("Status") != SETTLED:
            raise IntegrationError(f"{self.name}: {self.describe()} is {group.get('Status', '?')}; a promotion "
                                   f"needs it available. Wait for it to finish.", ErrorKind.TRANSIENT)
        aws_region = str(member.get("ReplicationGroupRegion", ""))
        if dry_run:
            return ActionResult(f"would promote {rg} ({aws_region}) to primary of {self.describe()}, from "
                                f"{was} to {to_region}; writes not yet replicated may be lost",
                                dry_run=True, changed=False, details=details)
        params = {"GlobalReplicationGroupId": self.options.global_replication_group_id,
                  "PrimaryRegion": aws_region, "PrimaryReplicationGroupId": rg}
        self._call(f"promoting {to_region} in", self.client.failover_global_replication_group, **params)
        final = self._wait(rg, group)
        details.update(members=self._members(final), status=final.get("Status"))
        return ActionResult(f"promoted {rg} ({aws_region}): {to_region} is now the primary of "
                            f"{self.describe()} (was {was})", dry_run=False, changed=True, details=details)

    def _check_mode(self, mode: str, allow_data_loss: bool, to_region: str) -> None:
        if mode == "switchover":
            raise IntegrationError(
                f"{self.name}: ElastiCache cannot switch over without possible data loss (its only move, "
                f"FailoverGlobalReplicationGroup, does not wait for replication to drain); use "
                f"database.promote, whose pre-flight shows the data loss as possible and checks the lag.",
                ErrorKind.PERMANENT)
        if mode not in ("promote", "failover"):
            raise IntegrationError(f"{self.name}: unknown mode {mode!r}; use 'promote' (or 'failover' with "
                                   f"allow_data_loss).", ErrorKind.PERMANENT)
        if mode == "failover" and not allow_data_loss:
            raise IntegrationError(
                f"{self.name}: a failover may lose writes not yet replicated to {to_region}; it is refused "
                f"unless data loss is explicitly allowed.", ErrorKind.PERMANENT)

    # -- lag --------------------------------------------------------------------------

    def read_lag(self, target: Target, history: bool = False) -> LagReading:
        """The worst ``GlobalDatastoreReplicationLag`` among the configured secondaries."""
        group = self._describe()
        members = {m.get("ReplicationGroupId"): m for m in group.get("Members", [])}
        readings = []
        for region, rg in self.options.members.items():
            m = members.get(rg)
            if m is None or m.get("Role") != "SECONDARY":
                continue
            reading = self._lag_reader(region, str(m.get("ReplicationGroupRegion", ""))).read_lag(target, history)
            readings.append((region, reading))
        if not readings:
            raise IntegrationError(f"{self.name}: {self.describe()} has no configured SECONDARY member, so "
                                   f"nothing replicates.", ErrorKind.PERMANENT)
        region, worst = max(readings, key=lambda r: -1.0 if r[1].seconds is None else r[1].seconds)
        return LagReading(worst.seconds, worst.observed_at, worst.replicating, worst.history,
                          detail=f"{region}: {worst.detail}")

    def _lag_reader(self, region: str, aws_region: str) -> CloudWatchLag:
        o = self.options
        with self._lag_lock:
            key = (region, aws_region)
            if key not in self._lag_readers:
                dims = o.lag_dimensions.get(region) or {"CacheClusterId": f"{o.members[region]}-001"}
                options = CloudWatchOptions(region=aws_region, namespace=LAG_METRIC[0], metric=LAG_METRIC[1],
                                            dimensions=dims, statistic="Maximum", unit="s",
                                            period=o.lag_period, window=o.lag_window, timeout=o.timeout)
                client = self._cloudwatch or make_client("cloudwatch", region=aws_region, timeout=o.timeout)
                self._lag_readers[key] = CloudWatchLag(self.name, options, client=client)
            return self._lag_readers[key]

    # -- reading and waiting ----------------------------------------------------------

    def _describe(self) -> dict[str, Any]:
        found = self._call("reading", self.client.describe_global_replication_groups,
                           GlobalReplicationGroupId=self.options.global_replication_group_id,
                           ShowMemberInfo=True).get("GlobalReplicationGroups", [])
        if not found:
            raise IntegrationError(f"{self.name}: {self.describe()} does not exist.", ErrorKind.PERMANENT)
        return found[0]

    def _wait(self, rg: str, started: dict[str, Any]) -> dict[str, Any]:
        o = self.options
        seen_busy = False
        for _ in self._polls(o.wait_timeout, o.poll_interval, wait_first=True):
            group = self._describe()
            primary = _primary(group)
            member = next((m for m in group.get("Members", []) if m.get("ReplicationGroupId") == rg), {})
            if group.get("Status") != SETTLED or member.get("Status") != "associated":
                seen_busy = True
                continue
            if primary is not None and primary.get("ReplicationGroupId") == rg:
                return group
            if seen_busy:
                other = self._region_of(primary["ReplicationGroupId"], strict=False) if primary else "no"
                raise IntegrationError(f"{self.name}: the promotion of {rg} in {self.describe()} ended with "
                                       f"{other} primary instead.", ErrorKind.PERMANENT)
        raise IntegrationError(f"{self.name}: the promotion of {rg} in {self.describe()} was requested but "
                               f"has not settled after {o.wait_timeout:g}s; watch it in the ElastiCache "
                               f"console.", ErrorKind.TRANSIENT)

    def _call(self, doing: str, method: Any, **kwargs: Any) -> Any:
        try:
            return with_backoff(lambda: method(**kwargs), self._sleep)
        except Exception as exc:
            raise self._error(exc, doing) from exc

    def _members(self, group: dict[str, Any]) -> dict[str, Any]:
        """region (or replication group id when unconfigured) -> {role, status}."""
        return {self._region_of(m.get("ReplicationGroupId", ""), strict=False): {
                    "role": m.get("Role", ""), "status": m.get("Status", "")}
                for m in group.get("Members", [])}

    def _rg(self, region: str) -> str:
        try:
            return self.options.members[region]
        except KeyError:
            raise IntegrationError(f"{self.name}: {region} is not one of the regions configured for "
                                   f"{self.describe()} ({', '.join(self.options.members)}).",
                                   ErrorKind.PERMANENT) from None

    def _region_of(self, rg: str, strict: bool = True) -> str:
        for region, member in self.options.members.items():
            if member == rg:
                return region
        if not strict:
            return rg
        raise IntegrationError(f"{self.name}: the primary of {self.describe()} is {rg}, which is not in "
                               f"members; add it to the source's options.", ErrorKind.PERMANENT)

    def _error(self, exc: Exception, doing: str) -> IntegrationError:
        code = error_code(exc) if isinstance(exc, ClientError) else None  # a timeout's .response is None
        if code == "GlobalReplicationGroupNotFoundFault":
            return IntegrationError(f"{self.name}: {self.describe()} does not exist (asked in "
                                    f"{self.options.region}). Check global_replication_group_id.",
                                    ErrorKind.PERMANENT)
        if code == "InvalidGlobalReplicationGroupStateFault":
            return IntegrationError(f"{self.name}: {doing} {self.describe()}: ElastiCache refused, the datastore "
                                    f"is not in a state that allows it (another operation, or a region down); "
                                    f"try again when it is available.", ErrorKind.TRANSIENT)
        return translate_error(exc, f"{self.name}: {doing} {self.describe()}")

    # -- check-config -----------------------------------------------------------------

    def check(self) -> CheckResult:
        """The datastore exists, every configured group is a member and the primary is a
        configured region. Never raises."""
        try:
            group = self._describe()
        except IntegrationError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:  # pragma: no cover - defensive: check never raises
            return CheckResult(False, f"{self.name}: unexpected error {exc!r}")
        ids = [m.get("ReplicationGroupId") for m in group.get("Members", [])]
        missing = [f"{r} ({rg})" for r, rg in self.options.members.items() if rg not in ids]
        primary = _primary(group)
        writer = self._region_of(primary["ReplicationGroupId"], strict=False) if primary else None
        problems = [f"not members: {', '.join(missing)}"] if missing else []
        if writer not in self.options.members:
            problems.append(f"primary {writer or 'none'} is not a configured region")
        if problems:
            return CheckResult(False, f"{self.name}: {self.describe()}: {'; '.join(problems)}.")
        return CheckResult(True, f"{self.name}: {self.describe()} ({group.get('Status', '?')}) has members "
                                 f"{', '.join(self.options.members)}; {writer} is the primary.")


def _primary(group: dict[str, Any]) -> dict[str, Any] | None:
    return next((m for m in group.get("Members", []) if m.get("Role") == "PRIMARY"), None)


def _busy_kind(group: dict[str, Any]) -> ErrorKind:
    return ErrorKind.PERMANENT if group.get("Status") == SETTLED else ErrorKind.TRANSIENT
