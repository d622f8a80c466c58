"""S3 archive backend against a real moto server."""
from __future__ import annotations

import pydantic
import pytest

from integrations.aws.s3_archive import ArchivedObject, S3Archive
from integrations.aws.session import make_client
from integrations.base import ARCHIVE, ErrorKind, IntegrationError
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401

REGION = "us-east-1"
BUCKET = "drbot-evidence"


@pytest.fixture
def s3(moto_endpoint):  # noqa: F811
    reset_moto(moto_endpoint)
    client = make_client("s3", region=REGION, timeout=5, endpoint_url=moto_endpoint)
    client.create_bucket(Bucket=BUCKET)
    return client


def archive(endpoint, **opts) -> S3Archive:
    options = {"bucket": BUCKET, "region": REGION, "endpoint_url": endpoint, **opts}
    return S3Archive("evidence", S3Archive.Options.model_validate(options))


def test_declares_kind_and_capability():
    assert (S3Archive.kind, S3Archive.capabilities) == ("s3_archive", frozenset({ARCHIVE}))


def test_markdown_lands_with_type_metadata_and_sse(s3, moto_endpoint):  # noqa: F811
    text = "# Drill report\n\nRTO measured: 7m 12s — within target ✅\n"
    stored = archive(moto_endpoint).store(
        "incidents/INC-7/timeline.md", text, metadata={"incident": "INC-7", "service": "orders"})
    assert isinstance(stored, ArchivedObject)
    assert stored.uri == f"s3://{BUCKET}/drbot/incidents/INC-7/timeline.md"
    assert stored.key == "drbot/incidents/INC-7/timeline.md" and stored.bucket == BUCKET
    assert stored.version_id is None  # the bucket is not versioned
    assert stored.etag and '"' not in stored.etag

    got = s3.get_object(Bucket=BUCKET, Key="drbot/incidents/INC-7/timeline.md")
    assert got["Body"].read().decode("utf-8") == text
    assert got["ContentType"] == "text/markdown; charset=utf-8"
    assert got["Metadata"] == {"incident": "INC-7", "service": "orders"}
    assert got["ServerSideEncryption"] == "AES256"
    assert got["ETag"].strip('"') == stored.etag


def test_bytes_keep_content_type_and_versioning_gives_ids(s3, moto_endpoint):  # noqa: F811
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    backend = archive(moto_endpoint, prefix="evidence")  # a "/" is added
    first = backend.store("/drills/d1.json", b'{"rto": 432}', content_type="application/json")
    second = backend.store("drills/d1.json", b'{"rto": 431}', content_type="application/json")
    assert first.uri == f"s3://{BUCKET}/evidence/drills/d1.json" == second.uri
    assert first.version_id and second.version_id and first.version_id != second.version_id
    head = s3.head_object(Bucket=BUCKET, Key="evidence/drills/d1.json",
                          VersionId=first.version_id)
    assert head["ContentType"] == "application/json"


def test_kms_encryption(s3, moto_endpoint):  # noqa: F811
    kms = make_client("kms", region=REGION, timeout=5, endpoint_url=moto_endpoint)
    key_id = kms.create_key(Description="drbot evidence")["KeyMetadata"]["KeyId"]
    stored = archive(moto_endpoint, sse="aws:kms", kms_key_id=key_id).store("r.md", "x")
    head = s3.head_object(Bucket=BUCKET, Key="drbot/r.md")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith(key_id)
    assert stored.uri == f"s3://{BUCKET}/drbot/r.md"


def test_no_sse_sends_no_header(s3, moto_endpoint):  # noqa: F811
    archive(moto_endpoint, sse=None, prefix="").store("plain.md", "x")
    assert s3.get_object(Bucket=BUCKET, Key="plain.md")["Body"].read() == b"x"


def test_missing_bucket_is_permanent(s3, moto_endpoint):  # noqa: F811
    with pytest.raises(IntegrationError) as caught:
        archive(moto_endpoint, bucket="no-such-bucket").store("a.md", "x")
    assert caught.value.kind is ErrorKind.PERMANENT
    assert "no-such-bucket does not exist" in str(caught.value)


@pytest.mark.parametrize("key, metadata", [("", {}), ("/", {}), ("a.md", {"who": "Zoë"})])
def test_bad_key_or_metadata_is_refused_before_calling_aws(key, metadata):
    backend = archive("http://127.0.0.1:9")  # nothing listens: a call would fail differently
    with pytest.raises(IntegrationError) as caught:
        backend.store(key, "x", metadata=metadata)
    assert caught.value.kind is ErrorKind.PERMANENT


def test_options_are_validated():
    with pytest.raises(pydantic.ValidationError, match="kms_key_id needs sse"):
        S3Archive.Options.model_validate({"bucket": BUCKET, "region": REGION, "kms_key_id": "k"})
    with pytest.raises(pydantic.ValidationError):
        S3Archive.Options.model_validate({"bucket": BUCKET, "region": REGION, "sse": "DES"})
    with pytest.raises(pydantic.ValidationError):
        S3Archive.Options.model_validate({"bucket": BUCKET, "region": REGION, "acl": "public"})
    assert S3Archive.Options.model_validate(
        {"bucket": BUCKET, "region": REGION, "prefix": "/a/b"}).prefix == "a/b/"


def test_injected_client_is_used(s3, moto_endpoint):  # noqa: F811
    backend = S3Archive("evidence", archive("http://127.0.0.1:9").options, client=s3)
    assert backend.store("x.md", "x").uri == f"s3://{BUCKET}/drbot/x.md"


def test_check_ok_and_failing(s3, moto_endpoint):  # noqa: F811
    ok = archive(moto_endpoint).check()
    assert ok.ok is True and BUCKET in ok.message and "AES256" in ok.message
    missing = archive(moto_endpoint, bucket="no-such-bucket").check()
    assert missing.ok is False and "no-such-bucket does not exist" in missing.message


def test_check_unreachable_endpoint_does_not_raise():
    result = archive("http://127.0.0.1:9", timeout=0.5).check()
    assert result.ok is False and "evidence" in result.message
