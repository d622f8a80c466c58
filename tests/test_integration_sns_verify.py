"""SNS message signature verification with a locally generated key and certificate."""
from __future__ import annotations

import base64
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from integrations.aws.sns_verify import (
    CertificateUnavailable, SignatureInvalid, SnsVerifier, canonical_string,
)

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:drbot-alerts"


def make_cert(key, not_before, not_after) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pem(key):
    now = datetime.now(timezone.utc)
    return make_cert(key, now - timedelta(days=1), now + timedelta(days=30))


class Fetcher:
    """fetch_pem that serves one PEM per URL and counts calls."""

    def __init__(self, pems: dict[str, bytes]):
        self.pems, self.calls = pems, []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        return self.pems[url]


def notification(**fields) -> dict:
    return {"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": TOPIC, "Subject": "ALARM: orders-lag in us-east-1",
            "Message": '{"AlarmName":"orders-lag","NewStateValue":"ALARM"}',
            "Timestamp": "2024-05-01T12:00:00.000Z", "SignatureVersion": "2",
            "SigningCertURL": CERT_URL,
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe", **fields}


def confirmation(kind="SubscriptionConfirmation", **fields) -> dict:
    return {"Type": kind, "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a",
            "TopicArn": TOPIC,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.\n"
                       "To confirm the subscription, visit the SubscribeURL included in "
                       "this message.",
            "SubscribeURL": "https://sns.us-east-1.amazonaws.com/"
                            "?Action=ConfirmSubscription&Token=x",
            "Timestamp": "2024-05-01T12:00:00.000Z", "SignatureVersion": "1",
            "SigningCertURL": CERT_URL, **fields}


def sign(message: dict, key) -> dict:
    algorithm = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()
    signature = key.sign(canonical_string(message), padding.PKCS1v15(), algorithm)
    return {**message, "Signature": base64.b64encode(signature).decode()}


def test_canonical_string_follows_the_documented_order():
    message = notification()
    assert canonical_string(message) == (
        f"Message\n{message['Message']}\nMessageId\n{message['MessageId']}\n"
        f"Subject\n{message['Subject']}\nTimestamp\n{message['Timestamp']}\n"
        f"TopicArn\n{TOPIC}\nType\nNotification\n").encode()
    del message["Subject"]
    assert b"Subject" not in canonical_string(message)
    conf = confirmation()
    assert canonical_string(conf) == "".join(
        f"{name}\n{conf[name]}\n" for name in ("Message", "MessageId", "SubscribeURL",
                                               "Timestamp", "Token", "TopicArn", "Type")
    ).encode()
    with pytest.raises(SignatureInvalid, match="Type"):
        canonical_string({"Type": "Other"})
    with pytest.raises(SignatureInvalid, match="no Token"):
        canonical_string({**confirmation(), "Token": None})


@pytest.mark.parametrize("build", [
    lambda: notification(SignatureVersion="1"),
    lambda: notification(SignatureVersion="2"),
    lambda: notification(SignatureVersion="2", Subject=None),
    lambda: confirmation(SignatureVersion="1"),
    lambda: confirmation(SignatureVersion="2"),
    lambda: confirmation("UnsubscribeConfirmation", SignatureVersion="2"),
], ids=["notification-v1", "notification-v2", "no-subject", "subscribe-v1", "subscribe-v2",
        "unsubscribe-v2"])
def test_valid_messages_pass(key, pem, build):
    message = build()
    if message.get("Subject") is None:
        message.pop("Subject", None)
    SnsVerifier(fetch_pem=Fetcher({CERT_URL: pem})).verify(sign(message, key))


@pytest.mark.parametrize("field, value", [
    ("Message", '{"AlarmName":"orders-lag","NewStateValue":"OK"}'),
    ("TopicArn", "arn:aws:sns:us-east-1:999999999999:other"),
    ("Subject", "OK: orders-lag"),
    ("Type", "SubscriptionConfirmation"),
])
def test_tampered_message_is_rejected(key, pem, field, value):
    signed = sign(notification(), key)
    signed[field] = value
    with pytest.raises(SignatureInvalid) as caught:
        SnsVerifier(fetch_pem=Fetcher({CERT_URL: pem})).verify(signed)
    assert caught.value.reason  # a human reason


def test_tampered_message_reason(key, pem):
    signed = sign(notification(), key)
    signed["Message"] = "forged"
    with pytest.raises(SignatureInvalid, match="does not match the message"):
        SnsVerifier(fetch_pem=Fetcher({CERT_URL: pem})).verify(signed)


def test_signature_with_the_wrong_version_is_rejected(key, pem):
    signed = sign(notification(SignatureVersion="1"), key)
    signed["SignatureVersion"] = "2"
    with pytest.raises(SignatureInvalid):
        SnsVerifier(fetch_pem=Fetcher({CERT_URL: pem})).verify(signed)


def test_signed_by_another_key_is_rejected(pem):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SignatureInvalid, match="does not match"):
        SnsVerifier(fetch_pem=Fetcher({CERT_URL: pem})).verify(sign(notification(), other))


