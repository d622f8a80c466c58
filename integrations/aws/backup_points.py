"""Backup age from AWS Backup recovery points (kind ``aws_backup``, capability BACKUP).

A backup entry's ``target`` is either the ARN of the protected resource
(``ListRecoveryPointsByResource``), or ``vault/NAME`` for every recovery point in a backup
vault (``ListRecoveryPointsByBackupVault``). The newest recovery point whose status is
``COMPLETED`` or ``AVAILABLE`` is the reading (a partial, expired or running one does not
count). Pages are read up to ``max_pages`` (100 per page).

The credentials need ``backup:ListRecoveryPointsByResource`` /
``backup:ListRecoveryPointsByBackupVault``.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from integrations.aws.backup_source import AwsBackupSource, AwsBackupSourceOptions, aware
from integrations.aws.session import translate_error
from integrations.base import BackupPoint, CheckResult

USABLE = frozenset({"COMPLETED", "AVAILABLE"})


class AwsBackupOptions(AwsBackupSourceOptions):
    max_pages: int = Field(default=10, ge=1, le=100)
    """Pages of 100 recovery points read at most per reading."""


def parse_target(target: str) -> tuple[str, str]:
    if target.startswith("arn:") and target.count(":") >= 5:
        return "resource", target
    kind, _, name = target.partition("/")
    if kind == "vault" and name:
        return "vault", name
    raise ValueError(f"{target!r} is not an AWS Backup target: write the protected resource's ARN "
                     "(arn:aws:...) or vault/BACKUP_VAULT_NAME")


class AwsBackupPoints(AwsBackupSource):
    """The newest completed AWS Backup recovery point of a resource or a vault."""

    kind = "aws_backup"
    title = "AWS Backup"
    Options = AwsBackupOptions
    parse_target = staticmethod(parse_target)
    boto3_service = "backup"
    options: AwsBackupOptions

    def newest_backup(self, target: str) -> BackupPoint | None:
        kind, ident = self._target(target)
        if kind == "resource":
            read, params = self.client.list_recovery_points_by_resource, {"ResourceArn": ident, "MaxResults": 100}
        else:
            read, params = self.client.list_recovery_points_by_backup_vault, {"BackupVaultName": ident,
                                                                               "MaxResults": 100}
        newest: dict[str, Any] | None = None
        try:
            for _ in range(self.options.max_pages):
                page = read(**params)
                for point in page.get("RecoveryPoints", []):
                    if point.get("Status") not in USABLE or point.get("CreationDate") is None:
                        continue
                    if newest is None or point["CreationDate"] > newest["CreationDate"]:
                        newest = point
                if not page.get("NextToken"):
                    break
                params["NextToken"] = page["NextToken"]
        except Exception as e:
            raise translate_error(e, self.name) from None
        if newest is None:
            return None
        where = f"vault {newest.get('BackupVaultName') or ident}"
        return BackupPoint(id=newest["RecoveryPointArn"], created_at=aware(newest["CreationDate"]),
                           detail=f"AWS Backup recovery point in {where} ({self.options.region})")

    def check(self) -> CheckResult:
        return CheckResult(True, f"{self.name}: AWS Backup in {self.options.region}; recovery points are "
                                 "read per backup entry")
