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
    out.write("all sources answered\n" if not failed else f"{failed} source(s) failed their check\n")
    return 0 if not failed else 2
