"""A fake Slack Socket Mode peer: the websocket end that ``apps.connections.open`` points at.

It speaks the protocol as Slack documents it: ``hello`` on connect, envelopes
(``{"envelope_id", "type", "payload", "accepts_response_payload"}``) sent to the app, acks
(``{"envelope_id", "payload"?}``) received back. Tests send envelopes, wait for their acks,
and see when the app closes its connection. Built on ``websockets`` (a real websocket
server), so the app's own Socket Mode client is exercised unchanged.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve


class FakeSocketMode:
    def __init__(self) -> None:
        self.acks: dict[str, dict] = {}  # envelope_id -> the app's ack
        self.connections = 0  # connections the app opened
        self.closed = 0  # connections that ended (the app closed, or the socket dropped)
        self._live: list[ServerConnection] = []
        self._lock = threading.Lock()
        self._server = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeSocketMode:
        self._server = serve(self._serve, "127.0.0.1", 0, compression=None)
        self._thread = threading.Thread(target=self._server.serve_forever, name="FakeSocketMode", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        """What ``apps.connections.open`` answers with."""
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/link/?ticket=test"

    def _serve(self, ws: ServerConnection) -> None:
        with self._lock:
            self.connections += 1
            self._live.append(ws)
        try:
            ws.send(json.dumps({"type": "hello", "num_connections": 1,
                                "connection_info": {"app_id": "A0TEST"}, "debug_info": {"host": "fake"}}))
            for raw in ws:
                message = json.loads(raw)
                if "envelope_id" in message:
                    with self._lock:
                        self.acks[message["envelope_id"]] = message
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self.closed += 1
                self._live.remove(ws)

    def send(self, kind: str, payload: dict[str, Any]) -> str:
        """Send one envelope to the app's open connection; its envelope_id."""
        envelope_id = str(uuid.uuid4())
        with self._lock:
            ws = self._live[-1]
        ws.send(json.dumps({"envelope_id": envelope_id, "type": kind, "payload": payload,
                            "accepts_response_payload": kind != "events_api"}))
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if envelope_id in self.acks:
                    return self.acks[envelope_id]
            time.sleep(0.02)
        raise AssertionError(f"no ack of envelope {envelope_id} within {timeout}s (acks: {list(self.acks)})")

    @property
    def open(self) -> int:
        with self._lock:
            return len(self._live)
