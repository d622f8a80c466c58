"""A local HTTP server that answers like Prometheus and like a health endpoint, slowly."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default backlog of 5 drops SYNs under 90 parallel connects


class SlowServer:
    def __init__(self, delay: float):
        self.delay = delay
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def do_GET(self):
                time.sleep(server.delay)
                if self.path.startswith("/api/v1/query"):
                    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": {}, "value": [time.time(), "12.5"]}]}}).encode()
                else:
                    body = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
