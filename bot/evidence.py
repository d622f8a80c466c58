"""``drbot evidence``: the pack auditors ask for.

Every failover, failback, drill and rollback request of a window, whatever became of it
(succeeded, failed, rolled back, denied, cancelled, expired), each as JSON (the record,
straight from the store) and as Markdown (the same, readable; rendered from
``templates/text/evidence_run.txt.j2``): the pre-flight values as they were read, who
approved or denied when, the run with its steps, the targets recorded when the run
started, what a drill proved, whether it ran on the sandbox, and the timeline. A request
is in the window by when its run started or, if it never ran, when it was made.

Plus an index, and a manifest with the SHA-256 of every file, signed (``manifest.sig``)
with the key in ``DRBOT_EVIDENCE_KEY`` (``bot.evidence_sign``); ``drbot evidence verify
DIR`` checks both. Times are ISO-8601 UTC. The pack is written into a temporary directory
next to the destination and renamed into place at the end, so it is never half-written.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import sys
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.config import Config
from bot.evacuation_evidence import EVACUATION_KINDS, evacuation_of, part_of, times
from bot.evidence_sign import ENV, HOW, MANIFEST, SIGNATURE, BadKey, Key, key_from_env, signature_text, verify_pack
from bot.render import Renderer, Reply
from bot.restore_drill import from_steps
from bot.run_facts import recorded_targets, sources_of
from bot.store import session_scope
from bot.store.models import Approval, ChangeRequest, RequestKind, Run, RunStep, TimelineEvent

EXIT_OK, EXIT_TAMPERED, EXIT_BAD_ARGUMENT = 0, 1, 2
RUN_KINDS = (RequestKind.FAILOVER, RequestKind.FAILBACK, RequestKind.DRILL, RequestKind.ROLLBACK)
CHILD_KINDS = (RequestKind.ROLLBACK, RequestKind.RESUME)
DEFAULT_WINDOW = timedelta(days=90)
EXAMPLE = "2024-05-01 or {flag} 2024-05-01T09:30:00Z"


class BadArgument(ValueError):
    """A flag the export cannot use; the CLI prints it and exits 2."""


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def parse_when(flag: str, value: str, end_of_day: bool = False) -> datetime:
    """An ISO date or datetime, UTC unless it says otherwise. A date alone means its
    midnight, or with ``end_of_day`` the next midnight (so ``--until`` includes that day)."""
    text = value.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None:
        return datetime.combine(day, time(), timezone.utc) + timedelta(days=1 if end_of_day else 0)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadArgument(f"{flag} {value!r} is not a date: use an ISO date or datetime in UTC, "
                          f"e.g. {flag} {EXAMPLE.format(flag=flag)}") from None
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def _json_or_text(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _ok(measured: float | None, target: float | None) -> bool | None:
    return None if measured is None or target is None else measured <= target


def _family(s: Session, request_id: int) -> list[ChangeRequest]:
    """The request's rollback and resume children, and theirs, in id order."""
    out, frontier = [], [request_id]
    while frontier:
        kids = list(s.exec(select(ChangeRequest).where(col(ChangeRequest.parent_id).in_(frontier),
                                                       col(ChangeRequest.kind).in_(CHILD_KINDS))))
        out += kids
        frontier = [k.id for k in kids]
    return sorted(out, key=lambda r: r.id)


def _targets(run: Run | None) -> dict[str, Any]:
    """The targets recorded when the run started, and the run judged against them."""
    t = recorded_targets(run.targets) if run is not None else None
    if t is None:
        return {"recorded": False, "tier": None, "rto_s": None, "rpo_s": None, "rto_ok": None, "rpo_ok": None}
    return {"recorded": True, "tier": t.get("tier"), "rto_s": t.get("rto_s"), "rpo_s": t.get("rpo_s"),
            "rto_ok": _ok(run.measured_rto_s, t.get("rto_s")), "rpo_ok": _ok(run.measured_rpo_s, t.get("rpo_s"))}


