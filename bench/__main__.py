"""``make bench``: rerunnable benchmarks. Results go to stdout; record them, with the
machine, in docs/benchmarks.md."""
from __future__ import annotations

import logging
import os
import platform
import sys
import tempfile

from bench import ack, approval, costs, evacuation, fanout, storm


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    wanted = set(argv) or {"fanout", "ack", "approval", "costs", "storm", "evacuation"}
    print(f"# drbot benchmarks on {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        if "fanout" in wanted:
            r = fanout.run(tmp)
            print(f"fanout: {r['services']} services, {r['reads']} reads of {r['delay_s'] * 1000:.0f} ms each, "
                  f"first /dr status after start: median {r['first_s']:.3f} s (max {r['first_max_s']:.3f} s) over "
                  f"{r['rounds']} starts; limit, one request to the slowest source in the same run: "
                  f"{r['limit_s']:.3f} s; ratio {r['ratio']:.2f}x (target <= 1.5x); next report "
                  f"{r['warm_s']:.3f} s; CPU of the process during the first report {r['first_cpu_s'] * 1000:.0f} ms, "
                  f"the next {r['warm_cpu_s'] * 1000:.0f} ms; serial would be {r['serial_s']:.1f} s")
        if "ack" in wanted:
            r = ack.run(tmp)
            for kind, what in (("status", "/dr status"), ("click", "Refresh clicks")):
                print(f"ack: {r['clients']} concurrent clients x {r['each']} signed {what} over HTTP, median of "
                      f"{r['rounds']} rounds: drbot p50 {r[f'drbot_{kind}_p50_ms']:.1f} ms, p99 "
                      f"{r[f'drbot_{kind}_p99_ms']:.1f} ms; bare Bolt app, same adapter, same run: p50 "
                      f"{r[f'bare_{kind}_p50_ms']:.1f} ms, p99 {r[f'bare_{kind}_p99_ms']:.1f} ms; p99 ratio "
                      f"{r[f'{kind}_ratio']:.2f}x (target <= 2x); every reply at the fake Slack within "
                      f"{r[f'drbot_{kind}_replies_s']:.1f} s of the round's start")
            print(f"ack: RSS idle {r['rss_idle_mb']:.0f} MB, after {r['status_commands']} /dr status "
                  f"{r['rss_after_status_mb']:.0f} MB ({r['rss_ratio']:.2f}x, target <= 1.5x); "
                  f"{r['reports']} reports and {r['source_reads']} source reads served the "
                  f"{2 * r['status_commands']} commands and clicks")
        if "approval" in wanted:
            for db, r in approval.run(tmp).items():
                if "skipped" in r:
                    print(f"approval ({db}): skipped: {r['skipped']}")
                    continue
                print(f"approval ({db}): {r['approvals']} services' failovers approved in a row (signed clicks "
                      f"over HTTP, each after the previous run ended): click to first step p50 "
                      f"{r['first_p50_ms']:.1f} ms, p90 {r['first_p90_ms']:.1f} ms, max {r['first_max_ms']:.1f} ms "
                      f"(target p90 <= 100 ms; includes the pre-flight reads); "
                      f"limit, the click's own ack in the same run: p50 {r['ack_p50_ms']:.1f} ms, p90 "
                      f"{r['ack_p90_ms']:.1f} ms; p90 ratio {r['first_ratio']:.1f}x")
                print(f"approval ({db}): the same {r['rounds']} {r['steps']}-step runs: per step wall "
                      f"p50 {r['step_wall_p50_ms']:.2f} ms (max {r['step_wall_max_ms']:.2f} ms); the step's own "
                      f"work (backend action + verify, the same steps in a bare loop, same run) p50 "
                      f"{r['step_own_p50_ms']:.2f} ms; engine per step {r['engine_per_step_ms']:.2f} ms "
                      f"(target <= 3 ms); load average {r['load'][0]:.1f} -> {r['load'][1]:.1f}")
        if "costs" in wanted:
            r = costs.run(tmp)
            print(f"costs: an approval and a 2-step run, from the deciding click until every message is "
                  f"delivered, over {r['rounds']} rounds: transactions median {r['transactions_median']:.0f} "
                  f"(max {r['transactions_max']}; of which read-only, taking no write lock: median "
                  f"{r['read_only_median']:.0f}), chat writes median {r['chat_writes_median']:.0f} "
                  f"(max {r['chat_writes_max']}); before the outbox redesign 27 and 7-8")
        if "evacuation" in wanted:
            for line in evacuation.lines(evacuation.run(tmp)):
                print(line)
        if "storm" in wanted:
            for line in storm.lines(storm.run(tmp)):
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
