"""Tests of the test harness itself: the fake Slack API, the signed sender, the databases."""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select, text

from tests.postgres import postgres_error, temporary_schema
from tests.slack_client import SlackSender

SECRET = "test-signing-secret"
BLOCKS = [{"type": "section", "block_id": "b1", "text": {"type": "mrkdwn", "text": "*hi*"}}]


@pytest.fixture
def client(fake_slack):
    return WebClient(token="xoxb-test", base_url=fake_slack.base_url)


# -- FakeSlack ---------------------------------------------------------------------------


def test_post_message_is_recorded_and_gets_a_ts(fake_slack, client):
    resp = client.chat_postMessage(channel="C1", text="hello", blocks=BLOCKS)

    assert resp["ok"] and resp["channel"] == "C1" and resp["ts"]
    [call] = fake_slack.calls("chat.postMessage")
    assert call.params["channel"] == "C1" and call.params["text"] == "hello"
    assert call.blocks == BLOCKS
    assert call.headers["authorization"] == "Bearer xoxb-test"
    assert fake_slack.message("C1", resp["ts"])["blocks"] == BLOCKS


def test_two_posts_get_distinct_increasing_ts(client):
    first = client.chat_postMessage(channel="C1", text="a")["ts"]
    second = client.chat_postMessage(channel="C1", text="b")["ts"]
    assert float(second) > float(first)


def test_form_encoded_json_fields_are_kept_and_parsed(fake_slack, client):
    client.api_call("chat.postEphemeral", params={"channel": "C1", "user": "U1", "blocks": json.dumps(BLOCKS)})
    [call] = fake_slack.calls("chat.postEphemeral")
    assert isinstance(call.params["blocks"], str)
    assert call.parsed("blocks") == BLOCKS


def test_update_changes_the_stored_message_and_unknown_ts_fails(fake_slack, client):
    ts = client.chat_postMessage(channel="C1", text="pending")["ts"]
    client.chat_update(channel="C1", ts=ts, text="approved")
    assert fake_slack.message("C1", ts)["text"] == "approved"
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C1", ts="1.000001", text="x")
    assert err.value.response["error"] == "message_not_found"


def test_missing_token_is_not_authed(fake_slack):
    with pytest.raises(SlackApiError) as err:
        WebClient(base_url=fake_slack.base_url).chat_postMessage(channel="C1", text="x")
    assert err.value.response["error"] == "not_authed"


def test_configured_users_usergroups_and_channels(fake_slack, client):
    fake_slack.usergroups["S_ONCALL"] = ["U_ALICE", "U_BOB"]
    fake_slack.users["U_BOB"] = {"real_name": "Bob Builder", "tz": "America/New_York"}

    assert client.usergroups_users_list(usergroup="S_ONCALL")["users"] == ["U_ALICE", "U_BOB"]
    with pytest.raises(SlackApiError, match="no_such_subteam"):
        client.usergroups_users_list(usergroup="S_NOPE")
    assert client.users_info(user="U_BOB")["user"]["tz"] == "America/New_York"
    assert client.users_info(user="U_ALICE")["user"]["name"] == "alice"
    assert client.auth_test()["user_id"] == "UBOT"
    channel = client.conversations_create(name="inc-42")["channel"]
    assert channel["id"].startswith("C") and channel["name"] == "inc-42"
    with pytest.raises(SlackApiError, match="name_taken"):
        client.conversations_create(name="inc-42")


def test_rate_limit_without_retry_handler_raises(fake_slack, client):
    fake_slack.rate_limit("chat.postMessage", times=1, retry_after=7)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"
    assert err.value.response["error"] == "ratelimited"
    assert client.chat_postMessage(channel="C1", text="x")["ok"]  # only the next call was limited


