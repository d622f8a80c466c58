"""Prometheus lag backend against a real local HTTP server that answers with the
Prometheus HTTP API's JSON shapes (https://prometheus.io/docs/prometheus/latest/querying/api/),
and, where Debian's ``prometheus`` is installed, against the real Prometheus scraping an
exporter that stamps its samples.

The fake answers as Prometheus does (checked against Prometheus 2.42): an instant query's
values carry the evaluation time; ``timestamp(<series selector>)`` answers, per series
without its metric name, the time the sample was taken; ``timestamp()`` of anything
computed (``max(...)``) answers the evaluation time again."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pydantic
import pytest

from bot.collector import Collector, Probe
from bot.readiness import Targets, Verdict, assess_lag
from bot.readings import Status
from integrations.base import LAG, ErrorKind, IntegrationError, LagSample, Target
from integrations.prometheus import PrometheusLag
from tests.helpers import wait_until

TARGET = Target(service="orders")
QUERY = 'pg_replication_lag_seconds{cluster="orders"}'
T = 1714564800.0  # 2024-05-01T12:00:00Z


class FakePrometheus:
    """Routes (path, query or None for any query) -> (status, body, delay seconds);
    records every request."""

    def __init__(self):
        self.routes: dict[tuple[str, str | None], tuple[int, object, float]] = {}
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.release = threading.Event()  # ends pending delays at teardown
        self.gate: threading.Barrier | None = None  # when set, every request waits there first
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append((url.path, params, dict(self.headers)))
                if fake.gate is not None:
                    try:
                        fake.gate.wait()
                    except threading.BrokenBarrierError:
                        self.send_error(500)
                        return
                status, body, delay = fake.routes.get(
                    (url.path, params.get("query")),
                    fake.routes.get((url.path, None), (404, "404 page not found", 0)))
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

    def answer(self, data, path="/api/v1/query", status=200, delay=0.0, query=None):
        self.routes[(path, query)] = (status, {"status": "success", "data": data}, delay)

    def fail(self, status, error_type, error, path="/api/v1/query", query=None):
        body = {"status": "error", "errorType": error_type, "error": error}
        self.routes[(path, query)] = (status, body, 0)

    def samples(self, *values, sampled=T - 15, evaluated=T, query=QUERY, delay=0.0):
        """Series of ``query`` (a selector) sampled at ``sampled`` (one time, or one per
        value), evaluated at ``evaluated``: the query and ``timestamp(query)`` answer."""
        stamps = sampled if isinstance(sampled, (list, tuple)) else [sampled] * len(values)
        self.answer(vector(*values, t=evaluated), query=query, delay=delay)
        self.answer({"resultType": "vector", "result": [
            {"metric": {"replica": f"r{i}"}, "value": [evaluated, f"{s:.3f}"]}
            for i, s in enumerate(stamps)]}, query=f"timestamp({query})", delay=delay)


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
    prom.samples("2.75", sampled=T - 12.5, evaluated=T)
    lag = backend(prom.url + "/", headers={"Authorization": "Bearer s3cret"}, timeout=3)
    reading = lag.read_lag(TARGET)
    assert reading.seconds == 2.75 and reading.replicating is True
    assert reading.observed_at == datetime(2024, 5, 1, 11, 59, 47, 500000, tzinfo=timezone.utc)
    assert reading.history == ()
    (path, params, headers), (path2, params2, headers2) = sorted(prom.requests, key=lambda r: len(r[1]["query"]))
    assert path == "/api/v1/query" and params["query"] == QUERY
    # the sample time is asked at the same evaluation instant as the lag, pinned by drbot
    assert path2 == "/api/v1/query" and params2["query"] == f"timestamp({QUERY})"
    assert params["time"] == params2["time"] and abs(float(params["time"]) - time.time()) < 60
    # plain seconds: Prometheus refuses a fractional duration like "0.5s"
    assert params["timeout"] == params2["timeout"] == "3"
    assert headers["Authorization"] == headers2["Authorization"] == "Bearer s3cret"


def test_milliseconds_and_scalar(prom):
    # timestamp() of a scalar is a parse error in Prometheus: a scalar query needs its own
    prom.answer({"resultType": "scalar", "result": [T, "1500"]}, query=QUERY)
    prom.fail(400, "bad_data", 'invalid parameter "query": 1:11: parse error: expected type instant '
              'vector in call to function "timestamp", got scalar', query=f"timestamp({QUERY})")
    with pytest.raises(IntegrationError) as err:
        backend(prom.url, unit="ms").read_lag(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT
    assert f"timestamp({QUERY})" in str(err.value) and "fix timestamp_query" in str(err.value)

    stamp = "min(timestamp(pg_replication_lag_ms))"
    prom.answer({"resultType": "scalar", "result": [T, f"{T - 5}"]}, query=stamp)
    reading = backend(prom.url, unit="ms", timestamp_query=stamp).read_lag(TARGET)
    assert reading.seconds == 1.5
    assert reading.observed_at == datetime.fromtimestamp(T - 5, timezone.utc)


def test_several_series_take_the_largest_and_say_so(prom):
    prom.samples("1", "9.5", "3", sampled=[T - 10, T - 200, T - 20])
    reading = backend(prom.url).read_lag(TARGET)
    assert reading.seconds == 9.5
    assert 'the largest of 3 series' in reading.detail and 'replica="r1"' in reading.detail
    # a reading is as old as its oldest sample
    assert reading.observed_at == datetime.fromtimestamp(T - 200, timezone.utc)


def test_stopped_value_means_not_replicating(prom):
    prom.samples("4", "-1")
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
    prom.routes[("/api/v1/query", None)] = (200, "<html>Please log in</html>", 0)
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
    prom.samples("5")
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
    (path, params, _), = [r for r in prom.requests if r[0] == "/api/v1/query_range"]
    assert params["query"] == QUERY
    assert params["step"] == "30"
    assert float(params["end"]) - float(params["start"]) == pytest.approx(600)
    assert abs(float(params["end"]) - time.time()) < 60


def test_check_runs_the_query_and_never_raises(prom):
    prom.samples("0.2")
    result = backend(prom.url).check()
    assert result.ok is True and "0.2 s" in result.message
    prom.routes.clear()
    prom.fail(400, "bad_data", "parse error")
    failed = backend(prom.url).check()
    assert failed.ok is False and QUERY in failed.message
    prom.routes[("/api/v1/query", None)] = (200, {"status": "success", "data": {
        "resultType": "vector", "result": [{"metric": {}}]}}, 0)
    malformed = backend(prom.url).check()
    assert malformed.ok is False and "not in the Prometheus API format" in malformed.message


def test_injected_client_is_used_and_created_lazily_otherwise(prom):
    prom.samples("1")
    seen = []
    with httpx.Client(event_hooks={"request": [seen.append]}) as client:
        backend(prom.url, client=client).read_lag(TARGET)
    assert len(seen) == 2  # the query and its sample time
    lag = backend(prom.url)
    assert lag._client is None and lag.kind == "prometheus"
    assert lag.capabilities == frozenset({LAG})
    lag.read_lag(TARGET)
    assert lag._client is not None
    lag.close()
    assert lag._client is None


# -- readings are dated by the sample, so stale_after means what it says -----------------

TARGETS = Targets(rpo=timedelta(minutes=5), rto=timedelta(minutes=15), warning=timedelta(seconds=30),
                  critical=timedelta(minutes=2), stale_after=timedelta(minutes=1), drill_max_age=timedelta(days=30))


def assessed(lag: PrometheusLag, now: datetime):
    """The reading as drbot collects it (bot.collector) and the readiness finding on it."""
    reading = Collector({lag.name: lag}).read([Probe("lag", lag.name, "lag", TARGET)])["lag"]
    return reading, assess_lag(reading, TARGETS, now)


def test_a_sample_stamped_150s_ago_reads_as_unknown_stale(prom):
    now = datetime.fromtimestamp(T, timezone.utc)
    # Prometheus evaluates the query now (T); the exporter stamped its sample 150 s earlier
    prom.samples("2", sampled=T - 150, evaluated=T)
    reading, finding = assessed(backend(prom.url), now)
    assert reading.status is Status.OK and reading.lag_seconds == 2
    assert reading.observed_at == now - timedelta(seconds=150)
    assert (finding.verdict, finding.code) == (Verdict.UNKNOWN, "stale")
    assert finding.params["age"] == timedelta(seconds=150) and finding.params["limit"] == timedelta(minutes=1)

    # the same lag sampled 20 s ago is fresh: READY
    prom.samples("2", sampled=T - 20, evaluated=T)
    reading, finding = assessed(backend(prom.url), now)
    assert reading.observed_at == now - timedelta(seconds=20)
    assert (finding.verdict, finding.code) == (Verdict.READY, "lag_ok")


def test_timestamp_of_a_computed_query_is_refused_with_the_fix(prom):
    query = 'max(pg_replication_lag_seconds{cluster="orders"})'
    prom.answer({"resultType": "vector", "result": [{"metric": {}, "value": [T, "4"]}]}, query=query)
    # Prometheus: timestamp() of an aggregation is the evaluation time, not a sample's
    prom.answer({"resultType": "vector", "result": [{"metric": {}, "value": [T, f"{T:.3f}"]}]},
                query=f"timestamp({query})")
    with pytest.raises(IntegrationError) as err:
        backend(prom.url, query=query).read_lag(TARGET)
    message = str(err.value)
    assert err.value.kind is ErrorKind.PERMANENT
    assert "not a plain series selector" in message and "set timestamp_query" in message
    reading, finding = assessed(backend(prom.url, query=query), datetime.fromtimestamp(T, timezone.utc))
    assert reading.status is Status.FAILED and finding.verdict is Verdict.UNKNOWN  # never healthy

    stamp = 'min(timestamp(pg_replication_lag_seconds{cluster="orders"}))'
    prom.answer({"resultType": "vector", "result": [{"metric": {}, "value": [T, f"{T - 90:.3f}"]}]}, query=stamp)
    reading = backend(prom.url, query=query, timestamp_query=stamp).read_lag(TARGET)
    assert reading.seconds == 4 and reading.observed_at == datetime.fromtimestamp(T - 90, timezone.utc)
    asked = {p["query"]: p for _, p, _ in prom.requests}
    assert asked[stamp] == {"query": stamp, "time": asked[query]["time"], "timeout": "5"}


def test_no_sample_time_is_permanent(prom):
    prom.answer(vector("1"), query=QUERY)
    prom.answer({"resultType": "vector", "result": []}, query=f"timestamp({QUERY})")
    with pytest.raises(IntegrationError) as err:
        backend(prom.url).read_lag(TARGET)
    assert err.value.kind is ErrorKind.PERMANENT and "when the lag was sampled is unknown" in str(err.value)


def test_both_queries_share_one_timeout(prom):
    prom.samples("1")
    prom.answer({"resultType": "vector", "result": [{"metric": {}, "value": [T, f"{T - 5:.3f}"]}]},
                query=f"timestamp({QUERY})", delay=3.0)  # the lag answers at once, its sample time late
    started = time.monotonic()
    with pytest.raises(IntegrationError) as err:
        backend(prom.url, timeout=0.6).read_lag(TARGET)
    assert err.value.kind is ErrorKind.TRANSIENT and "within 0.6 s" in str(err.value)
    assert time.monotonic() - started < 2.0  # cut at the timeout, not at the late answer
    assert sorted(p["query"] for _, p, _ in prom.requests) == [QUERY, f"timestamp({QUERY})"]


def test_the_lag_and_its_sample_time_are_asked_together_at_one_evaluation_time(prom):
    """Each answer waits until the other request has arrived too: asked one after the other,
    the first would wait in vain and the fake would answer 500."""
    prom.samples("3", sampled=T - 10)
    both = threading.Barrier(2, timeout=3)
    prom.gate = both
    reading = backend(prom.url, timeout=5).read_lag(TARGET)
    assert reading.seconds == 3 and reading.observed_at == datetime.fromtimestamp(T - 10, timezone.utc)
    assert not both.broken
    times = {p["time"] for _, p, _ in prom.requests}
    assert len(prom.requests) == 2 and len(times) == 1, prom.requests


def test_history_is_asked_alongside_up_to_the_same_evaluation_time(prom):
    prom.samples("5")
    prom.answer({"resultType": "matrix", "result": []}, path="/api/v1/query_range")
    backend(prom.url, history_window=600, history_step=60).read_lag(TARGET, history=True)
    by_path = {path: params for path, params, _ in prom.requests if "timestamp" not in params["query"]}
    assert by_path["/api/v1/query_range"]["end"] == by_path["/api/v1/query"]["time"]


# -- the real Prometheus (Debian's package), where installed -------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed")
def test_real_prometheus_dates_a_reading_by_the_exporters_timestamp(tmp_path):
    stamped = time.time() - 150
    exposition = (f'# TYPE pg_replication_lag_seconds gauge\n'
                  f'pg_replication_lag_seconds{{cluster="orders"}} 2.5 {int(stamped * 1000)}\n'
                  f'# TYPE fresh_lag_seconds gauge\nfresh_lag_seconds{{cluster="orders"}} 1.5\n').encode()

    class Exporter(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(exposition)))
            self.end_headers()
            self.wfile.write(exposition)

        def log_message(self, *args):
            pass

    exporter = ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, args=(0.05,), daemon=True).start()
    port = _free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: exporter\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.server_address[1]}']}}]\n")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        def scraped():
            try:
                got = httpx.get(f"{url}/api/v1/query", params={"query": "fresh_lag_seconds"}, timeout=1).json()
                return got["data"]["result"] and httpx.get(
                    f"{url}/api/v1/query", params={"query": QUERY_REAL}, timeout=1).json()["data"]["result"]
            except (httpx.HTTPError, ValueError, KeyError):
                return None

        wait_until("Prometheus to scrape the exporter", scraped, timeout=60, interval=0.2,
                   details=lambda: (tmp_path / "prometheus.log").read_text()[-2000:])
        lag = PrometheusLag("orders-lag", PrometheusLag.Options.model_validate(
            {"url": url, "query": QUERY_REAL, "timeout": 5}))
        reading, finding = assessed(lag, datetime.now(timezone.utc))
        assert reading.status is Status.OK and reading.lag_seconds == 2.5
        assert abs(reading.observed_at.timestamp() - int(stamped * 1000) / 1000) < 0.002
        assert (finding.verdict, finding.code) == (Verdict.UNKNOWN, "stale")

        fresh = PrometheusLag("fresh", PrometheusLag.Options.model_validate(
            {"url": url, "query": 'fresh_lag_seconds{cluster="orders"}', "timeout": 5}))
        reading, finding = assessed(fresh, datetime.now(timezone.utc))
        assert (finding.verdict, finding.code) == (Verdict.READY, "lag_ok")

        computed = PrometheusLag("max", PrometheusLag.Options.model_validate(
            {"url": url, "query": f"max({QUERY_REAL})", "timeout": 5}))
        with pytest.raises(IntegrationError) as err:
            computed.read_lag(TARGET)
        assert "not a plain series selector" in str(err.value)
        fixed = PrometheusLag("max", PrometheusLag.Options.model_validate(
            {"url": url, "query": f"max({QUERY_REAL})", "timestamp_query": f"min(timestamp({QUERY_REAL}))",
             "timeout": 0.5}))  # a sub-second timeout is accepted by Prometheus
        assert abs(fixed.read_lag(TARGET).observed_at.timestamp() - int(stamped * 1000) / 1000) < 0.002
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        exporter.shutdown()
        exporter.server_close()


QUERY_REAL = 'pg_replication_lag_seconds{cluster="orders"}'


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
    with pytest.raises(pydantic.ValidationError):
        PrometheusLag.Options.model_validate({"url": "http://p", "query": QUERY, "timestamp_query": ""})
    options = PrometheusLag.Options.model_validate({"url": "http://p:9090/", "query": QUERY})
    assert options.url == "http://p:9090" and options.unit == "s"
