"""bot.render with the real templates: Block Kit JSON is valid and every interpolated value
is escaped for Slack mrkdwn and JSON; text for the shell is not escaped."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import jinja2
import pytest

from bot.readiness import DrillInfo, Targets, assess
from bot.readings import Reading, Status
from bot.render import MAX_BLOCKS, Raw, Renderer, Reply, mention, mrkdwn_escape, sparkline
from bot.status import Report
from integrations.base import LagSample

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
EVIL = '<!channel> & "quotes" \\ backslash <https://evil|click>'
EVIL_ESCAPED = '&lt;!channel&gt; &amp; "quotes" \\ backslash &lt;https://evil|click&gt;'
TARGETS = Targets(rpo=timedelta(minutes=5), rto=timedelta(minutes=15), warning=timedelta(minutes=2),
                  critical=timedelta(minutes=4), stale_after=timedelta(minutes=10),
                  drill_max_age=timedelta(days=30))
ACTIVE, STANDBY = "us-east-1", "us-west-2"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer("UTC")


def ok_lag(seconds: float = 30.0, history: tuple[LagSample, ...] = ()) -> Reading:
    return Reading("lag", "db-lag", Status.OK, observed_at=NOW - timedelta(seconds=20), lag_seconds=seconds,
                   replicating=True, history=history, elapsed_ms=12.4)


def healthy(detail: str = "200 OK") -> Reading:
    return Reading("health", "probe", Status.OK, observed_at=NOW - timedelta(seconds=5), healthy=True,
                   detail=detail, elapsed_ms=3.0)


GOOD_DRILL = DrillInfo(NOW - timedelta(days=2), True, rto_s=420.0, rpo_s=3.0, request_id=4)


def assessment(service: str = "orders", lag: Reading | None = None, health: dict | None = None,
               drill: DrillInfo | None = GOOD_DRILL):
    return assess(service, "critical", ACTIVE, STANDBY, TARGETS, lag or ok_lag(),
                  {ACTIVE: healthy(), STANDBY: healthy()} if health is None else health, drill, NOW)


def evil_assessment():
    """Text from outside (a backend's error, an endpoint's answer) in every free-text slot."""
    lag = Reading("lag", "db-lag", Status.FAILED, error=EVIL, elapsed_ms=7.0)
    health = {
        ACTIVE: Reading("health", "probe", Status.OK, observed_at=NOW, healthy=False, detail=EVIL),
        STANDBY: Reading("health", "probe", Status.OK, observed_at=NOW, healthy=False, detail=EVIL),
    }
    return assessment(lag=lag, health=health)


def report(*assessments, elapsed_ms: float = 12.0) -> Report:
    return Report(list(assessments), NOW, elapsed_ms)


def summary(rep: Report) -> Reply:
    return Reply("status_summary", {"report": rep, "command": "/dr"})


def detail(rep: Report) -> Reply:
    return Reply("status_detail", {"report": rep, "command": "/dr"})


def all_texts(node) -> list[str]:
    """Every string value in a JSON structure."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in all_texts(v)]
    if isinstance(node, list):
        return [s for v in node for s in all_texts(v)]
    return [node] if isinstance(node, str) else []


# -- escaping ----------------------------------------------------------------------------

@pytest.mark.parametrize("reply", [summary, detail], ids=["status_summary", "status_detail"])
def test_block_kit_escapes_text_from_outside(renderer, reply):
    blocks, fallback = renderer.blocks(reply(report(evil_assessment())))
    raw = json.dumps({"blocks": blocks, "text": fallback}, ensure_ascii=False)
    texts = all_texts(blocks) + [fallback]
    joined = "\n".join(texts)
    assert EVIL_ESCAPED in joined                    # the whole string, escaped once, backslash and quotes intact
    assert "&lt;!channel&gt;" in joined
    assert "&lt;https://evil|click&gt;" in joined
    assert "<!channel>" not in raw
    assert "<https://evil" not in raw
    assert "&amp;lt;" not in raw                     # never escaped twice
    if reply is detail:
        assert EVIL_ESCAPED in fallback              # the detail's notification text carries reasons, escaped
    for text in texts:                               # no raw & < > anywhere
        assert "<" not in text and ">" not in text
        assert "&" not in text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")


