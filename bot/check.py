"""``drbot check-config``: the file is valid (already, to get here); now ask every backend."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TextIO

from bot.config import LoadedConfig
from integrations.base import Backend, CheckResult


def _safe_check(backend: Backend) -> CheckResult:
    try:
        return backend.check()
    except Exception as e:  # a check must report, never crash the command
        return CheckResult(False, f"{type(e).__name__}: {e}")


def check_config(loaded: LoadedConfig, backends: dict[str, Backend], out: TextIO) -> int:
    cfg = loaded.config
    out.write(f"{loaded.path}: valid ({len(cfg.services)} services, {len(cfg.sources)} sources, "
              f"regions {', '.join(cfg.regions)})\n")
    for note in loaded.notes:  # valid, but worth knowing (they do not fail the check)
        where = f"{loaded.path}:{note.line}" if note.line else loaded.path
        out.write(f"  note: {where}: {note.path}: {note.message}\n")
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(backends)))) as pool:
        results = dict(zip(backends, pool.map(_safe_check, backends.values())))
    failed = 0
    for name, result in results.items():
        failed += not result.ok
        out.write(f"  {'ok  ' if result.ok else 'FAIL'} {name} ({backends[name].kind}): {result.message}\n")
    failed += _check_schedules(loaded, backends, out)
    out.write("all sources answered\n" if not failed else f"{failed} source(s) failed their check\n")
    return 0 if not failed else 2


def _check_schedules(loaded: LoadedConfig, backends: dict[str, Backend], out: TextIO) -> int:
    """Each on-call schedule of ``paging.schedules`` read once: who is on call now, and
    whether ``paging.people`` names them (an approval slot needs a Slack user)."""
    paging, failed = loaded.config.paging, 0
    for name, spec in (paging.schedules.items() if paging is not None else ()):
        source = spec.source or paging.source
        try:
            now_on = backends[source].on_call(spec.schedule)  # type: ignore[attr-defined]
        except Exception as e:  # a check must report, never crash the command
            failed += 1
            out.write(f"  FAIL schedule {name} ({source} {spec.schedule}): {e}\n")
            continue
        people = {k.lower() for k in paging.people}
        unnamed = sorted(p for p in now_on.people if p not in people)
        out.write(f"  ok   schedule {name} ({source} {spec.schedule}): {len(now_on.people)} on call now"
                  + (f"; not in paging.people (looked up by e-mail in Slack when drbot runs): {', '.join(unnamed)}"
                     if unnamed else "") + "\n")
    return failed