def test_rate_limit_with_retry_handler_succeeds_after_waiting(fake_slack):
    client = WebClient(token="xoxb-test", base_url=fake_slack.base_url,
                       retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    fake_slack.rate_limit("chat.postMessage", times=1, retry_after=1)

    assert client.chat_postMessage(channel="C1", text="x")["ok"]
    limited, retried = fake_slack.calls("chat.postMessage")
    assert (limited.status, retried.status) == (429, 200)
    assert retried.at - limited.at >= 1


def test_response_url_posts_are_recorded(fake_slack):
    from slack_sdk.webhook import WebhookClient

    resp = WebhookClient(fake_slack.response_url("cmd1")).send(text="done", response_type="ephemeral")
    assert (resp.status_code, resp.body) == (200, "ok")
    [call] = fake_slack.wait_for("response_url")
    assert call.params == {"text": "done", "response_type": "ephemeral", "_path": "/response/cmd1"}


def test_files_upload_v2_round_trips_content(fake_slack, client):
    resp = client.files_upload_v2(channel="C1", content="drill report", filename="report.md", title="Report")
    assert resp["file"]["title"] == "Report"
    assert fake_slack.uploads[resp["file"]["id"]] == b"drill report"


def test_wait_for_times_out_with_what_was_received(fake_slack, client):
    client.chat_postMessage(channel="C1", text="x")
    with pytest.raises(AssertionError, match="chat.postMessage"):
        fake_slack.wait_for("chat.update", timeout=0.1)


# -- SlackSender -------------------------------------------------------------------------


@pytest.fixture
def captured(fake_slack):
    """A SlackSender pointed at the fake, which records the exact bytes and headers sent."""
    with SlackSender(fake_slack.root_url, SECRET, path="/response/events") as sender:
        def last():
            return fake_slack.wait_for("response_url")[-1]
        yield sender, last


def test_signature_verifies_and_tampering_is_detected(captured):
    sender, last = captured
    sender.slash_command("status")
    call = last()
    verifier = SignatureVerifier(SECRET)

    assert verifier.is_valid_request(call.body, call.headers)
    assert not verifier.is_valid_request(call.body.replace(b"status", b"failover"), call.headers)
    assert not SignatureVerifier("other-secret").is_valid_request(call.body, call.headers)


def test_stale_timestamp_and_unsigned_requests(captured):
    sender, last = captured
    sender.slash_command("status", timestamp=int(time.time()) - 600)
    assert not SignatureVerifier(SECRET).is_valid_request(last().body, last().headers)
    sender.slash_command("status", signed=False)
    assert "x-slack-signature" not in last().headers


def test_slash_command_and_block_action_shapes(captured):
    sender, last = captured
    sender.slash_command("status", user_id="U_BOB", user_name="bob")
    form = {k: v[0] for k, v in parse_qs(last().body.decode()).items()}
    assert form["command"] == "/dr" and form["text"] == "status" and form["user_id"] == "U_BOB"

    message = {"ts": "1700000000.000100", "blocks": [
        {"type": "actions", "block_id": "approval", "elements": [{"type": "button", "action_id": "approve"}]}]}
    sender.block_action("approve", "CR-1", user_id="U_BOB", message=message)
    payload = json.loads(parse_qs(last().body.decode())["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["container"]["message_ts"] == "1700000000.000100"
    assert payload["actions"][0] | {"action_ts": None} == {
        "action_id": "approve", "block_id": "approval", "value": "CR-1", "type": "button",
        "text": {"type": "plain_text", "text": "CR-1", "emoji": True}, "action_ts": None}
    assert payload["user"]["username"] == "bob"


@pytest.fixture
def bolt_app(fake_slack):
    """A real slack_bolt app in HTTP mode, served by wsgiref, talking to the fake."""
    app = App(signing_secret=SECRET, client=WebClient(token="xoxb-test", base_url=fake_slack.base_url))

    @app.command("/dr")
    def on_command(ack, respond, command):
        ack()
        respond(f"you said {command['text']}")

    @app.action("approve")
    def on_approve(ack, body, client):
        ack()
        client.chat_update(channel=body["channel"]["id"], ts=body["container"]["message_ts"],
                           text=f"approved by {body['user']['id']}: {body['actions'][0]['value']}")

    @app.view("reason")
    def on_view(ack, view):
        ack()
        app.client.chat_postMessage(channel="C_LOG", text=view["state"]["values"]["b"]["a"]["value"])

    @app.event("app_mention")
    def on_mention(event, say):
        say(f"hi <@{event['user']}>")

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, SlackRequestHandler(app), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_bolt_accepts_what_the_sender_sends(fake_slack, bolt_app):
    with SlackSender(bolt_app, SECRET) as slack:
        assert slack.url_verification("abc").json() == {"challenge": "abc"}
        assert slack.slash_command("status", signed=False).status_code == 401
        assert slack.slash_command("status", signature="v0=" + "0" * 64).status_code == 401

        assert slack.slash_command("status", response_url=fake_slack.response_url("c1")).status_code == 200
        assert fake_slack.wait_for("response_url")[0].params["text"] == "you said status"

        ts = WebClient(token="xoxb-test", base_url=fake_slack.base_url).chat_postMessage(
            channel="C_INC", text="approve?")["ts"]
        assert slack.block_action("approve", "CR-1", "U_BOB", message=fake_slack.message("C_INC", ts)).status_code == 200
        fake_slack.wait_for("chat.update")
        assert fake_slack.message("C_INC", ts)["text"] == "approved by U_BOB: CR-1"

        assert slack.view_submission("reason", {"b": {"a": "db lag"}}, "U_ALICE").status_code == 200
        assert fake_slack.wait_for("chat.postMessage", 2)[-1].params["text"] == "db lag"

        event = {"type": "app_mention", "user": "U_ALICE", "text": "<@UBOT> hi", "channel": "C_INC",
                 "ts": "1700000000.000200", "event_ts": "1700000000.000200"}
        assert slack.event(event).status_code == 200
        assert fake_slack.wait_for("chat.postMessage", 3)[-1].params["text"] == "hi <@U_ALICE>"


# -- databases ---------------------------------------------------------------------------


def test_db_url_round_trips_a_row(db_url):
    metadata = MetaData()
    probe = Table("harness_probe", metadata, Column("id", Integer, primary_key=True), Column("name", String(50)))
    engine = create_engine(db_url)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(probe).values(id=1, name="us-east-1"))
        with engine.connect() as conn:
            assert conn.execute(select(probe.c.name)).scalar_one() == "us-east-1"
            if engine.dialect.name == "postgresql":
                schema = conn.execute(text("SELECT current_schema()")).scalar_one()
                assert schema.startswith("drbot_t_")
                found = conn.execute(text(
                    "SELECT table_schema FROM information_schema.tables WHERE table_name = 'harness_probe'"
                )).scalars().all()
                assert schema in found and "public" not in found
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_temporary_schema_is_dropped_afterwards(pg_url):
    with temporary_schema(pg_url) as url:
        engine = create_engine(url)
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        engine.dispose()
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM information_schema.schemata WHERE schema_name = :s"),
                            {"s": schema}).scalar_one()
    engine.dispose()
    assert left == 0


def test_unreachable_postgres_gives_a_reason():
    assert "127.0.0.1" in postgres_error("postgresql+psycopg://postgres@127.0.0.1:1/test")