def test_block_kit_is_valid_json_with_the_expected_shape(renderer):
    blocks, fallback = renderer.blocks(summary(report(evil_assessment(), assessment("payments"))))
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context", "actions"]
    assert fallback == "DR readiness: orders NOT READY, payments READY"
    assert "*orders*" in blocks[1]["text"]["text"]
    assert "*payments*" in blocks[2]["text"]["text"]


@pytest.mark.parametrize("reply", [summary, detail], ids=["status_summary", "status_detail"])
def test_text_rendering_is_not_escaped(renderer, reply):
    out = renderer.text(reply(report(evil_assessment())))
    assert EVIL in out
    assert "&lt;" not in out and "&amp;" not in out
    assert out.endswith("\n") and not out.endswith("\n\n")


def test_summary_text_lists_reasons_worst_first(renderer):
    out = renderer.text(summary(report(evil_assessment())))
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("- ")]
    assert lines[0].startswith(f"- standby region {STANDBY} is unhealthy")
    assert lines[1].startswith("- replication lag unknown: db-lag failed: ")
    assert lines[2].startswith(f"- active region {ACTIVE} is unhealthy")
    assert out.startswith("DR readiness\n")
    assert "NOT READY  orders (critical)" in out
    assert "Checked 12:00:00 UTC in 12 ms." in out


def test_times_are_shown_in_the_configured_zone():
    blocks, _ = Renderer("Europe/Berlin").blocks(summary(report(assessment())))
    assert "Checked 14:00:00 CEST" in blocks[-2]["elements"][0]["text"]


def test_mention_of_a_user_id_is_raw_and_of_anything_else_is_escaped(renderer):
    assert mention("U123ABC") == "<@U123ABC>" and isinstance(mention("U123ABC"), Raw)
    assert mention("S0GROUP1") == "<!subteam^S0GROUP1>"
    assert not isinstance(mention("<!here>"), Raw)
    template = renderer.json_env.from_string('{"text": "{{ a|mention }} and {{ b|mention }} and {{ c|mention }}"}')
    out = json.loads(template.render(a="U123ABC", b="<!here>", c="S0GROUP1"))
    assert out["text"] == "<@U123ABC> and &lt;!here&gt; and <!subteam^S0GROUP1>"


def test_raw_value_is_still_json_escaped(renderer):
    template = renderer.json_env.from_string('{"text": "{{ v }}"}')
    out = template.render(v=Raw('<@U1> "q" \\ \n'))
    assert json.loads(out)["text"] == '<@U1> "q" \\ \n'


def test_each_interpolation_is_escaped_for_json(renderer):
    template = renderer.json_env.from_string('{"text": "{{ v }}|{{ n }}|{{ nothing }}"}')
    out = json.loads(template.render(v='a "b" \\ c\nd\t<e>', n=3, nothing=None))
    assert out["text"] == 'a "b" \\ c\nd\t&lt;e&gt;|3|'


def test_constant_expressions_are_escaped_like_values(renderer):
    """Jinja folds constant expressions at compile time; they must still be escaped for
    mrkdwn and JSON, not HTML-escaped (``&#34;``) or printed as ``None``."""
    template = renderer.json_env.from_string(
        '{"text": "{{ none }}|{{ \'say "hi" & <b>\' }}|{{ 1 if false else none }}|{{ \'a\\\\b\' }}"}')
    out = json.loads(template.render())
    assert out["text"] == '|say "hi" &amp; &lt;b&gt;||a\\b'


def test_mention_in_text_is_a_plain_handle(renderer):
    assert renderer.text_env.from_string("{{ u|mention }}").render(u="U123ABC") == "@U123ABC"


def test_mrkdwn_escape_escapes_ampersand_first():
    assert mrkdwn_escape("a & <b> &lt;") == "a &amp; &lt;b&gt; &amp;lt;"


# -- every finding renders ----------------------------------------------------------------

