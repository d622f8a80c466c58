"""Evidence archive in S3 (kind ``s3_archive``, capability ARCHIVE).

``store(key, body)`` writes ``s3://bucket/<prefix><key>`` with server-side encryption
(SSE-S3 ``AES256`` by default, or ``aws:kms`` with an optional ``kms_key_id``) and returns
where it landed, with the version id when the bucket is versioned (recommended for
evidence, ideally with Object Lock). Text bodies are stored as UTF-8 and their content type
gets ``; charset=utf-8`` unless it names a charset already.

The credentials need ``s3:PutObject`` on the prefix (and ``kms:GenerateDataKey`` on the key
with ``aws:kms``); ``check()`` needs ``s3:ListBucket`` (HeadBucket). A missing bucket is
PERMANENT; see ``integrations.aws.session`` for the other error kinds.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import Field, field_validator, model_validator

from integrations.aws.session import AwsBackend, translate_error
from integrations.base import (
    ARCHIVE, BackendOptions, CheckResult, ErrorKind, IntegrationError,
)


@dataclass(frozen=True)
class ArchivedObject:
    uri: str
    """s3://bucket/prefix/key"""
    version_id: str | None
    """None when the bucket is not versioned."""
    etag: str
    bucket: str = ""
    key: str = ""


class S3ArchiveOptions(BackendOptions):
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = "drbot/"
    """Prepended to every key; a trailing "/" is added when missing (use "" for none)."""
    region: str
    endpoint_url: str | None = None
    sse: Literal["AES256", "aws:kms"] | None = "AES256"
    kms_key_id: str | None = None
    """With sse "aws:kms": the key id, ARN or alias; without it, the AWS managed key."""

    @field_validator("prefix")
    @classmethod
    def _folder(cls, value: str) -> str:
        value = value.lstrip("/")
        return value + "/" if value and not value.endswith("/") else value

    @model_validator(mode="after")
    def _consistent(self) -> "S3ArchiveOptions":
        if self.kms_key_id and self.sse != "aws:kms":
            raise ValueError('kms_key_id needs sse: "aws:kms"')
        return self


class S3Archive(AwsBackend):
    """Stores timelines and drill reports as objects in one S3 bucket. ``client``: the
    injected boto3 S3 client, or one created on first use."""

    kind = "s3_archive"
    Options = S3ArchiveOptions
    capabilities = frozenset({ARCHIVE})
    boto3_service = "s3"
    options: S3ArchiveOptions

    def describe(self) -> str:
        o = self.options
        return f"{self.name}: S3 s3://{o.bucket}/{o.prefix} in {o.region}"

    def store(self, key: str, body: bytes | str, content_type: str = "text/markdown",
              metadata: Mapping[str, str] | None = None) -> ArchivedObject:
        """Write ``body`` to ``<prefix><key>``; overwrites (a new version when versioned)."""
        o = self.options
        key = key.lstrip("/")
        if not key:
            raise IntegrationError(f"{self.describe()}: the object key is empty.",
                                   ErrorKind.PERMANENT)
        metadata = dict(metadata or {})
        for name, value in metadata.items():
            if not (name.isascii() and str(value).isascii() and name.strip()):
                raise IntegrationError(
                    f"{self.describe()}: metadata {name!r}={value!r} is not allowed; S3 "
                    f"metadata names and values must be non-empty ASCII.",
                    ErrorKind.PERMANENT)
        if isinstance(body, str):
            body = body.encode("utf-8")
            if content_type.startswith("text/") and "charset" not in content_type:
                content_type += "; charset=utf-8"
        full_key = o.prefix + key
        params: dict[str, Any] = {"Bucket": o.bucket, "Key": full_key, "Body": body,
                                  "ContentType": content_type,
                                  "Metadata": {k: str(v) for k, v in metadata.items()}}
        if o.sse:
            params["ServerSideEncryption"] = o.sse
        if o.kms_key_id:
            params["SSEKMSKeyId"] = o.kms_key_id
        try:
            answer = self.client.put_object(**params)
        except Exception as exc:
            raise self._error(exc, f"writing {full_key}") from exc
        return ArchivedObject(uri=f"s3://{o.bucket}/{full_key}",
                              version_id=answer.get("VersionId"),
                              etag=str(answer.get("ETag", "")).strip('"'),
                              bucket=o.bucket, key=full_key)

    def _error(self, exc: Exception, doing: str) -> IntegrationError:
        o = self.options
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchBucket", "404", "NotFound"):
                return IntegrationError(
                    f"{self.describe()}: the bucket {o.bucket} does not exist ({doing}); "
                    f"create it or fix bucket/region.", ErrorKind.PERMANENT)
            if code in ("301", "PermanentRedirect", "AuthorizationHeaderMalformed"):
                return IntegrationError(
                    f"{self.describe()}: the bucket {o.bucket} is not in {o.region} "
                    f"({doing}); fix region.", ErrorKind.PERMANENT)
        return translate_error(exc, f"{self.describe()} ({doing})")

    def check(self) -> CheckResult:
        """HeadBucket: the bucket exists and the credentials may list it. Never raises."""
        o = self.options
        try:
            self.client.head_bucket(Bucket=o.bucket)
        except Exception as exc:  # check() never raises
            return CheckResult(False, str(self._error(exc, "checking the bucket")))
        sse = o.sse or "no"
        return CheckResult(True, f"{self.describe()}: the bucket is reachable; objects are "
                                 f"written with {sse} server-side encryption.")
