"""Several replication streams per service (issue 14): `services[].replication` with a unit
each (seconds, messages, objects, bytes), loaded with clear errors and warnings; each
stream judged on its own in `/dr status` (the service's verdict the worst, the stream
named); the pre-flight of a change refuses a stream over critical, naming it; measurements
keep reading the seconds stream; S3 Cross-Region Replication metrics read from moto's
CloudWatch, one source serving three streams."""
from __future__ import annotations

import io
import json
from pathlib import Path
from datetime import datetime, timedelta, timezone

import pytest

from bot.check import check_config
from bot.collector import Collector, Probe
from bot.config import ConfigError, load_config, parse_config
from bot.measurements import lag_before_cutover
from bot.preflight import run_preflight
from bot.readiness import Verdict
from bot.readings import Status
from bot.wiring import build_backends, build_services
from commands.router import dispatch
from transports.cli import main
from integrations.aws.cloudwatch import CloudWatchLag
from integrations.aws.session import make_client
from integrations.base import LAG, Backend, BackendOptions, IntegrationError, LagReading, Target
from integrations.prometheus import PrometheusLag
from tests.app_server import running_app
from tests.helpers import ALICE, the_request
from tests.moto_fixture import moto_endpoint, reset_moto  # noqa: F401
from tests.test_integration_prometheus import T, prom  # noqa: F401

ESTATE = """\
regions: [us-east-1, us-west-2]
sources:
  sim:
    kind: sandbox
    timeout: 1.0
    profiles:
      orders: {lag: 5, jitter: 0}
      orders/events: {lag: 200, jitter: 0}
      orders/files: {lag: 20, jitter: 0}
  prom: {kind: prometheus, url: "http://127.0.0.1:9"}
approvals: {required_approvals: 1, approvers: [UBOB]}
services:
  - name: orders
    rpo: 1m
    rto: 15m
    active: us-east-1
    standby: us-west-2
    replication:
      - {name: orders-db, source: sim, unit: seconds, warning: 10s, critical: 30s}
      - {name: orders-events, source: sim, target: events, unit: messages, warning: 1000, critical: 5000}
      - {name: orders-files, source: sim, target: files, unit: objects, warning: 100, critical: 1000}
    health: {us-east-1: sim, us-west-2: sim}
    traffic: {source: sim}
    runbooks:
      failover:
        - {name: move, action: traffic.shift}
"""


def problems(text: str) -> list:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "drbot.yaml", {})
    return e.value.problems


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


# -- config ------------------------------------------------------------------------------


def test_streams_load_in_their_units_and_the_first_seconds_stream_is_the_lag():
    svc = parse_config(ESTATE, "drbot.yaml", {}).config.services[0]
    assert [(s.name, s.unit, s.target) for s in svc.streams()] == [
        ("orders-db", "seconds", None), ("orders-events", "messages", "events"), ("orders-files", "objects", "files")]
    assert [s.limits(svc.rpo) for s in svc.streams()] == [(10.0, 30.0), (1000.0, 5000.0), (100.0, 1000.0)]
    assert svc.seconds_stream().name == "orders-db"
    assert (svc.lag.source, svc.thresholds()) == ("sim", (timedelta(seconds=10), timedelta(seconds=30)))


def test_the_lag_shorthand_is_one_seconds_stream_named_lag_with_the_rpo_defaults():
    text = ESTATE.split("    replication:")[0] + "    lag: {source: sim}\n"
    svc = parse_config(text, "drbot.yaml", {}).config.services[0]
    (stream,) = svc.streams()
    assert (stream.name, stream.unit, stream.source) == ("lag", "seconds", "sim")
    assert stream.limits(svc.rpo) == (24.0, 48.0)  # 40% and 80% of the 1m RPO


def test_seconds_streams_default_to_shares_of_the_rpo():
    text = ESTATE.replace("{name: orders-db, source: sim, unit: seconds, warning: 10s, critical: 30s}",
                          "{name: orders-db, source: sim}")
    svc = parse_config(text, "drbot.yaml", {}).config.services[0]
    assert svc.streams()[0].limits(svc.rpo) == (24.0, 48.0)


def test_lag_and_replication_together_is_an_error_naming_both_keys():
    text = ESTATE.replace("    replication:\n", "    lag: {source: sim}\n    replication:\n")
    (p,) = problems(text)
    assert p.path == "services[0]" and "both lag and replication are set" in p.message, p


