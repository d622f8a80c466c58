"""HTTP probe backend against a real local HTTP server."""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydantic
import pytest

from integrations.base import HEALTH, Target
from integrations.http_probe import HttpProbe

TARGET = Target(service="orders", region="eu-west-1")


class Endpoint:
    """Answers every request with ``status`` after ``delay`` seconds; records requests."""

    def __init__(self):
        self.status, self.delay, self.extra_headers = 200, 0.0, {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                endpoint.requests.append((self.command, self.path, dict(self.headers)))
                if endpoint.delay and endpoint.release.wait(endpoint.delay):
                    return
                body = b"" if self.command == "HEAD" else b"ok"
                self.send_response(endpoint.status)
                for key, value in endpoint.extra_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"


@pytest.fixture
def endpoint():
    ep = Endpoint()
    threading.Thread(target=ep.server.serve_forever, args=(0.05,), daemon=True).start()
    yield ep
    ep.release.set()
    ep.server.shutdown()
    ep.server.server_close()


def probe(url, **opts):
    return HttpProbe("orders-eu-http", HttpProbe.Options.model_validate({"url": url, **opts}))


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/health"


def test_200_is_healthy_with_latency(endpoint):
    reading = probe(endpoint.url, headers={"X-Probe": "drbot"}).check_health(TARGET)
    assert reading.healthy is True
    assert reading.detail.startswith("HTTP 200 in ") and reading.detail.endswith(" ms")
    assert reading.latency_ms is not None and 0 < reading.latency_ms < 2000
    assert reading.observed_at.tzinfo is not None
    method, path, headers = endpoint.requests[-1]
    assert (method, path, headers["X-Probe"]) == ("GET", "/health", "drbot")


def test_503_is_unhealthy(endpoint):
    endpoint.status = 503
    reading = probe(endpoint.url).check_health(TARGET)
    assert reading.healthy is False
    assert reading.detail == "HTTP 503 (expected 200)"


def test_expected_statuses_and_head(endpoint):
    endpoint.status = 204
    reading = probe(endpoint.url, method="HEAD", expect_status=[200, 204]).check_health(TARGET)
    assert reading.healthy is True
    assert endpoint.requests[-1][0] == "HEAD"
    assert probe(endpoint.url).check_health(TARGET).detail == "HTTP 204 (expected 200)"


def test_redirects_are_not_followed(endpoint):
    endpoint.status, endpoint.extra_headers = 302, {"Location": "/login"}
    reading = probe(endpoint.url).check_health(TARGET)
    assert reading.healthy is False and reading.detail == "HTTP 302 (expected 200)"
    assert len(endpoint.requests) == 1


def test_slow_answer_beyond_max_latency_is_unhealthy(endpoint):
    endpoint.delay = 0.3
    reading = probe(endpoint.url, max_latency_ms=100).check_health(TARGET)
    assert reading.healthy is False
    assert reading.latency_ms >= 300
    assert reading.detail.startswith("HTTP 200 in ") and reading.detail.endswith(
        "ms (limit 100 ms)")
    assert probe(endpoint.url, max_latency_ms=5000).check_health(TARGET).healthy is True


def test_refused_connection_is_an_unhealthy_reading():
    reading = probe(closed_port_url(), timeout=1).check_health(TARGET)
    assert reading.healthy is False
    assert "connection refused" in reading.detail and "127.0.0.1:" in reading.detail
    assert reading.latency_ms is None


def test_timeout_is_an_unhealthy_reading_and_bounded(endpoint):
    endpoint.delay = 10
    started = time.monotonic()
    reading = probe(endpoint.url, timeout=0.5).check_health(TARGET)
    elapsed = time.monotonic() - started
    assert reading.healthy is False
    assert reading.detail == "no answer within 0.5 s"
    assert 0.4 <= elapsed < 2.0


def test_check_says_whether_the_url_answers_as_expected(endpoint):
    result = probe(endpoint.url).check()
    assert result.ok is True and "answers: HTTP 200" in result.message
    endpoint.delay = 0.2
    assert probe(endpoint.url, max_latency_ms=10).check().ok is True  # slow is not config
    endpoint.delay, endpoint.status = 0, 404
    missing = probe(endpoint.url).check()
    assert missing.ok is False and "HTTP 404 (expected 200)" in missing.message
    refused = probe(closed_port_url(), timeout=1).check()
    assert refused.ok is False and "connection refused" in refused.message


def test_unresolvable_name_is_an_unhealthy_reading():
    reading = probe("http://drbot-test.invalid/health", timeout=2).check_health(TARGET)
    assert reading.healthy is False
    assert reading.detail.startswith("cannot connect to drbot-test.invalid")


def test_options_and_lazy_client(endpoint):
    p = probe(endpoint.url)
    assert p.kind == "http_probe" and p.capabilities == frozenset({HEALTH})
    assert p.options.expect_status == [200] and p.options.verify_tls is True
    assert p._client is None
    p.check_health(TARGET)
    assert p._client is not None
    p.close()
    assert p._client is None
    for bad in ({"url": "ftp://x"}, {"url": "http://"}, {"url": "health.example.com"},
                {"url": endpoint.url, "method": "POST"},
                {"url": endpoint.url, "expect_status": []},
                {"url": endpoint.url, "max_latency_ms": 0},
                {"url": endpoint.url, "retries": 3}):
        with pytest.raises(pydantic.ValidationError):
            HttpProbe.Options.model_validate(bad)
