"""Prometheus lag backend against a real local HTTP server that answers with the
Prometheus HTTP API's JSON shapes (https://prometheus.io/docs/prometheus/latest/querying/api/)."""
from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pydantic
import pytest

from integrations.base import LAG, ErrorKind, IntegrationError, LagSample, Target
from integrations.prometheus import PrometheusLag

TARGET = Target(service="orders")
QUERY = 'pg_replication_lag_seconds{cluster="orders"}'
T = 1714564800.0  # 2024-05-01T12:00:00Z


class FakePrometheus:
    """Routes path -> (status, body, delay seconds); records every request."""

    def __init__(self):
        self.routes: dict[str, tuple[int, object, float]] = {}
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.release = threading.Event()  # ends pending delays at teardown
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append((url.path, params, dict(self.headers)))
                status, body, delay = fake.routes.get(url.path, (404, "404 page not found", 0))
                if delay and fake.release.wait(delay):
                    return
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, data, path="/api/v1/query", status=200, delay=0.0):
        self.routes[path] = (status, {"status": "success", "data": data}, delay)

    def fail(self, status, error_type, error, path="/api/v1/query"):
        body = {"status": "error", "errorType": error_type, "error": error}
        self.routes[path] = (status, body, 0)


@pytest.fixture
def prom():
    fake = FakePrometheus()
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.release.set()
    fake.server.shutdown()
    fake.server.server_close()


def backend(url, client=None, **opts):
    options = PrometheusLag.Options.model_validate({"url": url, "query": QUERY, **opts})
    return PrometheusLag("orders-lag", options, client=client)


def vector(*values, t=T):
    return {"resultType": "vector", "result": [
        {"metric": {"__name__": "pg_replication_lag_seconds", "replica": f"r{i}"},
         "value": [t, v]} for i, v in enumerate(values)]}


def test_instant_vector_is_read_in_seconds(prom):
    prom.answer(vector("2.75"))
    lag = backend(prom.url + "/", headers={"Authorization": "Bearer s3cret"}, timeout=3)
    reading = lag.read_lag(TARGET)
    assert reading.seconds == 2.75 and reading.replicating is True
    assert reading.observed_at == datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert reading.history == ()
    path, params, headers = prom.requests[-1]
    assert path == "/api/v1/query" and params["query"] == QUERY
    assert params["timeout"] == "3s"
    assert headers["Authorization"] == "Bearer s3cret"


def test_milliseconds_and_scalar(prom):
    prom.answer({"resultType": "scalar", "result": [T, "1500"]})
    assert backend(prom.url, unit="ms").read_lag(TARGET).seconds == 1.5


def test_several_series_take_the_largest_and_say_so(prom):
    prom.answer(vector("1", "9.5", "3"))
    reading = backend(prom.url).read_lag(TARGET)
    assert reading.seconds == 9.5
    assert 'the largest of 3 series' in reading.detail and 'replica="r1"' in reading.detail


def test_stopped_value_means_not_replicating(prom):
    prom.answer(vector("4", "-1"))
    reading = backend(prom.url, stopped_value=-1).read_lag(TARGET)
    assert reading.replicating is False and reading.seconds is None
    assert 'replica="r1"' in reading.detail and "not running" in reading.detail


