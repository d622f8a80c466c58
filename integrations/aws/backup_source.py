"""What the AWS backup sources (``rds_snapshots``, ``aws_backup``, ``s3_newest``) share:
their options' region and endpoint, the capability, and a ``target`` read by the kind's own
``parse_target``: a ValueError naming the form at load time (``check_target``), a permanent
IntegrationError when read."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from integrations.aws.session import AwsBackend
from integrations.base import BACKUP, BackendOptions, ErrorKind, IntegrationError


class AwsBackupSourceOptions(BackendOptions):
    region: str
    endpoint_url: str | None = None


class AwsBackupSource(AwsBackend):
    capabilities = frozenset({BACKUP})
    parse_target: Callable[[str], tuple[str, str]]
    """The kind's reading of a backup entry's ``target`` (a staticmethod); ValueError when wrong."""

    @classmethod
    def check_target(cls, target: str) -> str | None:
        try:
            cls.parse_target(target)
        except ValueError as e:
            return str(e)
        return None

    def _target(self, target: str) -> tuple[str, str]:
        try:
            return type(self).parse_target(target)
        except ValueError as e:
            raise IntegrationError(f"{self.name}: {e}", ErrorKind.PERMANENT) from None


def aware(at: datetime | Any) -> datetime:
    """An AWS timestamp as timezone-aware UTC (botocore gives aware ones; a stub may not)."""
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)