def test_other_units_need_both_thresholds_with_path_and_line():
    text = ESTATE.replace("unit: messages, warning: 1000, critical: 5000", "unit: messages")
    found = {(p.path, p.line, p.message) for p in problems(text)}
    line = line_of(text, "name: orders-events")
    assert found == {
        ("services[0].replication[1].warning", line,
         "is required for a stream in messages (only seconds streams default to a share of the RPO): "
         "write a number of messages"),
        ("services[0].replication[1].critical", line,
         "is required for a stream in messages (only seconds streams default to a share of the RPO): "
         "write a number of messages")}, found


def test_thresholds_are_read_in_the_streams_unit():
    text = ESTATE.replace("warning: 1000, critical: 5000", "warning: 10s, critical: 5000")
    (p,) = problems(text)
    assert p.path == "services[0].replication[1].warning"
    assert p.message.startswith("'10s' is not a number of messages"), p.message
    text = ESTATE.replace("warning: 10s, critical: 30s", "warning: 10, critical: 30s")
    (p,) = problems(text)
    assert (p.path, p.message) == ("services[0].replication[0].warning", "10 has no unit (use 10s or 10m)")


def test_stream_errors_name_the_stream_path_and_line():
    text = (ESTATE.replace("name: orders-files, source: sim,", "name: orders-db, source: simm,")
            .replace("warning: 100, critical: 1000", "warning: 1000, critical: 100")
            .replace("unit: objects", "unit: files"))
    found = {(p.path, p.message) for p in problems(text)}
    assert ("services[0].replication[2].unit",
            "'files' is not one of: 'seconds', 'messages', 'objects' or 'bytes'") in found, found
    text = (ESTATE.replace("name: orders-files, source: sim,", "name: orders-db, source: simm,")
            .replace("warning: 100, critical: 1000", "warning: 1000, critical: 100"))
    found = {(p.path, p.message, p.line) for p in problems(text)}
    line = line_of(text, "source: simm")
    assert found == {
        ("services[0].replication[2].name", "stream 'orders-db' is defined twice in orders", line),
        ("services[0].replication[2].source", "no source named 'simm' (did you mean 'sim'?)", line),
        ("services[0].replication[2].warning", "warning must be below critical", line)}, found


def test_a_prometheus_stream_needs_a_query_as_target_or_on_the_source():
    text = ESTATE.replace("source: sim, target: events,", "source: prom,")
    (p,) = problems(text)
    assert p.path == "services[0].replication[1].target"
    assert "has no query: set target to the PromQL of this stream" in p.message
    ok = ESTATE.replace("source: sim, target: events,", "source: prom, target: 'sum(kafka_consumergroup_lag)',")
    assert parse_config(ok, "drbot.yaml", {}).config.services[0].streams()[1].source == "prom"


def test_critical_above_the_rpo_loads_with_a_warning_printed_by_check_config():
    text = ESTATE.replace("warning: 10s, critical: 30s", "warning: 30s, critical: 2m")
    loaded = parse_config(text, "drbot.yaml", {})
    (note,) = [n for n in loaded.notes if "replication" in n.path]
    assert note.path == "services[0].replication[0].critical" and note.line == line_of(text, "critical: 2m")
    assert note.message.startswith("WARNING: critical 2m is above the RPO of 1m"), note.message
    out = io.StringIO()
    check_config(loaded, {k: v for k, v in build_backends(loaded).items() if k == "sim"}, out)
    assert f"note: drbot.yaml:{note.line}: services[0].replication[0].critical: WARNING: critical 2m" in out.getvalue()
    # the lag shorthand too: no longer an error
    short = ESTATE.split("    replication:")[0] + "    lag: {source: sim, critical: 90s}\n"
    (note,) = parse_config(short, "drbot.yaml", {}).notes
    assert note.path == "services[0].lag.critical" and "critical 1m30s is above the RPO of 1m" in note.message


# -- readiness and /dr status --------------------------------------------------------------


@pytest.fixture
def sv(tmp_path):
    services = build_services(parse_config(ESTATE, "drbot.yaml", {}), db_url=f"sqlite:///{tmp_path}/s.db")
    yield services
    services.engine.dispose()


def estate_of(sv):
    return sv.backends["sim"].estate


def assessment(sv):
    (a,) = sv.status.report("orders", fresh=True).assessments
    return a