SCENARIOS = {
    "ready": dict(drill=DrillInfo(NOW - timedelta(days=2), True, rto_s=420.0, rpo_s=3.0, request_id=4)),
    "warning": dict(lag=ok_lag(150)),
    "critical_past_rpo": dict(lag=ok_lag(400)),
    "stopped": dict(lag=Reading("lag", "db-lag", Status.OK, observed_at=NOW, replicating=False, detail="-1")),
    "timeout": dict(lag=Reading("lag", "db-lag", Status.TIMEOUT, error="no answer within 5 s")),
    "stale_by_age": dict(lag=Reading("lag", "db-lag", Status.OK, observed_at=NOW - timedelta(hours=1),
                                     lag_seconds=1.0, replicating=True)),
    "stale_status": dict(lag=Reading("lag", "db-lag", Status.STALE, error="cached")),
    "missing_health": dict(health={ACTIVE: healthy()}),
    "drill_failed": dict(drill=DrillInfo(NOW - timedelta(days=1), False)),
    "drill_overdue": dict(drill=DrillInfo(NOW - timedelta(days=40), True)),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_finding_renders_in_both_forms(renderer, name):
    a = assessment(**SCENARIOS[name])
    rep = report(a)
    for reply in (summary(rep), detail(rep)):
        text = renderer.text(reply)
        blocks, fallback = renderer.blocks(reply)
        assert blocks and fallback
        for f in a.reasons:
            sentence = renderer.reason(f)
            assert sentence and sentence != f.code     # a real sentence, not the bare code
            assert sentence in text


def test_reason_sentences(renderer):
    a = assessment(lag=ok_lag(400))
    assert renderer.reason(a.reasons[0]) == \
        "lag 6m 40s is past critical 4m and past the RPO of 5m: a failover now loses data"
    a = assessment(lag=Reading("lag", "db-lag", Status.OK, observed_at=NOW - timedelta(hours=1),
                               lag_seconds=1.0, replicating=True))
    assert renderer.reason(a.reasons[0]) == "replication lag reading is stale: 1h old, limit 10m (db-lag)"
    a = assessment(lag=Reading("lag", "db-lag", Status.STALE, observed_at=None, error="cached"))
    assert renderer.reason(a.reasons[0]).startswith("replication lag reading is stale:")


def test_detail_shows_lag_history_sparkline(renderer):
    history = tuple(LagSample(NOW - timedelta(minutes=7 - k), float(k)) for k in range(8))
    a = assessment(lag=ok_lag(7.0, history=history),
                   drill=DrillInfo(NOW - timedelta(days=2), True, rto_s=420.0, rpo_s=3.0))
    blocks, fallback = renderer.blocks(detail(report(a)))
    texts = "\n".join(all_texts(blocks))
    assert "`▁▂▃▄▅▆▇█`" in texts
    assert "*Lag, last 7m*" in texts
    assert "min 0s · max 7s" in texts
    assert fallback == "orders: READY"
    assert blocks[-1]["elements"][0]["value"] == "orders"
    text = renderer.text(detail(report(a)))
    assert "lag history ▁▂▃▄▅▆▇█  min 0s, max 7s" in text
    assert "last drill: passed 2d ago, RTO 7m, RPO 3s" in text


def test_sandbox_is_said_in_blocks_and_text(renderer):
    a = assessment(lag=Reading("lag", "demo", Status.OK, observed_at=NOW, lag_seconds=5.0, replicating=True,
                               sandbox=True))
    blocks, fallback = renderer.blocks(summary(report(a)))
    assert "SANDBOX" in fallback
    assert "SANDBOX" in blocks[0]["text"]["text"]
    assert "SANDBOX" in renderer.text(summary(report(a)))


# -- sparkline ---------------------------------------------------------------------------

def test_sparkline_known_series():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([7, 0]) == "█▁"


def test_sparkline_flat_series_is_all_low_bars():
    assert sparkline([5, 5, 5, 5]) == "▁▁▁▁"
    assert sparkline([3]) == "▁"


def test_sparkline_empty_and_gaps():
    assert sparkline([]) == ""
    assert sparkline([None, None]) == ""
    assert sparkline([0, None, 7]) == "▁█"


# -- the 50-block limit ------------------------------------------------------------------

def test_more_than_fifty_blocks_are_cut_with_a_final_context(renderer):
    many = [assessment(f"svc-{i:02d}") for i in range(60)]
    raw_count = 1 + 60 + 2  # header, one section each, context, actions
    blocks, fallback = renderer.blocks(summary(report(*many)))
    assert len(blocks) == MAX_BLOCKS == 50
    assert blocks[-1]["type"] == "context"
    assert blocks[-1]["elements"][0]["text"] == \
        f"{raw_count - (MAX_BLOCKS - 1)} more blocks not shown (Slack allows 50)."
    assert "svc-47" in blocks[-2]["text"]["text"]   # the first 49 blocks are kept in order
    assert "svc-59" in fallback                      # the fallback text is not cut


def test_exactly_fifty_blocks_are_not_cut(renderer):
    many = [assessment(f"svc-{i:02d}") for i in range(47)]  # 1 + 47 + 2 = 50
    blocks, _ = renderer.blocks(summary(report(*many)))
    assert len(blocks) == 50
    assert blocks[-1]["type"] == "actions"


# -- usage and error ---------------------------------------------------------------------

def usage_reply(error: str | None = None, topic: str | None = None) -> Reply:
    """The usage reply as commands.router.usage builds it (context: command, error, subcommands
    from commands/table.py)."""
    from commands.router import usage
    return usage(SimpleNamespace(command="/dr"), error=error, topic=topic)


def test_usage_with_an_error_shows_the_error(renderer):
    reply = usage_reply(error="unknown subcommand <frob>")
    assert set(reply.context) == {"command", "error", "subcommands"}
    blocks, fallback = renderer.blocks(reply)
    assert blocks[0]["text"]["text"] == ":warning: unknown subcommand &lt;frob&gt;"
    assert fallback.startswith("unknown subcommand &lt;frob&gt;. Usage: /dr status")
    assert any("`/dr help [SUBCOMMAND]`" in b["text"]["text"] for b in blocks)
    text = renderer.text(reply)
    assert text.startswith("! unknown subcommand <frob>\n")
    assert "/dr status [SERVICE] [public]" in text


def test_usage_without_an_error_has_no_warning(renderer):
    reply = usage_reply(topic="help")
    assert [sub.name for sub in reply.context["subcommands"]] == ["help"]
    blocks, fallback = renderer.blocks(reply)
    assert len(blocks) == 1
    assert ":warning:" not in json.dumps(blocks)
    assert fallback == "Usage: /dr help [SUBCOMMAND]"
    assert not renderer.text(reply).startswith("!")


def test_error_template(renderer):
    blocks, fallback = renderer.blocks(Reply("error", {"message": "db <down> & out", "ref": "E-42"}))
    assert fallback == "drbot could not do that: db &lt;down&gt; &amp; out"
    assert "`E-42`" in blocks[0]["text"]["text"]
    assert renderer.text(Reply("error", {"message": "db <down>", "ref": "E-42"})).startswith(
        "x drbot could not do that: db <down>\n")


# -- StrictUndefined ---------------------------------------------------------------------

def test_missing_context_variable_raises_in_blocks(renderer):
    with pytest.raises(jinja2.UndefinedError, match="command"):
        renderer.blocks(Reply("status_summary", {"report": report(assessment())}))


def test_missing_context_variable_raises_in_text(renderer):
    with pytest.raises(jinja2.UndefinedError, match="error"):
        renderer.text(Reply("usage", {"command": "/dr", "subcommands": usage_reply().context["subcommands"]}))


def test_missing_template_raises(renderer):
    with pytest.raises(jinja2.TemplateNotFound):
        renderer.text(Reply("no_such_template"))


def test_invalid_json_from_a_template_fails_loudly(tmp_path):
    (tmp_path / "blocks").mkdir()
    (tmp_path / "_reasons.j2").write_text("{% macro reason(f) %}{{ f }}{% endmacro %}")
    (tmp_path / "blocks" / "broken.json.j2").write_text('{"text": "{{ v }}", }')
    with pytest.raises(ValueError, match="blocks/broken.json.j2 rendered invalid JSON"):
        Renderer("UTC", templates=tmp_path).blocks(Reply("broken", {"v": "x"}))


# -- filters -------------------------------------------------------------------------------

def test_ago_and_when(renderer):
    assert renderer.ago(NOW - timedelta(minutes=5), NOW) == "5m ago"
    assert renderer.ago(NOW + timedelta(minutes=5), NOW) == "in 5m"
    assert renderer.ago(None, NOW) == "never"
    assert renderer.when(None) == "-"
    assert renderer.when(NOW, "%H:%M %Z") == "12:00 UTC"
