"""/dr over real HTTP, signed as Slack signs, replies checked at the fake Slack."""
from __future__ import annotations

import time

from tests.slack_client import sign


def _texts(blocks: list[dict]) -> str:
    out = []
    for b in blocks:
        if "text" in b and isinstance(b["text"], dict):
            out.append(b["text"]["text"])
        for f in b.get("fields", []) + b.get("elements", []):
            if isinstance(f, dict) and "text" in f:
                out.append(f["text"] if isinstance(f["text"], str) else f["text"].get("text", ""))
    return "\n".join(out)


def test_signed_status_is_acked_then_summary_arrives_with_one_entry_per_service(app, fake_slack):
    r = app.sender.slash_command("status", response_url=fake_slack.response_url("status"))
    assert r.status_code == 200
    (reply,) = fake_slack.wait_for("response_url", 1)
    assert reply.params["response_type"] == "ephemeral"
    sections = [b for b in reply.params["blocks"] if b["type"] == "section"]
    assert len(sections) == 2
    assert sorted(s["text"]["text"].split("*")[1] for s in sections) == ["orders", "payments"]
    assert "SANDBOX" in reply.params["text"]
    assert any(b["type"] == "actions" and b["elements"][0]["action_id"] == "status_refresh"
               for b in reply.params["blocks"])


def test_worst_service_comes_first(app, fake_slack, services):
    services.backends["sim"].estate.inject("orders", "region_down", "us-west-2")
    app.sender.slash_command("status", response_url=fake_slack.response_url("s"))
    (reply,) = fake_slack.wait_for("response_url", 1)
    first = [b for b in reply.params["blocks"] if b["type"] == "section"][0]["text"]["text"]
    assert "*orders*" in first and "NOT READY" in first
    assert "standby region us-west-2 is unhealthy" in first


def test_public_status_posts_in_channel(app, fake_slack):
    app.sender.slash_command("status public", response_url=fake_slack.response_url("p"))
    (reply,) = fake_slack.wait_for("response_url", 1)
    assert reply.params["response_type"] == "in_channel"


def test_status_of_one_service_shows_detail_with_sparkline_and_sources(app, fake_slack):
    app.sender.slash_command("status orders", response_url=fake_slack.response_url("d"))
    (reply,) = fake_slack.wait_for("response_url", 1)
    text = _texts(reply.params["blocks"])
    assert reply.params["blocks"][0]["text"]["text"].startswith("orders")
    assert "Lag, last" in text and any(ch in text for ch in "▁▂▃▄▅▆▇█")
    assert "from `sim`" in text and "observed" in text


def test_bad_missing_and_old_signatures_get_401_and_nothing_happens(app, fake_slack):
    url = fake_slack.response_url("nope")
    bad = app.sender.slash_command("status", response_url=url, signature="v0=" + "0" * 64)
    missing = app.sender.slash_command("status", response_url=url, signed=False)
    old_ts = int(time.time()) - 6 * 60
    old = app.sender.slash_command("status", response_url=url, timestamp=old_ts)
    # a correct signature for another body must not pass either
    forged = app.sender.slash_command("status", response_url=url,
                                      signature=sign("8f742231b10e8888abcd99yyyzzz85a5", str(int(time.time())), b"x"))
    assert [r.status_code for r in (bad, missing, old, forged)] == [401, 401, 401, 401]
    time.sleep(0.5)
    assert fake_slack.calls("response_url") == []
    assert [c for c in fake_slack.calls() if c.method != "auth.test"] == []


def test_ack_does_not_wait_for_slow_sources(app, fake_slack, services):
    services.backends["sim"].estate.inject("orders", "source_hang")  # cut at its 1 s timeout
    t0 = time.monotonic()
    r = app.sender.slash_command("status", response_url=fake_slack.response_url("slow"))
    acked = time.monotonic() - t0
    assert r.status_code == 200
    assert fake_slack.calls("response_url") == []  # the work happens after the ack
    (reply,) = fake_slack.wait_for("response_url", 1, timeout=10)
    assert reply.at - t0 >= 0.9 > acked
    assert "lag timeout" in reply.params["text"] or "no answer within 1s" in _texts(reply.params["blocks"])


def test_unknown_subcommand_and_bad_argument_get_ephemeral_usage(app, fake_slack):
    app.sender.slash_command("frobnicate now", response_url=fake_slack.response_url("u1"))
    app.sender.slash_command("status ordrs", response_url=fake_slack.response_url("u2"))
    replies = sorted(fake_slack.wait_for("response_url", 2), key=lambda c: c.params["_path"])
    assert all(r.params["response_type"] == "ephemeral" for r in replies)
    assert "unknown subcommand 'frobnicate'" in replies[0].params["text"]
    assert "no service named 'ordrs' (did you mean 'orders'?)" in replies[1].params["text"]


def test_refresh_button_replaces_the_message(app, fake_slack):
    r = app.sender.block_action("status_refresh", "orders", user_id="U_BOB",
                                response_url=fake_slack.response_url("refresh"),
                                container={"type": "message", "message_ts": "1.1", "channel_id": "C_INC",
                                           "is_ephemeral": True})
    assert r.status_code == 200
    (reply,) = fake_slack.wait_for("response_url", 1)
    assert reply.params["replace_original"] is True
    assert reply.params["response_type"] == "ephemeral"
    assert reply.params["blocks"][0]["text"]["text"].startswith("orders")


def test_healthz_is_liveness_and_readyz_reports_database(app):
    import httpx

    assert httpx.get(app.url + "/healthz").json() == {"ok": True}
    r = httpx.get(app.url + "/readyz")
    assert r.status_code == 200 and r.json()["database"] == "ok" and r.json()["schema"] == "current"


def test_drills_are_shown_in_the_readers_time_zone(app, fake_slack):
    fake_slack.users["U_TOKYO"] = {"id": "U_TOKYO", "name": "kenji", "real_name": "Kenji", "tz": "Asia/Tokyo"}
    app.sender.slash_command("drills", user_id="U_TOKYO", user_name="kenji",
                             response_url=fake_slack.response_url("tz"))
    (reply,) = fake_slack.wait_for("response_url", 1)
    assert "Times in Asia/Tokyo" in _texts(reply.params["blocks"])
    assert [c.params["user"] for c in fake_slack.calls("users.info")] == ["U_TOKYO"]