def test_each_stream_has_its_verdict_and_the_worst_names_the_stream(sv):
    a = assessment(sv)
    assert [(s.spec.name, s.reading.lag_seconds, s.reading.unit, s.verdict) for s in a.streams] == [
        ("orders-db", 5.0, "seconds", Verdict.READY), ("orders-events", 200.0, "messages", Verdict.READY),
        ("orders-files", 20.0, "objects", Verdict.READY)]
    assert a.lag.lag_seconds == 5.0  # the service's lag: its seconds stream

    estate_of(sv).set_lag("orders", 6000, target="events")
    estate_of(sv).set_lag("orders", 150, target="files")
    a = assessment(sv)
    assert a.verdict is Verdict.NOT_READY
    assert [s.verdict for s in a.streams] == [Verdict.READY, Verdict.NOT_READY, Verdict.AT_RISK]
    reasons = [sv.renderer.reason(f) for f in a.reasons]
    assert reasons[0] == "stream orders-events: 6,000 messages is past critical 5,000 messages", reasons
    assert "stream orders-files: 150 objects is past warning 100 objects (critical 1,000 objects)" in reasons

    estate_of(sv).set_lag("orders", None, target="events")  # it recovers
    estate_of(sv).set_lag("orders", 45, target=None)  # the database stream in seconds, past critical 30s
    a = assessment(sv)
    assert [s.verdict for s in a.streams] == [Verdict.NOT_READY, Verdict.READY, Verdict.AT_RISK]
    assert sv.renderer.reason(a.reasons[0]) == "stream orders-db: lag 45s is past critical 30s (RPO 1m)"


def test_a_stream_that_cannot_be_read_is_unknown_and_named(sv, monkeypatch):
    estate_of(sv).inject("orders", "replication_stopped")
    a = assessment(sv)
    assert {s.spec.name: s.verdict for s in a.streams} == {n: Verdict.NOT_READY
                                                           for n in ("orders-db", "orders-events", "orders-files")}
    estate_of(sv).clear("orders")
    estate_of(sv).inject("orders", "source_error")
    a = assessment(sv)
    assert all(s.verdict is Verdict.UNKNOWN for s in a.streams)
    assert any(sv.renderer.reason(f).startswith("stream orders-events unknown: sim failed") for f in a.reasons)


def test_status_over_http_shows_every_stream_with_its_verdict_and_history(sv, fake_slack):
    estate_of(sv).set_lag("orders", 6000, target="events")
    with running_app(sv, fake_slack) as app:
        r = app.sender.slash_command("status orders", response_url=fake_slack.response_url("detail"))
        assert r.status_code == 200
        (detail,) = fake_slack.wait_for("response_url", 1, timeout=15)
        r = app.sender.slash_command("status", response_url=fake_slack.response_url("summary"))
        assert r.status_code == 200
        (_, summary) = fake_slack.wait_for("response_url", 2, timeout=15)
    text = json.dumps(detail.blocks, ensure_ascii=False)
    assert "orders · NOT READY" in text
    assert "*orders-events* (messages, `sim`): 6,000 messages · NOT READY · warning 1,000 messages, " \
           "critical 5,000 messages" in text, text
    assert "*orders-db* (seconds, `sim`): 5s · READY" in text and "*orders-files* (objects, `sim`): 20 objects · READY" in text
    assert "min 20 objects, max 20 objects" in text  # each stream its own history
    assert "stream orders-events: 6,000 messages is past critical 5,000 messages" in text
    summary_text = json.dumps(summary.blocks, ensure_ascii=False)
    assert "streams: orders-db 5s READY · orders-events 6,000 messages NOT READY · orders-files 20 objects READY" \
        in summary_text, summary_text


def test_status_text_lists_the_streams(sv):
    estate_of(sv).set_lag("orders", 2000, target="events")
    text = sv.renderer.text(dispatch(sv, ALICE, "status orders"))
    assert "stream orders-events (messages, sim): 2,000 messages · AT RISK (warning 1,000 messages, " \
           "critical 5,000 messages)" in text, text
    summary = sv.renderer.text(dispatch(sv, ALICE, "status"))
    assert "streams: orders-db 5s READY · orders-events 2,000 messages AT RISK · orders-files 20 objects READY" \
        in summary, summary


# -- pre-flight and measurements -------------------------------------------------------------


def test_preflight_refuses_a_stream_over_critical_naming_it_and_passes_once_it_recovers(sv):
    svc = sv.config.service("orders")
    estate_of(sv).set_lag("orders", 6000, target="events")
    pre = run_preflight(sv, svc, "us-east-1", "us-west-2", [])
    assert not pre.ok
    (failed,) = pre.failures
    assert (failed.code, failed.params["stream"], failed.params["value"]) == ("stream", "orders-events", 6000.0)

    text = sv.renderer.text(dispatch(sv, ALICE, "plan orders"))
    assert "a run would not start now" in text
    assert "✗ stream orders-events: 6,000 messages against critical 5,000 messages: over critical, wait until " \
           "it is below 5,000 messages" in text, text
    assert "✓ stream orders-files: 20 objects against critical 1,000 objects" in text
    dispatch(sv, ALICE, "failover orders kafka is behind")  # the request shows the approvers the same
    stored = json.loads(the_request(sv, "orders").preflight)
    assert [(c["code"], c["params"]["stream"]) for c in stored["checks"] if c["ok"] is not True] == [
        ("stream", "orders-events")]

    estate_of(sv).set_lag("orders", None, target="events")
    assert run_preflight(sv, svc, "us-east-1", "us-west-2", []).ok


