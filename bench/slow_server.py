"""A local HTTP server that answers like Prometheus and like a health endpoint, slowly.

``/api/v1/query`` answers a lag of 12.5 for any query, and for ``timestamp(...)`` a sample
time ``sample_age`` seconds before the evaluation time (``time=``, else now), as
Prometheus does for a series selector; any other path answers 200 "ok". Each answer
waits ``delay`` seconds and, while ``hold()`` is in effect, until ``release()``. Every
request is counted by path and query (``count``), for tests that prove how many times a
source was called.

It runs on one asyncio loop (in a thread of its own): like a real Prometheus or load
balancer it accepts a hundred connections at once without a thread per connection, so a
cold fan-out measures drbot, not this server's accept loop.
"""
from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections import Counter
from urllib.parse import parse_qs, urlsplit


class SlowServer:
    def __init__(self, delay: float = 0.0, sample_age: float = 5.0):
        self.delay = delay
        self.sample_age = sample_age
        self.requests: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._open.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024))
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())
        try:
            while True:  # HTTP/1.1 keep-alive: GET requests, no bodies
                head = await reader.readuntil(b"\r\n\r\n")
                url = urlsplit(head.split(b" ", 2)[1].decode())
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                with self._lock:
                    self.requests[(url.path, params.get("query", ""))] += 1
                await asyncio.sleep(self.delay)
                await asyncio.wait_for(self._open.wait(), 30)  # bounded: a test that forgets release() ends
                body = self.answer(url.path, params)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(asyncio.current_task())
            writer.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def answer(self, path: str, params: dict[str, str]) -> bytes:
        if not path.startswith("/api/v1/query"):
            return b"ok"
        at = float(params.get("time", time.time()))
        value = f"{at - self.sample_age:.3f}" if params.get("query", "").startswith("timestamp(") else "12.5"
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [at, value]}]}}).encode()

    def hold(self) -> None:
        """Answers wait from now on until ``release()``."""
        self._loop.call_soon_threadsafe(self._open.clear)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)

    def count(self, path: str | None = None) -> int:
        """Requests received so far (to ``path`` only, when given)."""
        with self._lock:
            return sum(n for (p, _), n in self.requests.items() if path is None or p == path)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def main() -> None:
    """``python -m bench.slow_server DELAY``: serve in this process (the benchmarks keep the
    sources' threads out of the process they measure); prints the URL, stops at EOF on stdin."""
    with SlowServer(float(sys.argv[1])) as server:
        print(server.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
