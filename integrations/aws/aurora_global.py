"""Database promoter over an Aurora global database (kind ``aurora_global``, capability
DATABASE).

``members`` maps each drbot region to its member DB cluster's ARN. The writer is the
member ``DescribeGlobalClusters`` reports with ``IsWriter: true``.

Modes of ``promote``:

- ``switchover``: ``SwitchoverGlobalCluster`` (planned; Aurora first synchronises the
  secondaries, so no committed write is lost; the old primary becomes a secondary).
- ``failover``: ``FailoverGlobalCluster`` with ``AllowDataLoss=True`` (unplanned, for when
  the primary region is impaired: writes not yet replicated to the target are lost). It
  is refused, before any AWS call, unless ``allow_data_loss`` is True.
- ``promote``: refused; detaching a member is not a DR action of this backend.

After the call, ``promote`` polls ``DescribeGlobalClusters`` every ``poll_interval`` until
the operation has settled: ``FailoverState`` is empty (AWS fills it only while a
switchover/failover is pending, switching-over, failing-over or cancelling), the global
cluster's ``Status`` is "available" and the target member ``IsWriter``. If the operation
ends (seen in progress, then cleared) with another writer, it was cancelled: PERMANENT.
Still in progress after ``wait_timeout``: TRANSIENT.

Every call goes to the RDS API in ``region``. For a failover because that region is
impaired, configure ``region`` as (or switch it to) a healthy member's region.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from integrations.aws.session import AwsBackend, error_code, translate_error
from integrations.base import (
    DATABASE, ActionResult, BackendOptions, CheckResult, DbRole, ErrorKind,
    IntegrationError, RegionDb, Replication, Target, utcnow,
)

MODES = ("switchover", "failover")


class AuroraGlobalOptions(BackendOptions):
    global_cluster_id: str = Field(min_length=1)
    region: str
    """The region whose RDS API is called; any member's region works."""
    endpoint_url: str | None = None
    members: dict[str, str] = Field(min_length=2)
    """drbot region -> that region's member DB cluster ARN."""
    wait_timeout: float = Field(1800, gt=0)
    poll_interval: float = Field(15, gt=0)

    @field_validator("members")
    @classmethod
    def _arns(cls, value: dict[str, str]) -> dict[str, str]:
        for region, arn in value.items():
            if not arn.startswith("arn:") or ":cluster:" not in arn:
                raise ValueError(f"{region}: {arn!r} is not a DB cluster ARN "
                                 f"(arn:aws:rds:REGION:ACCOUNT:cluster:NAME)")
        if len(set(value.values())) != len(value):
            raise ValueError("each region needs its own member cluster ARN")
        return value


