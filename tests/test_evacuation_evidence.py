"""A region evacuation in the evidence pack (issue 16), on SQLite and PostgreSQL: one
record for the evacuation, its services' runs as children (each a record of its own that
names the evacuation and its wave), in the JSON, the Markdown and the index."""
from __future__ import annotations

import json
from datetime import timedelta

from bot.config import parse_config
from bot.evidence import collect, index, write
from bot.store.models import ChangeRequest, RequestKind, RequestState
from bot.wiring import build_services
from commands.router import click, dispatch
from tests.helpers import ALICE, BOB, rows, wait_until
from tests.test_evacuation_drill import config_text


def test_an_evacuation_is_one_record_with_its_services_runs_as_children(db_url, tmp_path):
    sv = build_services(parse_config(config_text(), "evacuate.yaml", {}), db_url=db_url)
    try:
        start = sv.clock() - timedelta(minutes=1)
        rid = dispatch(sv, ALICE, "evacuate us-east-1 the region is down").context["req"].id
        assert click(sv, BOB, "cr_approve", str(rid)) is None
        wait_until("ended", lambda: rows(sv, ChangeRequest, ChangeRequest.id == rid)[0].state
                   is RequestState.SUCCEEDED, timeout=60)
        children = {c.id: c for c in rows(sv, ChangeRequest, ChangeRequest.parent_id == rid)}
        records = collect(sv.engine, start, config=sv.config)
        by_id = {r["request"]["id"]: r for r in records}
        assert set(by_id) == {rid, *children}  # the evacuation once, each service's run once
        ev = by_id[rid]["evacuation"]
        assert by_id[rid]["request"]["kind"] == "evacuate" and by_id[rid]["run"] is None
        assert ev["region"] == "us-east-1" and ev["drill"] is False and ev["waves"] == 3
        assert {x["service"]: (x["wave"], x["request_id"], x["state"]) for x in ev["services"]} == {
            c.service: ({"db1": 1, "db2": 1, "api1": 2, "api2": 2, "edge": 3}[c.service], cid, "succeeded")
            for cid, c in children.items()}
        assert all(x["run_state"] == "succeeded" and x["measured_rto_s"] is not None for x in ev["services"])
        assert [x["wave"] for x in ev["critical_path"]] == [1, 2, 3]
        assert ev["critical_s"] == sum(x["seconds"] for x in ev["critical_path"]) and ev["total_s"] >= ev["critical_s"]
        assert any(t["kind"] == "evacuation.succeeded" for t in by_id[rid]["timeline"])
        for cid, c in children.items():
            assert by_id[cid]["part_of_evacuation"] == {"id": rid, "wave": next(
                x["wave"] for x in ev["services"] if x["request_id"] == cid)}
            assert by_id[cid]["evacuation"] is None and by_id[cid]["run"]["state"] == "succeeded"
        idx = index(records)
        row = next(x for x in idx["requests"] if x["request_id"] == rid)
        assert sorted(row["children"]) == sorted(children) and row["evacuation_id"] is None
        assert all(x["evacuation_id"] == rid for x in idx["requests"] if x["request_id"] in children)
        # the pack: each child's record is the file the evacuation's report links to
        out = tmp_path / "pack"
        write(records, out, sv.renderer, parameters={"since": None, "until": None, "service": None},
              generated_at=sv.clock(), version="test", key=None)
        (md,) = [p for p in out.glob(f"request-{rid}-evacuate-*.md")]
        text = md.read_text()
        assert text.startswith(f"# Evacuation of region:us-east-1: request #{rid}"), text[:80]
        for x in ev["services"]:
            assert (out / f"{x['record']}.md").exists() and (out / f"{x['record']}.json").exists()
            assert f"[{x['record']}.md]({x['record']}.md)" in text
        assert "Critical path " in text
        child_md = (out / f"{ev['services'][0]['record']}.md").read_text()
        assert f"| Part of evacuation | #{rid}, wave 1 |" in child_md
        index_md = (out / "index.md").read_text()
        assert f"#{ev['services'][0]['request_id']} (in #{rid})" in index_md
        assert "1 region evacuation" in index_md
        assert sorted(json.loads((out / "index.json").read_text())["requests"][0]["children"]) == sorted(children)
        assert all(c.kind is RequestKind.FAILOVER for c in children.values())
    finally:
        sv.runner.shutdown(5)
        sv.engine.dispose()
