"""Database promoter over RDS read replicas (kind ``rds``, capability DATABASE).

Each drbot region names one target in that region: an Aurora/Multi-AZ DB cluster
(``cluster``) or a DB instance (``instance``). A target is a replica while RDS reports a
replication source (a cluster's ``ReplicationSourceIdentifier``; an instance's
``ReadReplicaSourceDBInstanceIdentifier`` or ``ReadReplicaSourceDBClusterIdentifier``);
otherwise it is a standalone writer.

Promotion (``PromoteReadReplicaDBCluster`` / ``PromoteReadReplica``) detaches the replica
for good: it stops replicating and becomes a standalone writer. Writes the source had not
yet replicated are not carried over (check the lag first), and RDS does not demote the
old source, which keeps accepting writes if it is still running. There is no switchover
or failover here: Aurora global databases use the ``aurora_global`` backend.

Clients are per region (each target lives in its own region) and created on first use;
an injected client is used for every region (tests).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from integrations.aws.session import AwsBackend, error_code, translate_error
from integrations.base import (
    DATABASE, ActionResult, BackendOptions, CheckResult, DbRole, ErrorKind,
    IntegrationError, RegionDb, Replication, Target, utcnow,
)

NOT_FOUND_CODES = frozenset({"DBClusterNotFoundFault", "DBInstanceNotFound",
                             "DBInstanceNotFoundFault"})


class RdsTarget(BaseModel):
    """One region's database: exactly one of ``cluster`` or ``instance`` (identifiers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: str | None = Field(None, min_length=1)
    instance: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> "RdsTarget":
        if (self.cluster is None) == (self.instance is None):
            raise ValueError("set exactly one of cluster (DB cluster identifier) or "
                             "instance (DB instance identifier)")
        return self

    @property
    def what(self) -> str:
        return "cluster" if self.cluster else "instance"

    @property
    def identifier(self) -> str:
        return self.cluster or self.instance or ""


class RdsOptions(BackendOptions):
    regions: dict[str, RdsTarget] = Field(min_length=1)
    endpoint_url: str | None = None
    wait: bool = True
    """Return from ``promote`` only once the target is available and no longer a replica."""
    wait_timeout: float = Field(1800, gt=0)
    poll_interval: float = Field(15, gt=0)


@dataclass(frozen=True)
class DbState:
    """What RDS reports about one region's target."""

    region: str
    what: str          # "cluster" or "instance"
    identifier: str
    status: str
    source: str | None  # replication source; None for a standalone writer

    @property
    def replica(self) -> bool:
        return self.source is not None

    def text(self) -> str:
        role = f"replica of {self.source}" if self.source else "writer"
        return f"RDS {self.what} {self.identifier} in {self.region} ({role}, {self.status})"


