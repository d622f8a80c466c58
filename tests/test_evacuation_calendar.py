"""Region drills on the drill calendar (issue 16), on SQLite and PostgreSQL: a schedule in
``evacuation.drills`` is planned by the scheduler's tick as an occurrence of
``region:REGION`` holding one region drill request; it is announced 24h and 1h ahead and
at its start in its channel (through the outbox, to the fake Slack Web API), approved
ahead by two people, started at its time and run by the evacuation coordinator, or marked
missed and expired; Postpone and Skip are changes approved like any change.

The clock is the test's (a list it sets, read by the services) and stands in the past
(June 2024): sandbox readings carry the real time they were observed, and a reading
observed "after" the clock's now is never stale. Nothing of drbot is mocked."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk import WebClient

from bot import drills
from bot.config import ConfigError, parse_config
from bot.home_view import home_context
from bot.render import Reply
from bot.request_view import message
from bot.store import read_scope
from bot.store.drill_tables import DrillOccurrence, OccurrenceState
from bot.store.evacuation_tables import Evacuation
from bot.store.models import AuditEntry, ChangeRequest, RequestKind, RequestState, Run
from bot.wiring import build_services
from commands.router import click, dispatch, submit
from tests.helpers import ALICE, BOB, CAROL, DAVE, delivered, request_row, rows
from tests.test_evacuation_drill import service
from transports.slack.messenger import SlackMessenger

T = datetime(2024, 6, 4, 10, 0, tzinfo=timezone.utc)
"""A Tuesday, 10:00 UTC: when the quarterly region drill is due."""
H = timedelta(hours=1)
CHANNEL = "C_REGION"
REGION = "region:us-east-1"


def config_text(drills_yaml: str | None = None) -> str:
    drills_yaml = drills_yaml if drills_yaml is not None else f"""
    - name: quarterly
      region: us-east-1
      cron: "0 10 * * tue"
      channel: {CHANNEL}
      on_point: [UDAVE]
      impact: the sandbox estate answers from us-west-2"""
    return f"""regions: [us-east-1, us-west-2]
sources:
  sim: {{kind: sandbox, timeout: 10.0}}
approvals: {{required_approvals: 1, approvers: [UBOB, UCAROL, UDAVE], expires: 30m}}
watch: {{enabled: false}}
digest: {{enabled: false}}
evacuation:
  parallelism: 4
  drills:{drills_yaml}