@pytest.mark.parametrize("url", [
    "https://evil.example/sns.pem",
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem",
    "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
    "https://evil.example/?sns.us-east-1.amazonaws.com",
    "https://sns.us-east-1.amazonaws.com@evil.example/cert.pem",
    "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
    "https://sns.us-east-1.amazonaws.com/cert.txt",
    "https://s3.us-east-1.amazonaws.com/cert.pem",
    "file:///etc/ssl/cert.pem",
    "",
])
def test_cert_url_outside_sns_is_rejected_without_fetching(key, pem, url):
    fetch = Fetcher({url: pem})
    with pytest.raises(SignatureInvalid) as caught:
        SnsVerifier(fetch_pem=fetch).verify(sign(notification(SigningCertURL=url), key))
    assert fetch.calls == []
    assert "SigningCertURL" in caught.value.reason


def test_http_url_reason_says_https(key, pem):
    url = CERT_URL.replace("https://", "http://")
    with pytest.raises(SignatureInvalid, match="is not https"):
        SnsVerifier(fetch_pem=Fetcher({url: pem})).verify(
            sign(notification(SigningCertURL=url), key))


def test_china_regions_are_allowed(key, pem):
    url = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem"
    SnsVerifier(fetch_pem=Fetcher({url: pem})).verify(sign(notification(SigningCertURL=url), key))


def test_certificate_is_cached_per_url(key, pem):
    fetch = Fetcher({CERT_URL: pem})
    verifier = SnsVerifier(fetch_pem=fetch)
    verifier.verify(sign(notification(), key))
    verifier.verify(sign(confirmation(), key))
    assert fetch.calls == [CERT_URL]


def test_cache_is_lru_bounded(key, pem):
    urls = [CERT_URL.replace("abc123", str(i)) for i in range(3)]
    fetch = Fetcher({u: pem for u in urls})
    verifier = SnsVerifier(fetch_pem=fetch, cache_size=2)
    for url in (urls[0], urls[1], urls[0], urls[2], urls[0], urls[1]):
        verifier.verify(sign(notification(SigningCertURL=url), key))
    # urls[1] was least recently used when urls[2] arrived, so only it is fetched again
    assert fetch.calls == [urls[0], urls[1], urls[2], urls[1]]


def test_expired_certificate_is_rejected(key):
    now = datetime.now(timezone.utc)
    expired = make_cert(key, now - timedelta(days=60), now - timedelta(days=1))
    with pytest.raises(SignatureInvalid, match="not valid now"):
        SnsVerifier(fetch_pem=Fetcher({CERT_URL: expired})).verify(sign(notification(), key))


def test_not_yet_valid_certificate_is_rejected(key):
    now = datetime.now(timezone.utc)
    future = make_cert(key, now + timedelta(days=1), now + timedelta(days=60))
    with pytest.raises(SignatureInvalid, match="not valid now"):
        SnsVerifier(fetch_pem=Fetcher({CERT_URL: future})).verify(sign(notification(), key))


@pytest.mark.parametrize("change, reason", [
    ({"SignatureVersion": "3"}, "SignatureVersion"),
    ({"SignatureVersion": None}, "SignatureVersion"),
    ({"Signature": "not base64!"}, "base64"),
    ({"Signature": ""}, "base64|no Signature"),
    ({"SigningCertURL": None}, "no SigningCertURL"),
])
def test_malformed_fields_are_rejected(key, pem, change, reason):
    message = {**sign(notification(), key), **change}
    with pytest.raises(SignatureInvalid, match=reason):
        SnsVerifier(fetch_pem=Fetcher({CERT_URL: pem})).verify(message)


def test_not_a_dict_is_rejected():
    with pytest.raises(SignatureInvalid, match="JSON object"):
        SnsVerifier(fetch_pem=Fetcher({})).verify(["Type"])  # type: ignore[arg-type]


def test_fetch_failure_is_certificate_unavailable(key):
    def broken(url):
        raise OSError("connection reset")

    with pytest.raises(CertificateUnavailable, match="could not be fetched"):
        SnsVerifier(fetch_pem=broken).verify(sign(notification(), key))


def test_not_a_pem_is_rejected(key):
    with pytest.raises(SignatureInvalid, match="not a PEM certificate"):
        SnsVerifier(fetch_pem=Fetcher({CERT_URL: b"<html>hello</html>"})).verify(
            sign(notification(), key))


def test_default_fetcher_downloads_with_httpx(key, pem):
    """The default fetch (httpx) over real HTTP to a local server. verify() only ever
    fetches https URLs on SNS hosts, so the download step is exercised on its own."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            status, body = (200, pem) if self.path.endswith(".pem") else (404, b"no")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        verifier = SnsVerifier()
        assert verifier._download(f"{base}/cert.pem") == pem
        with pytest.raises(CertificateUnavailable, match="HTTP 404"):
            verifier._download(f"{base}/missing")
        verifier.close()
        assert hits == ["/cert.pem", "/missing"]
    finally:
        server.shutdown()
        server.server_close()
