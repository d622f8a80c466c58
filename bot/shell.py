"""``drbot shell``: the local console. Same command code as Slack, replies as text, and
you can act as different users (``as bob``) to try the two-person rule."""
from __future__ import annotations

import re
import sys
from typing import Callable, TextIO

from bot.actor import Actor
from bot.render import Reply
from bot.services import Services

PROMPT = "{name}> "


def shell_actor(name: str) -> Actor:
    """A shell user: the ID is U + the name in capitals, so it can be listed as an approver."""
    clean = re.sub(r"[^A-Za-z0-9]", "", name).upper() or "SHELL"
    return Actor(id=f"U{clean}", name=name, origin="shell", channel="shell")


class Shell:
    def __init__(self, services: Services, dispatch: Callable[[Services, Actor, str], Reply],
                 user: str = "alice", out: TextIO = sys.stdout):
        self.services = services
        self.dispatch = dispatch
        self.actor = shell_actor(user)
        self.out = out

    def say(self, reply: Reply) -> None:
        self.out.write(self.services.renderer.text(reply))
        self.out.flush()

    def handle(self, line: str) -> bool:
        """Run one line; False when the shell should end."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        if line in ("quit", "exit", r"\q"):
            return False
        if m := re.fullmatch(r"as\s+(\S+)", line):
            self.actor = shell_actor(m.group(1))
            self.say(Reply("shell_as", {"actor": self.actor}))
            return True
        command = self.services.command
        text = line[len(command):] if line.startswith(command + " ") or line == command else line
        self.say(self.dispatch(self.services, self.actor, text))
        return True

    def loop(self, stdin: TextIO = sys.stdin) -> int:
        self.say(Reply("shell_banner", {"command": self.services.command, "actor": self.actor,
                                        "config": self.services.loaded.path}))
        interactive = stdin.isatty()
        while True:
            if interactive:
                self.out.write(PROMPT.format(name=self.actor.name))
                self.out.flush()
            line = stdin.readline()
            if not line:
                return 0
            if not interactive:
                self.out.write(PROMPT.format(name=self.actor.name) + line)
            if not self.handle(line):
                return 0
