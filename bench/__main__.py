"""``make bench``: rerunnable benchmarks. Results go to stdout; record them, with the
machine, in docs/benchmarks.md."""
from __future__ import annotations

import logging
import os
import platform
import sys
import tempfile

from bench import ack, approval, costs, fanout, storm


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    wanted = set(argv) or {"fanout", "ack", "approval", "costs", "storm"}
    print(f"# drbot benchmarks on {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        if "fanout" in wanted:
            r = fanout.run(tmp)
            print(f"fanout: {r['services']} services, {r['reads']} reads of {r['delay_s'] * 1000:.0f} ms each: "
                  f"median {r['median_s']:.3f} s, max {r['max_s']:.3f} s over {r['rounds']} rounds "
                  f"(serial would be {r['serial_s']:.1f} s; target < 1.5 s)")
        if "ack" in wanted:
            r = ack.run(tmp)
            print(f"ack: {r['requests']} signed /dr status over HTTP: ack p50 {r['ack_p50_ms']:.1f} ms, "
                  f"p95 {r['ack_p95_ms']:.1f} ms, max {r['ack_max_ms']:.1f} ms (target well under 100 ms); "
                  f"summary at fake Slack p50 {r['reply_p50_ms']:.1f} ms")
        if "approval" in wanted:
            r = approval.run(tmp)
            print(f"approval: {r['rounds']} signed Approve clicks over HTTP: click to first step p50 "
                  f"{r['click_to_first_step_p50_ms']:.0f} ms, max {r['click_to_first_step_max_ms']:.0f} ms "
                  f"(target < 200 ms; includes the pre-flight reads); engine per step p50 "
                  f"{r['per_step_p50_ms']:.1f} ms, max {r['per_step_max_ms']:.1f} ms over {r['steps']}-step runs")
        if "costs" in wanted:
            r = costs.run(tmp)
            print(f"costs: an approval and a 2-step run, from the deciding click until every message is "
                  f"delivered, over {r['rounds']} rounds: transactions median {r['transactions_median']:.0f} "
                  f"(max {r['transactions_max']}), chat writes median {r['chat_writes_median']:.0f} "
                  f"(max {r['chat_writes_max']}); before the outbox redesign 27 and 7-8")
        if "storm" in wanted:
            r = storm.run(tmp)
            print(f"storm: {r['alerts']} Alertmanager alerts for 20 services over HTTP in {r['seconds']:.1f} s "
                  f"({r['per_second']:.0f} alerts/s), HTTP {r['http']}, stored {r['stored']} (none lost: "
                  f"{r['stored'] == r['alerts']}); {r['incidents']} incidents, at most {r['posts_max']} Slack "
                  f"messages and {r['updates_max']} updates per incident channel; outbox left {r['outbox_left']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