def test_preflight_blocks_on_a_stream_that_cannot_be_read(sv):
    estate_of(sv).inject("orders", "source_error")
    pre = run_preflight(sv, sv.config.service("orders"), "us-east-1", "us-west-2", [])
    streams = [c for c in pre.checks if c.code == "stream"]
    assert [c.ok for c in streams] == [None, None, None]
    assert "injected source error" in streams[1].params["why"]


def test_measurements_read_the_seconds_stream(sv):
    estate_of(sv).set_lag("orders", 7)
    estate_of(sv).set_lag("orders", 9000, target="events")
    lag = lag_before_cutover(sv, sv.config.service("orders"))
    assert (lag["status"], lag["seconds"], lag["source"]) == ("ok", 7.0, "sim")


# -- S3 Cross-Region Replication through CloudWatch (moto's server) -----------------------------

S3_DIMS = {"SourceBucket": "orders-files-use1", "DestinationBucket": "orders-files-usw2", "RuleId": "all"}


def test_s3_replication_metrics_one_source_three_streams(moto_endpoint):  # noqa: F811
    reset_moto(moto_endpoint)
    cw = make_client("cloudwatch", region="us-east-1", timeout=5, endpoint_url=moto_endpoint)
    at = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=1)
    dims = [{"Name": k, "Value": v} for k, v in S3_DIMS.items()]
    cw.put_metric_data(Namespace="AWS/S3", MetricData=[
        {"MetricName": "ReplicationLatency", "Dimensions": dims, "Timestamp": at, "Value": 42.0, "Unit": "Seconds"},
        {"MetricName": "OperationsPendingReplication", "Dimensions": dims, "Timestamp": at, "Value": 1234.0,
         "Unit": "Count"},
        {"MetricName": "BytesPendingReplication", "Dimensions": dims, "Timestamp": at, "Value": 5.0e9,
         "Unit": "Bytes"}])
    options = CloudWatchLag.Options.model_validate({"region": "us-east-1", "endpoint_url": moto_endpoint,
                                                    "namespace": "AWS/S3", "dimensions": S3_DIMS})
    s3 = CloudWatchLag("orders-s3-crr", options, client=cw)
    latency = s3.read_lag(Target("orders", query="ReplicationLatency"))
    pending = s3.read_lag(Target("orders", query="OperationsPendingReplication", unit="objects"), history=True)
    volume = s3.read_lag(Target("orders", query="BytesPendingReplication", unit="bytes"))
    assert (latency.seconds, latency.unit) == (42.0, "seconds")
    assert (pending.seconds, pending.unit, [p.seconds for p in pending.history]) == (1234.0, "objects", [1234.0])
    assert (volume.seconds, volume.unit) == (5.0e9, "bytes")
    assert "OperationsPendingReplication" in pending.detail and pending.detail.endswith("1234 objects")
    # unit ms converts seconds streams only: a count is never divided by 1000
    ms = CloudWatchLag("ms", options.model_copy(update={"unit": "ms"}), client=cw)
    assert ms.read_lag(Target("orders", query="OperationsPendingReplication", unit="objects")).seconds == 1234.0
    assert ms.read_lag(Target("orders", query="ReplicationLatency")).seconds == pytest.approx(0.042)
    # a source without a metric serves only streams that name theirs
    assert CloudWatchLag.lag_target_problem(options, None, "objects").startswith("the cloudwatch source has no metric")
    assert CloudWatchLag.lag_target_problem(options, "BytesPendingReplication", "bytes") is None


# -- Kafka consumer-group lag through the prometheus source (messages) ----------------------------

KAFKA = 'kafka_consumergroup_lag{consumergroup="mm2-orders", topic="orders.events"}'


