"""Backup age from RDS and Aurora snapshots (kind ``rds_snapshots``, capability BACKUP).

A backup entry's ``target`` names the database: ``instance/ID`` (an RDS DB instance:
``DescribeDBSnapshots``) or ``cluster/ID`` (an Aurora DB cluster:
``DescribeDBClusterSnapshots``). The newest snapshot whose status is ``available``
(automated, manual or AWS Backup-made, as ``snapshot_type`` allows) is the reading; a
snapshot still being taken does not count. Pages are read up to ``max_pages`` (100 per page).

The credentials need ``rds:DescribeDBSnapshots`` / ``rds:DescribeDBClusterSnapshots``.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from integrations.aws.backup_source import AwsBackupSource, AwsBackupSourceOptions, aware
from integrations.aws.session import translate_error
from integrations.base import BackupPoint, CheckResult

KINDS = ("instance", "cluster")


class RdsSnapshotsOptions(AwsBackupSourceOptions):
    snapshot_type: Literal["any", "automated", "manual", "awsbackup"] = "any"
    """Which snapshots count; "any": all of them."""
    max_pages: int = Field(default=10, ge=1, le=100)
    """Pages of 100 snapshots read at most per reading."""


def parse_target(target: str) -> tuple[str, str]:
    kind, _, ident = target.partition("/")
    if kind not in KINDS or not ident:
        raise ValueError(f"{target!r} is not an RDS target: write instance/DB_INSTANCE_ID or cluster/DB_CLUSTER_ID")
    return kind, ident


class RdsSnapshots(AwsBackupSource):
    """The newest available snapshot of an RDS DB instance or an Aurora DB cluster."""

    kind = "rds_snapshots"
    title = "RDS snapshots"
    Options = RdsSnapshotsOptions
    parse_target = staticmethod(parse_target)
    boto3_service = "rds"
    options: RdsSnapshotsOptions

    def newest_backup(self, target: str) -> BackupPoint | None:
        kind, ident = self._target(target)
        cluster = kind == "cluster"
        params: dict[str, Any] = {("DBClusterIdentifier" if cluster else "DBInstanceIdentifier"): ident,
                                  "MaxRecords": 100}
        if self.options.snapshot_type != "any":
            params["SnapshotType"] = self.options.snapshot_type
        key = "DBClusterSnapshots" if cluster else "DBSnapshots"
        read = self.client.describe_db_cluster_snapshots if cluster else self.client.describe_db_snapshots
        newest: dict[str, Any] | None = None
        try:
            for _ in range(self.options.max_pages):
                page = read(**params)
                for snap in page.get(key, []):
                    if snap.get("Status") != "available" or snap.get("SnapshotCreateTime") is None:
                        continue
                    if newest is None or snap["SnapshotCreateTime"] > newest["SnapshotCreateTime"]:
                        newest = snap
                if not page.get("Marker"):
                    break
                params["Marker"] = page["Marker"]
        except Exception as e:  # botocore's errors, translated
            raise translate_error(e, self.name) from None
        if newest is None:
            return None
        ident_key = "DBClusterSnapshotIdentifier" if cluster else "DBSnapshotIdentifier"
        what = "Aurora cluster" if cluster else "RDS instance"
        return BackupPoint(id=newest[ident_key], created_at=aware(newest["SnapshotCreateTime"]),
                           detail=f"{newest.get('SnapshotType', 'snapshot')} snapshot of {what} {ident} "
                                  f"in {self.options.region}")

    def check(self) -> CheckResult:
        try:
            self.client.describe_db_snapshots(MaxRecords=20)
        except Exception as e:
            return CheckResult(False, str(translate_error(e, self.name)))
        return CheckResult(True, f"{self.name}: RDS in {self.options.region} lists snapshots.")
