"""A real moto server on 127.0.0.1 for tests of the AWS backends.

Use it with ``from tests.moto_fixture import moto_endpoint  # noqa: F401`` and point
clients at the yielded URL with ``endpoint_url``. While the fixture is active the
process's AWS credentials are fake ("testing") so nothing can reach a real account;
the previous environment is restored afterwards.
"""
from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
REMOVED_AWS_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
                   "AWS_WEB_IDENTITY_TOKEN_FILE")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Start ``ThreadedMotoServer`` on a free port; yield "http://127.0.0.1:PORT"."""
    saved = {k: os.environ.get(k) for k in (*FAKE_AWS_ENV, *REMOVED_AWS_ENV)}
    os.environ.update(FAKE_AWS_ENV)
    for key in REMOVED_AWS_ENV:
        os.environ.pop(key, None)
    # Port 0: the OS picks a free port when the server binds, so there is no race.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def reset_moto(endpoint: str) -> None:
    """Forget every resource in the moto server at ``endpoint``."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