def test_kafka_consumer_group_lag_is_read_in_messages_from_a_prometheus_stream_target(prom):  # noqa: F811
    options = PrometheusLag.Options.model_validate({"url": prom.url, "unit": "ms"})  # no query: streams bring theirs
    kafka = PrometheusLag("kafka", options)
    prom.samples(4200, 6100, query=KAFKA)  # two partitions: the largest is the reading
    reading = kafka.read_lag(Target("orders", query=KAFKA, unit="messages"))
    assert (reading.seconds, reading.unit) == (6100.0, "messages")  # never divided as milliseconds
    assert reading.detail.startswith("6100 messages; the largest of 2 series")
    assert PrometheusLag.lag_target_problem(options, None, "messages").startswith("the prometheus source has no query")
    prom.answer({"resultType": "scalar", "result": [T, "1"]}, query="1")
    assert kafka.check().ok  # a source without a query: check proves the URL and headers
    with pytest.raises(IntegrationError, match="no query to run"):
        kafka.read_lag(Target("orders"))


# -- the worked examples of docs/config.md load -------------------------------------------------

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "deploy" / "examples").glob("*.yaml"))


def test_there_are_the_three_worked_examples():
    assert [p.name for p in EXAMPLES] == ["aws-arc-global-accelerator.yaml", "cloudflare-r2-job.yaml",
                                          "kubernetes-kafka-redis.yaml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_worked_example_loads_and_is_the_one_in_the_docs(path):
    loaded = load_config(path, environ={})
    streams = [s for svc in loaded.config.services for s in svc.streams()]
    assert len(streams) >= 3 and len({s.unit for s in streams}) >= 2, streams  # several units each
    body = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#"))
    docs = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text(encoding="utf-8")
    assert body.strip() in docs, f"docs/config.md does not show {path.name} as it is"


class SecondsOnly(Backend):
    """A lag source that knows only seconds (as rds, aurora_global, elasticache_global do)."""

    kind = "seconds_only"
    Options = BackendOptions
    capabilities = frozenset({LAG})

    def read_lag(self, target, history=False):
        return LagReading(3.0, datetime.now(timezone.utc))


def test_a_source_that_reads_only_seconds_is_no_stream_in_messages():
    collector = Collector({"cache": SecondsOnly("cache", BackendOptions())})
    try:
        readings = collector.read([Probe(("s",), "cache", "lag", Target("orders", unit="seconds")),
                                   Probe(("m",), "cache", "lag", Target("orders", unit="messages"))])
    finally:
        collector.close()
    assert readings[("s",)].ok and readings[("s",)].lag_seconds == 3.0
    bad = readings[("m",)]
    assert bad.status is Status.FAILED
    assert bad.error.startswith("cache reads lag in seconds, not in messages: give this stream unit: seconds")


def test_detail_of_a_service_with_streams_only_is_valid_block_kit(tmp_path):
    text = ESTATE.replace("    health: {us-east-1: sim, us-west-2: sim}\n    traffic: {source: sim}\n", "")
    text = text.replace("        - {name: move, action: traffic.shift}", "        - {name: move, action: traffic.shift, source: sim}")
    sv = build_services(parse_config(text, "drbot.yaml", {}), db_url=f"sqlite:///{tmp_path}/d.db")
    try:
        blocks, fallback = sv.renderer.blocks(dispatch(sv, ALICE, "status orders"))
    finally:
        sv.engine.dispose()
    (context,) = [b for b in blocks if b["type"] == "context" and b["elements"][0]["text"].startswith("stream ")]
    # all streams in one element: Slack refuses a context block of more than 10 elements
    assert [line.split(":")[0] for line in context["elements"][0]["text"].split("\n")] == [
        "stream orders-db from `sim`", "stream orders-events from `sim`", "stream orders-files from `sim`"]
    assert len(context["elements"]) <= 10
    assert fallback.startswith("orders: ")


def test_status_json_lists_every_stream_with_its_unit_and_verdict(tmp_path, monkeypatch, capsys):
    """`drbot status --json` (dashboards, CI) carries each stream, not only the service's lag."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/d.db")
    path = tmp_path / "drbot.yaml"
    path.write_text(ESTATE.replace("orders/events: {lag: 200,", "orders/events: {lag: 2000,"))
    main(["status", "orders", "--json", "--config", str(path)])
    (svc,) = json.loads(capsys.readouterr().out)["services"]
    streams = {st["name"]: st for st in svc["streams"]}
    assert list(streams) == ["orders-db", "orders-events", "orders-files"]
    assert (streams["orders-events"]["unit"], streams["orders-events"]["warning"],
            streams["orders-events"]["critical"]) == ("messages", 1000, 5000)
    assert streams["orders-events"]["reading"]["lag_seconds"] == 2000 and streams["orders-events"]["verdict"] == "AT_RISK"
    assert streams["orders-files"]["reading"]["unit"] == "objects" and streams["orders-files"]["verdict"] == "READY"
    assert "orders-events" in streams["orders-events"]["text"]