def _sandbox(req: ChangeRequest, run: Run | None, config: Config | None, simulated: set[str]) -> bool | None:
    """The run's own mark; for a request that never ran, its service's and steps' sources
    as configured now (None when the service is no longer configured)."""
    if run is not None:
        return run.sandbox
    svc = config.service(req.service) if config is not None else None
    if svc is None:
        return None
    return bool(sources_of(svc, svc.runbooks.steps(req.kind.value, req.scenario or None)) & simulated)


def _record(s: Session, req: ChangeRequest, run: Run | None, config: Config | None,
            simulated: set[str]) -> dict[str, Any]:
    children = _family(s, req.id)
    approving = [req.id] + [c.id for c in children if c.kind is RequestKind.RESUME]  # a resume continues this run
    approvals = s.exec(select(Approval).where(col(Approval.request_id).in_(approving)).order_by(col(Approval.id)))
    steps = s.exec(select(RunStep).where(RunStep.run_id == run.id).order_by(col(RunStep.id))) if run else []
    events = s.exec(select(TimelineEvent).where(col(TimelineEvent.request_id).in_([req.id] + [c.id for c in children]))
                    .order_by(col(TimelineEvent.at), col(TimelineEvent.id)))
    out = {
        "request": {
            "id": req.id, "kind": req.kind.value, "service": req.service, "from_region": req.from_region,
            "to_region": req.to_region, "scenario": req.scenario, "reason": req.reason,
            "requester": req.requester, "requester_name": req.requester_name, "state": req.state.value,
            "state_reason": req.state_reason, "required_approvals": req.required_approvals,
            "break_glass": req.break_glass, "justification": req.justification, "parent_id": req.parent_id,
            "created_at": iso(req.created_at), "expires_at": iso(req.expires_at),
            "decided_at": iso(req.decided_at), "closed_at": iso(req.closed_at),
        },
        "sandbox": _sandbox(req, run, config, simulated),
        "preflight": _json_or_text(req.preflight),
        "approvals": [{"request_id": a.request_id, "approver": a.approver, "approver_name": a.approver_name,
                       "decision": "approve" if a.approve else "deny", "at": iso(a.at)} for a in approvals],
        "run": None if run is None else {
            "id": run.id, "state": run.state.value, "approved_at": iso(run.approved_at),
            "started_at": iso(run.started_at), "ended_at": iso(run.ended_at), "verified_at": iso(run.verified_at),
            "measured_rto_s": run.measured_rto_s, "measured_rpo_s": run.measured_rpo_s, "passed": run.passed,
            "proof": run.proof or None, "sandbox": run.sandbox, "error": run.error, "owner": run.owner,
        },
        "targets": _targets(run),
        "restore": None,  # a restore test's restore, from its restore step's output (bot.restore_drill)
        "steps": [{"position": st.position, "attempt": st.attempt, "name": st.name, "action": st.action,
                   "rollback": st.rollback, "state": st.state.value, "started_at": iso(st.started_at),
                   "ended_at": iso(st.ended_at), "error": st.error, "output": _json_or_text(st.output),
                   "duration_s": (st.ended_at - st.started_at).total_seconds()
                   if st.started_at and st.ended_at else None} for st in steps],
        "timeline": [{"at": iso(e.at), "request_id": e.request_id, "service": e.service, "kind": e.kind,
                      "actor": e.actor, "text": e.text, "data": _json_or_text(e.data)} for e in events],
    }
    out["restore"] = from_steps([st["output"] for st in out["steps"] if not st["rollback"]])
    evacuation = evacuation_of(s, req)  # an evacuation: one record, its services' runs as children
    if evacuation is not None:
        evacuation = times(evacuation, iso)
        for x in evacuation["services"]:
            x["record"] = stem({"request": {"id": x["request_id"], "kind": x["kind"], "service": x["service"]}}) \
                if x["request_id"] is not None else None
    out["evacuation"] = evacuation
    out["part_of_evacuation"] = part_of(s, req)
    return out


