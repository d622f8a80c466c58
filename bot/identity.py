"""Who this process is, for claims on runs and outbox items: ``host:pid``."""
from __future__ import annotations

import os
import socket

OWNER = f"{socket.gethostname()}:{os.getpid()}"