class AuroraGlobal(AwsBackend):
    """Moves the writer of an Aurora global database between member regions.
    ``client``: the injected boto3 RDS client, or one created on first use."""

    kind = "aurora_global"
    title = "Aurora global database"
    Options = AuroraGlobalOptions
    capabilities = frozenset({DATABASE})
    boto3_service = "rds"
    options: AuroraGlobalOptions

    def describe(self) -> str:
        return f"Aurora global database {self.options.global_cluster_id}"

    # -- capability -------------------------------------------------------------------

    def writer_region(self, target: Target) -> str:
        """The region of the member with ``IsWriter``. No writer while a switchover or
        failover is in progress is TRANSIENT; otherwise PERMANENT, as is a writer that
        is not in ``members``."""
        gc = self._describe()
        writer = _writer(gc)
        if writer is None:
            busy = _busy(gc)
            raise IntegrationError(
                f"{self.name}: {self.describe()} has no writer member"
                + (f" while {busy}" if busy else "") + ".",
                ErrorKind.TRANSIENT if busy else ErrorKind.PERMANENT)
        return self._region_of(writer)

    def replication(self, target: Target) -> Replication:
        """The writer member is the WRITER; every other member replicates from it
        (its ``SynchronizationStatus`` in the detail); a configured cluster that is no
        longer a member (removed from the global database), or a member waiting to
        resynchronise (``pending-resync``), is OUTSIDE. While a
        switchover or failover is in progress the roles are moving: TRANSIENT."""
        gc = self._describe()
        busy = _busy(gc)
        writer = _writer(gc)
        if busy or writer is None:
            raise IntegrationError(
                f"{self.name}: {self.describe()} "
                + (f"is busy: {busy}." if busy else "has no writer member."),
                ErrorKind.TRANSIENT if busy else ErrorKind.PERMANENT)
        writer_region = self._region_of(writer, strict=False)
        source = writer_region if writer_region in self.options.members else None
        members = {m.get("DBClusterArn", ""): m for m in gc.get("GlobalClusterMembers", [])}
        out = []
        for region, arn in self.options.members.items():
            m = members.get(arn)
            if m is None:
                out.append(RegionDb(region, DbRole.OUTSIDE, detail=f"{arn} is not a member of {self.describe()}"))
            elif m.get("IsWriter"):
                out.append(RegionDb(region, DbRole.WRITER, detail=f"{region} writes for {self.describe()}"))
            elif m.get("SynchronizationStatus") == "pending-resync":  # a member not replicating yet
                out.append(RegionDb(region, DbRole.OUTSIDE, detail=f"{region} is a secondary of "
                                    f"{self.describe()} waiting to resynchronise (pending-resync)"))
            else:
                sync = m.get("SynchronizationStatus") or "unknown"
                out.append(RegionDb(region, DbRole.REPLICA, source,
                                    detail=f"{region} is a secondary of {self.describe()} (sync {sync})"))
        return Replication(tuple(out), utcnow())

    def promote(self, target: Target, to_region: str, mode: str = "promote",
                allow_data_loss: bool = False, dry_run: bool = False) -> ActionResult:
        """Make ``to_region``'s member the writer (see the module docstring)."""
        if mode == "promote":
            raise IntegrationError(
                f"{self.name}: aurora_global does not detach members; use mode "
                f"'switchover' (planned, no data loss) or 'failover' (primary region "
                f"impaired; needs allow_data_loss).", ErrorKind.PERMANENT)
        if mode not in MODES:
            raise IntegrationError(f"{self.name}: unknown mode {mode!r}; use "
                                   f"'switchover' or 'failover'.", ErrorKind.PERMANENT)
        if mode == "failover" and not allow_data_loss:
            raise IntegrationError(
                f"{self.name}: a global failover loses writes not yet replicated to "
                f"{to_region}; it is refused unless data loss is explicitly allowed. Use "
                f"'switchover' while the primary region is healthy.", ErrorKind.PERMANENT)
        target_arn = self._arn(to_region)
        gc = self._describe()
        writer = _writer(gc)
        was = self._region_of(writer, strict=False) if writer else "no writer"
        details: dict[str, Any] = {"global_cluster_id": self.options.global_cluster_id,
                                   "mode": mode, "to_region": to_region,
                                   "target_arn": target_arn, "from_region": was,
                                   "members": self._members(gc)}
        if target_arn not in _arns(gc):
            raise IntegrationError(
                f"{self.name}: {target_arn} ({to_region}) is not a member of "
                f"{self.describe()}; fix members in the source's options.",
                ErrorKind.PERMANENT)
        busy = _busy(gc)
        if busy:
            raise IntegrationError(f"{self.name}: {self.describe()} is busy: {busy}; "
                                   f"wait for it to finish.", ErrorKind.TRANSIENT)
        if writer == target_arn:
            return ActionResult(f"already the writer: {to_region} writes for "
                                f"{self.describe()}", dry_run=dry_run, changed=False,
                                details=details)
        what = ("switch over" if mode == "switchover" else "fail over (allowing data loss)")
        if dry_run:
            return ActionResult(f"would {what} {self.describe()} from {was} to {to_region}",
                                dry_run=True, changed=False, details=details)
        params = {"GlobalClusterIdentifier": self.options.global_cluster_id,
                  "TargetDbClusterIdentifier": target_arn}
        try:
            if mode == "switchover":
                response = self.client.switchover_global_cluster(**params)
            else:
                response = self.client.failover_global_cluster(**params, AllowDataLoss=True)
        except Exception as exc:
            raise self._error(exc, f"{mode} to {to_region}") from exc
        final = self._wait(target_arn, mode, response.get("GlobalCluster") or {})
        details.update(members=self._members(final), status=final.get("Status"))
        done = "switched over" if mode == "switchover" else "failed over"
        return ActionResult(f"{done} {self.describe()}: {to_region} is now the writer "
                            f"(was {was})", dry_run=False, changed=True, details=details)

    # -- reading and waiting ----------------------------------------------------------

    def _describe(self) -> dict[str, Any]:
        gid = self.options.global_cluster_id
        try:
            found = self.client.describe_global_clusters(
                GlobalClusterIdentifier=gid).get("GlobalClusters", [])
        except Exception as exc:
            raise self._error(exc, "reading") from exc
        if not found:
            raise IntegrationError(f"{self.name}: {self.describe()} does not exist.",
                                   ErrorKind.PERMANENT)
        return found[0]

    def _wait(self, target_arn: str, mode: str, started: dict[str, Any]) -> dict[str, Any]:
        o = self.options
        seen_busy = bool(_busy(started))
        for _ in self._polls(o.wait_timeout, o.poll_interval, wait_first=True):
            gc = self._describe()
            busy = _busy(gc)
            seen_busy = seen_busy or bool(busy)
            if busy or gc.get("Status", "available") != "available":
                continue
            writer = _writer(gc)
            if writer == target_arn:
                return gc
            if seen_busy:
                raise IntegrationError(
                    f"{self.name}: the {mode} of {self.describe()} ended (cancelled?) "
                    f"with {self._region_of(writer, strict=False) if writer else 'no'} "
                    f"writer instead of {self._region_of(target_arn)}.",
                    ErrorKind.PERMANENT)
        raise IntegrationError(
            f"{self.name}: the {mode} of {self.describe()} was requested but has not "
            f"settled after {o.wait_timeout:g}s; watch it in the RDS console.",
            ErrorKind.TRANSIENT)

    def _members(self, gc: dict[str, Any]) -> dict[str, Any]:
        """region (or ARN when unconfigured) -> {writer, sync}, JSON-serialisable."""
        return {self._region_of(m.get("DBClusterArn", ""), strict=False): {
                    "writer": bool(m.get("IsWriter")),
                    "sync": m.get("SynchronizationStatus") or ""}
                for m in gc.get("GlobalClusterMembers", [])}

    def _arn(self, region: str) -> str:
        try:
            return self.options.members[region]
        except KeyError:
            raise IntegrationError(
                f"{self.name}: {region} is not one of the regions configured for "
                f"{self.describe()} ({', '.join(self.options.members)}).",
                ErrorKind.PERMANENT) from None

    def _region_of(self, arn: str, strict: bool = True) -> str:
        for region, member in self.options.members.items():
            if member == arn:
                return region
        if not strict:
            return arn
        raise IntegrationError(
            f"{self.name}: the writer of {self.describe()} is {arn}, which is not in "
            f"members; add it to the source's options.", ErrorKind.PERMANENT)

    def _error(self, exc: Exception, doing: str) -> IntegrationError:
        if error_code(exc) == "GlobalClusterNotFoundFault":
            return IntegrationError(
                f"{self.name}: {self.describe()} does not exist (asked in "
                f"{self.options.region}). Check global_cluster_id.", ErrorKind.PERMANENT)
        return translate_error(exc, f"{self.name}: {doing} {self.describe()}")

    # -- check-config -----------------------------------------------------------------

    def check(self) -> CheckResult:
        """The global cluster exists, every configured ARN is a member and the writer
        is a configured region. Never raises."""
        try:
            gc = self._describe()
        except IntegrationError as exc:
            return CheckResult(False, str(exc))
        except Exception as exc:  # pragma: no cover - defensive: check never raises
            return CheckResult(False, f"{self.name}: unexpected error {exc!r}")
        arns = _arns(gc)
        missing = [f"{r} ({a})" for r, a in self.options.members.items() if a not in arns]
        extra = [a for a in arns if a not in self.options.members.values()]
        writer = _writer(gc)
        problems = []
        if missing:
            problems.append(f"not members: {', '.join(missing)}")
        if writer is None or writer in extra:
            problems.append(f"writer {writer or 'none'} is not a configured region")
        note = f"; unconfigured members: {', '.join(extra)}" if extra else ""
        if problems:
            return CheckResult(False, f"{self.name}: {self.describe()}: "
                                      f"{'; '.join(problems)}{note}.")
        return CheckResult(True, f"{self.name}: {self.describe()} has members "
                                 f"{', '.join(self.options.members)}; "
                                 f"{self._region_of(writer)} writes{note}.")


def _arns(gc: dict[str, Any]) -> list[str]:
    return [m.get("DBClusterArn", "") for m in gc.get("GlobalClusterMembers", [])]


def _writer(gc: dict[str, Any]) -> str | None:
    for m in gc.get("GlobalClusterMembers", []):
        if m.get("IsWriter"):
            return m.get("DBClusterArn")
    return None


def _busy(gc: dict[str, Any]) -> str:
    """Text for a switchover/failover in progress, or "" when FailoverState is empty."""
    state = gc.get("FailoverState") or {}
    if not state.get("Status"):
        return ""
    kind = "failover" if state.get("IsDataLossAllowed") else "switchover"
    return (f"a {kind} from {state.get('FromDbClusterArn', '?')} to "
            f"{state.get('ToDbClusterArn', '?')} is {state['Status']}")