services:
{service("db1")}{service("api1", "[db1]", drill=True)}{service("edge", "[api1]")}"""


@pytest.fixture
def estate(db_url, fake_slack):
    """Build services on one database, each posting to the fake Slack; stop them all after."""
    built = []

    def build(now: list[datetime], text: str | None = None):
        sv = build_services(parse_config(text or config_text(), "calendar.yaml", {}), db_url=db_url,
                            clock=lambda: now[0], inline_runs=True)
        sv.messenger = SlackMessenger(WebClient(base_url=fake_slack.base_url, token="xoxb-t"), sv.renderer)
        built.append(sv)
        return sv

    try:
        yield build
    finally:
        for sv in built:
            sv.outbox.drain(timeout=10)
            sv.runner.executor.shutdown(wait=True)
            sv.engine.dispose()


def tick_at(sv, now: list[datetime], at: datetime) -> dict[str, list[int]]:
    now[0] = at
    return drills.tick(sv)


def the_occurrence(sv) -> DrillOccurrence:
    (occ,) = rows(sv, DrillOccurrence, DrillOccurrence.service == REGION)
    return occ


def drill_requests(sv) -> list[ChangeRequest]:
    return rows(sv, ChangeRequest, ChangeRequest.kind == RequestKind.EVACUATE)


def in_channel(fake, channel: str = CHANNEL) -> list[dict]:
    return sorted((m for (c, _), m in list(fake.messages.items()) if c == channel), key=lambda m: float(m["ts"]))


def buttons(message: dict) -> list[tuple[str, str]]:
    return [(e["action_id"], e["value"]) for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def planned(sv, now: list[datetime]) -> tuple[DrillOccurrence, ChangeRequest]:
    """T-24h: the tick plans the occurrence and announces it."""
    done = tick_at(sv, now, T - 24 * H)
    occ = the_occurrence(sv)
    assert done["planned"] == done["announced"] == [occ.id], done
    return occ, request_row(sv, occ.request_id)


# -- planned from the config, announced, approved ahead, run at its time ------------------------------

def test_a_region_drill_schedule_is_planned_once_announced_approved_ahead_and_run_at_its_time(estate, fake_slack):
    now = [T - 25 * H]
    sv = estate(now)
    assert drills.tick(sv) == {"planned": [], "announced": [], "started": [], "missed": []}
    assert rows(sv, DrillOccurrence) == [] and drill_requests(sv) == []

    occ, req = planned(sv, now)
    assert (occ.schedule, occ.channel, occ.starts_at, occ.state) == ("quarterly", CHANNEL, T, OccurrenceState.PLANNED)
    assert (req.service, req.scenario, req.occurrence_id, req.channel) == (REGION, "evacuate", occ.id, CHANNEL)
    assert (req.requester, req.required_approvals) == ("drbot", 2)  # the scheduler asks: two people approve
    assert req.not_before == T and req.expires_at == T and req.state is RequestState.PENDING
    (ev,) = rows(sv, Evacuation, Evacuation.request_id == req.id, order=Evacuation.request_id)
    assert ev.direction == "drill"
    # a second tick, and a second replica (or a restart) on the same database, plan nothing more
    assert tick_at(sv, now, T - 24 * H + timedelta(seconds=30))["planned"] == []
    other = estate(now)
    assert drills.tick(other)["planned"] == []
    assert len(rows(sv, DrillOccurrence)) == 1 and [r.id for r in drill_requests(sv)] == [req.id]

    # the announcement is the drill request's message, with Postpone and Skip
    delivered(sv)
    (root,) = in_channel(fake_slack)
    assert root["ts"] == the_occurrence(sv).thread_ts == request_row(sv, req.id).message_ts
    assert buttons(root) == [("cr_approve", str(req.id)), ("cr_deny", str(req.id)), ("cr_cancel", str(req.id)),
                             ("drill_postpone", str(occ.id)), ("drill_skip", str(occ.id))]
    body = json.dumps(root["blocks"])
    assert "Region drill" in root["text"] and "3 services in 3 waves" in body
    assert "schedule _quarterly_" in body and "<@UDAVE>" in body and "answers from us-west-2" in body

    # the calendar and the App Home list it as a region drill
    listed = sv.renderer.text(dispatch(sv, ALICE, "drills"))
    assert f"region drill of us-east-1 · quarterly · request #{req.id}" in listed, listed
    home = sv.renderer.text(Reply("home", home_context(sv, ALICE)))
    assert "region drill of us-east-1 · quarterly" in home, home

    # approved ahead by two people other than the scheduler; nothing starts before its time
    assert click(sv, BOB, "cr_approve", str(req.id)) is None
    assert request_row(sv, req.id).state is RequestState.PENDING
    assert click(sv, CAROL, "cr_approve", str(req.id)) is None
    assert request_row(sv, req.id).state is RequestState.APPROVED
    sv.runner.sweep()
    assert rows(sv, ChangeRequest, ChangeRequest.parent_id == req.id) == [] and rows(sv, Run) == []
    blocks, _ = sv.renderer.blocks(_message(sv, req.id))  # approved: it can still be moved or skipped
    assert buttons({"blocks": blocks}) == [("cr_cancel", str(req.id)), ("drill_postpone", str(occ.id)),
                                           ("drill_skip", str(occ.id))]
    shell = sv.renderer.text(_message(sv, req.id))
    assert "drill postpone evacuate us-east-1 to WHEN" in shell and "on point: UDAVE" in shell, shell

    # T-1h: one reminder in the announcement's thread
    assert tick_at(sv, now, T - H)["announced"] == [occ.id]
    assert tick_at(sv, now, T - H / 2)["announced"] == []
    delivered(sv)
    thread = [m for m in in_channel(fake_slack) if m.get("thread_ts") == root["ts"]]
    assert [m["text"] for m in thread] == ["Region drill of us-east-1 in 1h"]
    assert "region drill of *us-east-1* (3 services in 3 waves)" in json.dumps(thread[0]["blocks"])
    assert "It is approved and will start on time" in json.dumps(thread[0]["blocks"])

    # T: started, and the evacuation coordinator runs it, wave by wave, to the end
    done = tick_at(sv, now, T)
    assert done["started"] == [occ.id] and done["missed"] == []
    assert the_occurrence(sv).state is OccurrenceState.STARTED
    final = request_row(sv, req.id)
    children = rows(sv, ChangeRequest, ChangeRequest.parent_id == req.id)
    assert final.state is RequestState.SUCCEEDED, (final.state_reason, [(c.service, c.state_reason) for c in children])
    assert {c.service: (c.kind, c.state) for c in children} == {
        "db1": (RequestKind.FAILOVER, RequestState.SUCCEEDED), "api1": (RequestKind.DRILL, RequestState.SUCCEEDED),
        "edge": (RequestKind.FAILOVER, RequestState.SUCCEEDED)}
    delivered(sv)
    texts = [m["text"] for m in in_channel(fake_slack) if m.get("thread_ts") == root["ts"]]
    assert texts[:2] == ["Region drill of us-east-1 in 1h", "Region drill of us-east-1 is starting now"], texts
    assert any("Region drill report" in t for t in texts), texts
    assert tick_at(sv, now, T + H)["started"] == []  # started once


def test_a_region_drill_nobody_approved_in_time_is_missed_and_its_request_expires(estate, fake_slack):
    now = [T - 24 * H]
    sv = estate(now)
    occ, req = planned(sv, now)
    assert click(sv, BOB, "cr_approve", str(req.id)) is None  # one of the two approvals
    done = tick_at(sv, now, T)
    assert done["missed"] == [occ.id] and done["started"] == []
    assert the_occurrence(sv).state is OccurrenceState.MISSED
    after = request_row(sv, req.id)
    assert after.state is RequestState.EXPIRED and "drill missed" in after.state_reason
    sv.runner.sweep()
    assert rows(sv, ChangeRequest, ChangeRequest.parent_id == req.id) == []
    delivered(sv)
    root = the_occurrence(sv).thread_ts
    (missed,) = [m for m in in_channel(fake_slack) if m.get("thread_ts") == root and "missed" in m["text"]]
    assert missed["text"].startswith("Region drill of us-east-1 missed: not approved before its start")
    assert "overdue" not in json.dumps(missed["blocks"])  # a region has no drill age of its own
    assert [a.action for a in rows(sv, AuditEntry, AuditEntry.action == "drill.missed")] == ["drill.missed"]


# -- postpone and skip: changes approved like any change ------------------------------------------

def test_a_region_drill_is_postponed_and_skipped_by_changes_approved_like_any(estate):
    now = [T - 24 * H]
    sv = estate(now)
    occ, req = planned(sv, now)
    refused = dispatch(sv, ALICE, "drill postpone evacuate us-east-1 to 2024-06-05 10:00 a freeze")
    assert refused.context["code"] == "not_permitted" and refused.context["p"]["role"] == "drill_calendar"
    unknown = sv.renderer.text(dispatch(sv, BOB, "drill skip evacuate mars gone"))
    assert "mars" in unknown and "us-east-1" in unknown, unknown

    asked = dispatch(sv, BOB, "drill postpone evacuate us-east-1 to 2024-06-05 10:00 a change freeze")
    assert asked.template == "request_created", sv.renderer.text(asked)
    move = asked.context["req"]
    assert (move.kind, move.service, move.occurrence_id) == (RequestKind.DRILL_POSTPONE, REGION, occ.id)
    assert move.required_approvals == 1  # the evacuation's policy (its services'), not the global default
    message = sv.renderer.text(_message(sv, move.id))
    assert "postpone the next planned region drill of us-east-1" in message, message
    assert "someone else has to approve" in sv.renderer.text(click(sv, BOB, "cr_approve", str(move.id)))
    assert request_row(sv, move.id).state is RequestState.PENDING
    assert click(sv, CAROL, "cr_approve", str(move.id)) is None
    later = T + 24 * H
    assert request_row(sv, move.id).state is RequestState.SUCCEEDED
    moved = the_occurrence(sv)
    assert (moved.starts_at, moved.planned_for, moved.state) == (later, T, OccurrenceState.PLANNED)
    drill = request_row(sv, req.id)
    assert drill.not_before == later and drill.expires_at == later and drill.state is RequestState.PENDING
    assert tick_at(sv, now, T)["missed"] == []  # its old time passes: nothing happens

    # skip, through the announcement's button and form
    form = click(sv, DAVE, "drill_skip", str(occ.id))
    assert form.modal and form.template == "modal_drill_skip"
    assert submit(sv, DAVE, "drill_skip", str(occ.id), {"reason": "the region is being rebuilt"}) is None
    (skip,) = rows(sv, ChangeRequest, ChangeRequest.kind == RequestKind.DRILL_SKIP)
    assert skip.service == REGION and skip.requester == "UDAVE"
    assert click(sv, BOB, "cr_approve", str(skip.id)) is None
    assert request_row(sv, skip.id).state is RequestState.SUCCEEDED
    assert the_occurrence(sv).state is OccurrenceState.SKIPPED
    assert request_row(sv, req.id).state is RequestState.CANCELLED
    assert tick_at(sv, now, later) == {"planned": [], "announced": [], "started": [], "missed": []}
    assert "no planned drill" in sv.renderer.text(dispatch(sv, BOB, "drill skip evacuate us-east-1 again"))


def _message(sv, request_id: int) -> Reply:
    with read_scope(sv.engine) as s:
        return message(sv, s, request_id)


# -- ad hoc, refused at planning, config errors -----------------------------------------------------

def test_an_ad_hoc_region_drill_is_on_the_calendar_and_a_refused_plan_is_recorded_once(estate, fake_slack):
    now = [T - 2 * H]
    sv = estate(now, config_text(f"\n    - {{name: quarterly, region: us-east-1, cron: \"0 10 * * tue\", "
                                 f"channel: {CHANNEL}}}"))
    # an evacuation of the region is open: the scheduler's drill cannot be asked for
    real = dispatch(sv, ALICE, "evacuate us-east-1 the region is down")
    assert real.template == "evacuation_created", sv.renderer.text(real)
    assert tick_at(sv, now, T - 2 * H)["planned"] == []
    (occ,) = rows(sv, DrillOccurrence)
    assert occ.state is OccurrenceState.MISSED and occ.request_id is None and "not planned" in occ.note
    assert "evacuation" in occ.note and len(drill_requests(sv)) == 1
    assert tick_at(sv, now, T - H)["planned"] == [] and len(rows(sv, DrillOccurrence)) == 1
    assert [a.action for a in rows(sv, AuditEntry, AuditEntry.action == "drill.refused")] == ["drill.refused"]
    # said once in the schedule's channel, with why and what to do: a drill that silently
    # does not happen would leave a gap in the DR record nobody sees
    delivered(sv)
    (said,) = in_channel(fake_slack)
    assert said["text"].startswith("Region drill of us-east-1 not planned: ") and "evacuation" in said["text"]
    shown = json.dumps(said["blocks"])
    assert "`quarterly`" in shown and "will *not* run" in shown and "drill schedule evacuate us-east-1 WHEN" in shown
    assert "thread_ts" not in said
    dispatch(sv, ALICE, f"cancel {real.context['req'].id}")

    # a person plans one by hand (drill_calendar): an 'adhoc' occurrence, announced at once
    asked = dispatch(sv, BOB, "drill schedule evacuate us-east-1 in 3h game day")
    assert asked.template == "evacuation_created", sv.renderer.text(asked)
    adhoc = rows(sv, DrillOccurrence, DrillOccurrence.schedule == "adhoc")
    assert [(o.schedule, o.state, o.starts_at) for o in adhoc] == [("adhoc", OccurrenceState.PLANNED, now[0] + 3 * H)]
    req = request_row(sv, adhoc[0].request_id)
    assert (req.requester, req.required_approvals, req.reason, req.occurrence_id) == ("UBOB", 1, "game day",
                                                                                     adhoc[0].id)
    assert adhoc[0].announced == "86400"  # due for its first announcement now
    assert adhoc[0].channel == BOB.channel  # no announcements channel configured: where it was asked for
    again = dispatch(sv, BOB, "drill schedule evacuate us-east-1 in 3h")
    assert "already planned" in sv.renderer.text(again)


def test_config_errors_of_region_drill_schedules_name_the_path_and_line():
    bad = config_text("""
    - {name: quarterly, region: us-east-l, cron: "0 10 * * tue"}
    - {name: monthly, region: us-east-1, cron: "0 10 * * tuesday"}
    - {name: weekly, region: us-west-2, cron: "0 10 * * mon", scenario: evacuate}""")
    with pytest.raises(ConfigError) as err:
        parse_config(bad, "calendar.yaml", {})
    said = err.value.render()
    assert "calendar.yaml:11: evacuation.drills[1].cron: '0 10 * * tuesday' is not a cron expression" in said, said
    assert "calendar.yaml:12: evacuation.drills[2].scenario: unknown key" in said, said
    twice = config_text("""
    - {name: quarterly, region: us-east-l, cron: "0 10 * * tue"}
    - {name: quarterly, region: us-west-2, cron: "0 10 * * mon"}""")
    with pytest.raises(ConfigError) as err:
        parse_config(twice, "calendar.yaml", {})
    said = err.value.render()
    assert ("calendar.yaml:10: evacuation.drills[0].region: 'us-east-l' is not one of the regions "
            "(us-east-1, us-west-2) (did you mean 'us-east-1'?)") in said, said
    assert "calendar.yaml:11: evacuation.drills[1].name: region drill 'quarterly' is defined twice" in said, said
