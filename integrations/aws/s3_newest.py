"""Backup age from the newest object under an S3 prefix (kind ``s3_newest``, capability
BACKUP): for dumps and exports written to a bucket (``pg_dump`` files, etcd snapshots).

A backup entry's ``target`` is ``BUCKET/PREFIX`` (``s3://`` in front is allowed). Every
object under the prefix is listed (``ListObjectsV2``, 1000 per page) and the one with the
newest ``LastModified`` is the reading, skipping objects smaller than ``min_bytes`` (an
empty or truncated dump is no backup). More than ``max_objects`` under the prefix is an
error: narrow the prefix (e.g. to the current year) or raise the limit.

The credentials need ``s3:ListBucket`` on the bucket.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from integrations.aws.backup_source import AwsBackupSource, AwsBackupSourceOptions, aware
from integrations.aws.session import translate_error
from integrations.base import BackupPoint, CheckResult, ErrorKind, IntegrationError


class S3NewestOptions(AwsBackupSourceOptions):
    min_bytes: int = Field(default=1, ge=0)
    """Objects smaller than this are not backups."""
    max_objects: int = Field(default=10000, ge=1, le=1_000_000)
    """Objects listed at most per reading."""


def parse_target(target: str) -> tuple[str, str]:
    rest = target[len("s3://"):] if target.startswith("s3://") else target
    bucket, _, prefix = rest.partition("/")
    if len(bucket) < 3 or " " in rest:
        raise ValueError(f"{target!r} is not an S3 target: write BUCKET/PREFIX, e.g. my-backups/orders/")
    return bucket, prefix


class S3Newest(AwsBackupSource):
    """The newest object under a prefix of one bucket."""

    kind = "s3_newest"
    title = "S3"
    Options = S3NewestOptions
    parse_target = staticmethod(parse_target)
    boto3_service = "s3"
    options: S3NewestOptions

    def newest_backup(self, target: str) -> BackupPoint | None:
        bucket, prefix = self._target(target)
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
        newest: dict[str, Any] | None = None
        seen = 0
        try:
            while True:
                page = self.client.list_objects_v2(**params)
                for obj in page.get("Contents", []):
                    seen += 1
                    if obj.get("Size", 0) < self.options.min_bytes:
                        continue
                    if newest is None or obj["LastModified"] > newest["LastModified"]:
                        newest = obj
                if not page.get("IsTruncated"):
                    break
                if seen >= self.options.max_objects:
                    raise IntegrationError(
                        f"{self.name}: more than {self.options.max_objects} objects under s3://{bucket}/{prefix}: "
                        "narrow the prefix or raise max_objects", ErrorKind.PERMANENT)
                params["ContinuationToken"] = page["NextContinuationToken"]
        except IntegrationError:
            raise
        except Exception as e:
            raise translate_error(e, self.name) from None
        if newest is None:
            return None
        at = newest["LastModified"]
        return BackupPoint(id=f"s3://{bucket}/{newest['Key']}",
                           created_at=aware(at),
                           detail=f"newest of {seen} object(s) under s3://{bucket}/{prefix} ({newest.get('Size', 0)} bytes)")

    def check(self) -> CheckResult:
        return CheckResult(True, f"{self.name}: S3 in {self.options.region}; prefixes are listed per backup entry")