def test_empty_result_is_permanent(prom):
    prom.answer({"resultType": "vector", "result": []})
    with pytest.raises(IntegrationError) as err:
        backend(prom.url).read_lag(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT
    assert "returned no series" in str(err.value) and QUERY in str(err.value)


@pytest.mark.parametrize("value", ["NaN", "+Inf"])
def test_non_numbers_are_errors(prom, value):
    prom.answer(vector("1", value))
    with pytest.raises(IntegrationError) as err:
        backend(prom.url).read_lag(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT and "not a lag" in str(err.value)


def test_bad_query_is_permanent_and_names_the_query(prom):
    prom.fail(400, "bad_data", 'invalid parameter "query": 1:27: parse error: unexpected "}"')
    with pytest.raises(IntegrationError) as err:
        backend(prom.url).read_lag(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT
    message = str(err.value)
    assert QUERY in message and "bad_data" in message and "parse error" in message


@pytest.mark.parametrize("status,error_type,kind", [
    (503, "unavailable", ErrorKind.TRANSIENT),
    (503, "timeout", ErrorKind.TRANSIENT),
    (500, "internal", ErrorKind.TRANSIENT),
    (422, "execution", ErrorKind.PERMANENT),
    (401, "unauthorized", ErrorKind.NOT_PERMITTED),
])
def test_error_answers_map_to_kinds(prom, status, error_type, kind):
    prom.fail(status, error_type, "something went wrong")
    with pytest.raises(IntegrationError) as err:
        backend(prom.url).read_lag(TARGET)
    assert err.value.kind is kind
    assert f"HTTP {status}" in str(err.value)


def test_wrong_url_and_non_json_are_permanent(prom):
    with pytest.raises(IntegrationError) as err:
        backend(prom.url + "/not-prometheus").read_lag(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT and "HTTP 404" in str(err.value)
    prom.routes["/api/v1/query"] = (200, "<html>Please log in</html>", 0)
    with pytest.raises(IntegrationError) as err:
        backend(prom.url).read_lag(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT and "Prometheus API JSON" in str(err.value)


def test_slow_server_is_transient_and_bounded(prom):
    prom.answer(vector("1"), delay=10)
    lag = backend(prom.url, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(IntegrationError) as err:
        lag.read_lag(TARGET)
    elapsed = time.monotonic() - started
    assert err.value.kind is ErrorKind.TRANSIENT
    assert "within 0.5 s" in str(err.value)
    assert 0.4 <= elapsed < 2.0


def test_refused_connection_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(IntegrationError) as err:
        backend(f"http://127.0.0.1:{port}", timeout=1).read_lag(TARGET)
    assert err.value.kind is ErrorKind.TRANSIENT and "cannot connect" in str(err.value)


def test_history_uses_a_range_query(prom):
    prom.answer(vector("5"))
    prom.answer({"resultType": "matrix", "result": [
        {"metric": {"replica": "a"}, "values": [[T - 60, "3"], [T - 120, "1"], [T, "NaN"]]},
        {"metric": {"replica": "b"}, "values": [[T - 120, "2"], [T - 60, "-1"], [T, "4"]]},
    ]}, path="/api/v1/query_range")
    reading = backend(prom.url, history_window=600, history_step=30,
                      stopped_value=-1).read_lag(TARGET, history=True)
    assert reading.seconds == 5
    at = lambda t: datetime.fromtimestamp(t, timezone.utc)  # noqa: E731
    assert reading.history == (LagSample(at(T - 120), 2.0), LagSample(at(T - 60), 3.0),
                               LagSample(at(T), 4.0))
    path, params, _ = prom.requests[-1]
    assert path == "/api/v1/query_range" and params["query"] == QUERY
    assert params["step"] == "30"
    assert float(params["end"]) - float(params["start"]) == pytest.approx(600)
    assert abs(float(params["end"]) - time.time()) < 60


def test_check_runs_the_query_and_never_raises(prom):
    prom.answer(vector("0.2"))
    result = backend(prom.url).check()
    assert result.ok is True and "0.2 s" in result.message
    prom.fail(400, "bad_data", "parse error")
    failed = backend(prom.url).check()
    assert failed.ok is False and QUERY in failed.message
    prom.routes["/api/v1/query"] = (200, {"status": "success", "data": {
        "resultType": "vector", "result": [{"metric": {}}]}}, 0)
    malformed = backend(prom.url).check()
    assert malformed.ok is False and "not in the Prometheus API format" in malformed.message


def test_injected_client_is_used_and_created_lazily_otherwise(prom):
    prom.answer(vector("1"))
    seen = []
    with httpx.Client(event_hooks={"request": [seen.append]}) as client:
        backend(prom.url, client=client).read_lag(TARGET)
    assert len(seen) == 1
    lag = backend(prom.url)
    assert lag._client is None and lag.kind == "prometheus"
    assert lag.capabilities == frozenset({LAG})
    lag.read_lag(TARGET)
    assert lag._client is not None
    lag.close()
    assert lag._client is None


def test_options_are_validated():
    with pytest.raises(pydantic.ValidationError):
        PrometheusLag.Options.model_validate({"url": "prometheus:9090", "query": QUERY})
    with pytest.raises(pydantic.ValidationError):
        PrometheusLag.Options.model_validate({"url": "https://", "query": QUERY})
    with pytest.raises(pydantic.ValidationError):
        PrometheusLag.Options.model_validate({"url": "http://p", "query": QUERY, "x": 1})
    with pytest.raises(pydantic.ValidationError):
        PrometheusLag.Options.model_validate({"url": "http://p", "query": QUERY,
                                              "history_window": 86400 * 30,
                                              "history_step": 1})
    options = PrometheusLag.Options.model_validate({"url": "http://p:9090/", "query": QUERY})
    assert options.url == "http://p:9090" and options.unit == "s"