class RdsPromoter(AwsBackend):
    """Promotes the standby region's RDS read replica to a standalone writer."""

    kind = "rds"
    title = "RDS"
    Options = RdsOptions
    capabilities = frozenset({DATABASE})
    boto3_service = "rds"
    options: RdsOptions

    def __init__(self, name: str, options: RdsOptions, client: Any = None):
        super().__init__(name, options, client)
        self._clients: dict[str, Any] = {}

    def client(self, region: str) -> Any:  # type: ignore[override]  # one per region
        """The injected client, or this region's boto3 RDS client, created on first use."""
        with self._lock:
            if self._client is not None:
                return self._client
            if region not in self._clients:
                self._clients[region] = self._new_client(region)
            return self._clients[region]

    # -- capability -------------------------------------------------------------------

    def writer_region(self, target: Target) -> str:
        """The first configured region (in ``regions`` order) whose target is not a
        replica. After a promotion the old source, if it survives, is a standalone
        writer too, so several regions can qualify: the first one is reported. A region
        whose target cannot be read is skipped; if no writer is found, the first error
        is raised (or PERMANENT when every target is a replica)."""
        errors: list[IntegrationError] = []
        for region in self.options.regions:
            try:
                state = self.state(region)
            except IntegrationError as exc:
                errors.append(exc)
                continue
            if not state.replica:
                return region
        if errors:
            raise errors[0]
        raise IntegrationError(
            f"{self.name}: every configured target is a read replica; no region writes.",
            ErrorKind.PERMANENT)

    def replication(self, target: Target) -> Replication:
        """Every region's target: a writer (no replication source), or a replica of the
        configured region whose target its source names (an identifier, or an ARN in that
        region). A former source left standalone by a promotion is a writer too: two
        writers means the two have split. A region that cannot be read is UNKNOWN; when
        none can be, the first error is raised."""
        out: list[RegionDb] = []
        errors: list[IntegrationError] = []
        for region in self.options.regions:
            try:
                state = self.state(region)
            except IntegrationError as exc:
                errors.append(exc)
                out.append(RegionDb(region, DbRole.UNKNOWN, detail=str(exc)))
                continue
            if state.replica:
                out.append(RegionDb(region, DbRole.REPLICA, self._region_of_source(state.source or ""),
                                    detail=state.text()))
            else:
                out.append(RegionDb(region, DbRole.WRITER, detail=state.text()))
        if len(errors) == len(out):
            raise errors[0]
        return Replication(tuple(out), utcnow())

    def _region_of_source(self, source: str) -> str | None:
        """The configured region whose target ``source`` names: an ARN
        (arn:aws:rds:REGION:ACCOUNT:cluster|db:ID) or a bare identifier."""
        if source.startswith("arn:"):
            parts = source.split(":")
            region, name = (parts[3], parts[-1]) if len(parts) >= 7 else ("", "")
            for r, t in self.options.regions.items():
                if r == region and t.identifier == name:
                    return r
            return None
        return next((r for r, t in self.options.regions.items() if t.identifier == source), None)

    def promote(self, target: Target, to_region: str, mode: str = "promote",
                allow_data_loss: bool = False, dry_run: bool = False) -> ActionResult:
        """Promote ``to_region``'s replica (see the module docstring). ``mode`` must be
        "promote"; ``allow_data_loss`` is recorded in the details but not required,
        since promotion is the only thing this backend does."""
        if mode != "promote":
            raise IntegrationError(
                f"{self.name}: rds supports promote, not {mode!r}; use aurora_global for "
                f"switchover/failover.", ErrorKind.PERMANENT)
        rds_target = self._target(to_region)
        state = self.state(to_region)
        details: dict[str, Any] = {"region": to_region, "kind": state.what,
                                   "identifier": state.identifier, "source": state.source,
                                   "status_before": state.status,
                                   "allow_data_loss": allow_data_loss}
        if not state.replica:
            return ActionResult(f"already the writer: {state.text()}", dry_run=dry_run,
                                changed=False, details=details)
        if dry_run:
            return ActionResult(
                f"would promote {state.text()} to a standalone writer; it stops "
                f"replicating from {state.source}", dry_run=True, changed=False,
                details=details)
        client = self.client(to_region)
        try:
            if rds_target.cluster:
                client.promote_read_replica_db_cluster(DBClusterIdentifier=rds_target.cluster)
            else:
                client.promote_read_replica(DBInstanceIdentifier=rds_target.identifier)
        except Exception as exc:
            raise self._error(exc, f"promoting {state.text()}") from exc
        if not self.options.wait:
            return ActionResult(f"started promoting {state.text()}", dry_run=False,
                                changed=True, details=details)
        final = self._wait_promoted(to_region)
        details["status"] = final.status
        return ActionResult(f"promoted RDS {state.what} {state.identifier} in {to_region}: "
                            f"now a standalone writer ({final.status}), no longer a "
                            f"replica of {state.source}", dry_run=False, changed=True,
                            details=details)

    # -- reading ----------------------------------------------------------------------

    def state(self, region: str) -> DbState:
        """Describe ``region``'s target."""
        t = self._target(region)
        client = self.client(region)
        try:
            if t.cluster:
                found = client.describe_db_clusters(DBClusterIdentifier=t.cluster)["DBClusters"]
                db = found[0] if found else {}
                status, source = db.get("Status"), db.get("ReplicationSourceIdentifier")
            else:
                found = client.describe_db_instances(
                    DBInstanceIdentifier=t.identifier)["DBInstances"]
                db = found[0] if found else {}
                status = db.get("DBInstanceStatus")
                source = (db.get("ReadReplicaSourceDBInstanceIdentifier")
                          or db.get("ReadReplicaSourceDBClusterIdentifier"))
        except Exception as exc:
            raise self._error(exc, f"reading RDS {t.what} {t.identifier} in {region}") \
                from exc
        if not found:
            raise self._missing(t, region)
        return DbState(region, t.what, t.identifier, str(status or "unknown"),
                       source or None)

    def _wait_promoted(self, region: str) -> DbState:
        o = self.options
        for _ in self._polls(o.wait_timeout, o.poll_interval):
            state = self.state(region)
            if state.status == "available" and not state.replica:
                return state
        raise IntegrationError(
            f"{self.name}: promotion was requested but {state.text()} has not "
            f"finished after {o.wait_timeout:g}s; watch it in the RDS console.",
            ErrorKind.TRANSIENT)

    def _target(self, region: str) -> RdsTarget:
        try:
            return self.options.regions[region]
        except KeyError:
            raise IntegrationError(
                f"{self.name}: {region} is not one of the regions configured for this "
                f"source ({', '.join(self.options.regions)}).", ErrorKind.PERMANENT) from None

    def _missing(self, t: RdsTarget, region: str) -> IntegrationError:
        return IntegrationError(
            f"{self.name}: RDS {t.what} {t.identifier} does not exist in {region}. Check "
            f"the identifier in the source's options.", ErrorKind.PERMANENT)

    def _error(self, exc: Exception, doing: str) -> IntegrationError:
        if error_code(exc) in NOT_FOUND_CODES:
            return IntegrationError(f"{self.name}: {doing}: it does not exist. Check the "
                                    f"identifier in the source's options.",
                                    ErrorKind.PERMANENT)
        return translate_error(exc, f"{self.name}: {doing}")

    # -- check-config -----------------------------------------------------------------

    def check(self) -> CheckResult:
        """Describes every region's target: each exists, and its role. OK when all exist
        and exactly one is a writer. Never raises."""
        states, problems = [], []
        for region in self.options.regions:
            try:
                states.append(self.state(region))
            except IntegrationError as exc:
                problems.append(str(exc))
            except Exception as exc:  # pragma: no cover - defensive: check never raises
                problems.append(f"{self.name}: {region}: unexpected error {exc!r}")
        writers = [s.region for s in states if not s.replica]
        if not problems and len(writers) != 1:
            problems.append(f"{self.name}: expected exactly one writer, found "
                            f"{len(writers)} ({', '.join(writers) or 'none'}).")
        seen = "; ".join(s.text() for s in states)
        if problems:
            return CheckResult(False, " ".join(problems) + (f" Seen: {seen}." if seen else ""))
        return CheckResult(True, f"{self.name}: {seen}.")