def collect(engine: Engine, since: datetime, until: datetime | None = None, service: str | None = None,
            config: Config | None = None, simulated: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """One record per failover, failback, drill or rollback request whose run started (or,
    never run, which was made) at or after ``since`` and before ``until``, oldest first; and
    per region evacuation (or return), one record naming its services' runs, each a record
    of its own (``bot.evacuation_evidence``).
    ``simulated``: the sandbox sources, for requests that never ran."""
    at = func.coalesce(Run.started_at, ChangeRequest.created_at)
    with session_scope(engine) as s:
        stmt = (select(ChangeRequest, Run).outerjoin(Run, Run.request_id == ChangeRequest.id)
                .where(col(ChangeRequest.kind).in_(RUN_KINDS + EVACUATION_KINDS), at >= since))
        if until is not None:
            stmt = stmt.where(at < until)
        if service:
            stmt = stmt.where(ChangeRequest.service == service)
        rows = s.exec(stmt.order_by(at, col(ChangeRequest.id))).all()
        return [_record(s, req, run, config, set(simulated)) for req, run in rows]


def stem(record: dict[str, Any]) -> str:
    req = record["request"]
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"request-{req['id']}-{req['kind']}-{req['service']}")


def index(records: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for r in records:
        req, run, t = r["request"], r["run"] or {}, r["targets"]
        at = run.get("started_at") or req["created_at"]
        rows.append({
            "request_id": req["id"], "date": at[:10], "at": at, "started_at": run.get("started_at"),
            "service": req["service"], "kind": req["kind"], "state": req["state"], "run_state": run.get("state"),
            "passed": run.get("passed"), "proof": run.get("proof"), "sandbox": r["sandbox"],
            "restore_test": {"backup": r["restore"]["backup"], "passed": r["restore"]["passed"]}
            if r.get("restore") else None,
            "break_glass": req["break_glass"],
            "rto": {"measured_s": run.get("measured_rto_s"), "target_s": t["rto_s"], "ok": t["rto_ok"]},
            "rpo": {"measured_s": run.get("measured_rpo_s"), "target_s": t["rpo_s"], "ok": t["rpo_ok"]},
            "approvers": [a["approver"] for a in r["approvals"] if a["decision"] == "approve"],
            "approver_names": [a["approver_name"] or a["approver"] for a in r["approvals"]
                               if a["decision"] == "approve"],
            "deniers": [a["approver_name"] or a["approver"] for a in r["approvals"] if a["decision"] == "deny"],
            "json": stem(r) + ".json", "markdown": stem(r) + ".md",
            "evacuation_id": (r.get("part_of_evacuation") or {}).get("id"),
            "children": [x["request_id"] for x in r["evacuation"]["services"] if x["request_id"] is not None]
            if r.get("evacuation") else None,
        })
    ran = [x for x in rows if x["run_state"] is not None]
    summary = {"requests": len(rows), "runs": len(ran), "not_run": len(rows) - len(ran),
               "passed": sum(1 for x in ran if x["passed"] is True),
               "not_passed": sum(1 for x in ran if x["passed"] is False),
               "checks": sum(1 for x in ran if x["proof"] == "check"),
               "sandbox": sum(1 for x in rows if x["sandbox"]),
               "by_kind": dict(Counter(x["kind"] for x in rows)), "by_state": dict(Counter(x["state"] for x in rows))}
    return {"requests": rows, "summary": summary}


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write(records: list[dict[str, Any]], out_dir: str | Path, renderer: Renderer, *, parameters: dict[str, Any],
          generated_at: datetime, version: str, key: Key | None, force: bool = False) -> dict[str, Any]:
    """Write the pack into ``out_dir`` (replacing it only with ``force``), its manifest
    signed with ``key`` (None: unsigned, asked for with --unsigned); the manifest."""
    out = Path(out_dir)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise BadArgument(f"--out {out} is not empty: choose another directory or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()  # not mkdtemp: the pack gets the umask's permissions, not 0700
    files: dict[str, str] = {}
    signing = {"algorithm": key.algorithm, "key_id": key.key_id} if key is not None else None
    head = {"generated_at": iso(generated_at), "parameters": parameters, "drbot_version": version, "signing": signing}
    try:
        for r in records:
            files[stem(r) + ".json"] = _dumps(r)
            files[stem(r) + ".md"] = renderer.text(Reply("evidence_run", {"r": r, "stem": stem(r)}))
        idx = head | index(records)
        files["index.json"] = _dumps(idx)
        files["index.md"] = renderer.text(Reply("evidence_index", idx))
        hashes = {}
        for name, text in sorted(files.items()):
            data = text.encode("utf-8")
            (tmp / name).write_bytes(data)
            hashes[name] = hashlib.sha256(data).hexdigest()
        manifest = head | {"algorithm": "sha256", "files": hashes}
        data = _dumps(manifest).encode("utf-8")
        (tmp / MANIFEST).write_bytes(data)
        if key is not None:
            (tmp / SIGNATURE).write_text(signature_text(key, data), encoding="utf-8")
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _swap(tmp: Path, out: Path) -> None:
    """Put ``tmp`` where ``out`` is; an old ``out`` is moved aside first, then removed."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.with_name(f"{tmp.name}.old")
        out.rename(old)
    tmp.rename(out)
    if old is not None and old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    elif old is not None:
        old.unlink()


def version() -> str:
    try:
        return metadata.version("drbot")
    except metadata.PackageNotFoundError:
        return "unknown"


def _key(unsigned: bool) -> Key | None:
    if unsigned:
        return None
    try:
        key = key_from_env(os.environ)
    except BadKey as e:
        raise BadArgument(str(e)) from None
    if key is None:
        raise BadArgument(f"no signing key: {HOW}, or pass --unsigned for a pack with hashes only")
    if not key.can_sign:
        raise BadArgument(f"{ENV} holds an Ed25519 public key, which verifies but cannot sign: set it to the "
                          "private key to export")
    return key


def export(services, args) -> int:
    """``drbot evidence``: 0 when the pack is written, 2 on a bad argument."""
    now = services.clock()
    try:
        key = _key(args.unsigned)
        since = parse_when("--since", args.since) if args.since else now - DEFAULT_WINDOW
        until = parse_when("--until", args.until, end_of_day=True) if args.until else None
        if until is not None and until <= since:
            raise BadArgument(f"--until {args.until} is not after --since {iso(since)}")
        simulated = {name for name, b in services.backends.items() if b.sandbox}
        records = collect(services.engine, since, until, args.service, services.config, simulated)
        if args.service and services.config.service(args.service) is None and not records:
            raise BadArgument(f"--service {args.service!r}: no such service and no requests of it "
                              f"(services: {', '.join(services.config.service_names)})")
        out = Path(args.out or f"evidence-{now.astimezone(timezone.utc):%Y%m%d}")
        parameters = {"since": iso(since), "until": iso(until), "service": args.service, "out": str(out),
                      "force": bool(args.force), "config": services.loaded.path}
        write(records, out, services.renderer, parameters=parameters, generated_at=now, version=version(),
              key=key, force=args.force)
    except BadArgument as e:
        print(f"drbot evidence: {e}", file=sys.stderr)
        return EXIT_BAD_ARGUMENT
    print(out)
    return EXIT_OK


def verify(directory: str) -> int:
    """``drbot evidence verify DIR``: 0 when every file is as exported and the manifest's
    signature holds; 1 when anything was changed, added or removed; 2 without a usable key."""
    try:
        key = key_from_env(os.environ)
    except BadKey as e:
        print(f"drbot evidence verify: {e}", file=sys.stderr)
        return EXIT_BAD_ARGUMENT
    if key is None:
        print(f"drbot evidence verify: no key to verify with: {HOW} (the public key is enough for Ed25519)",
              file=sys.stderr)
        return EXIT_BAD_ARGUMENT
    problems, checked = verify_pack(directory, key)
    if problems:
        print(f"drbot evidence verify: {directory}: FAILED, the pack is not as exported", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_TAMPERED
    print(f"{directory}: OK, {checked} files match {MANIFEST}, signed by {key.key_id} ({key.algorithm})")
    return EXIT_OK
