"""``drbot shell``: the local console. Same command code as Slack, replies as text, and
you can act as different users (``as bob``) to try the two-person rule."""
from __future__ import annotations

import logging
import re
import sys
import uuid
from collections import OrderedDict
from typing import Callable, TextIO

from bot.actor import Actor
from bot.changes import expire_due
from bot.drills import tick
from bot.incidents import remind_due
from bot.render import Reply
from bot.services import Services
from commands.router import action_for_verb
from commands.surfaces import home

PROMPT = "{name}> "
log = logging.getLogger(__name__)


def shell_actor(name: str) -> Actor:
    """A shell user: the ID is U + the name in capitals, so it can be listed as an approver."""
    clean = re.sub(r"[^A-Za-z0-9]", "", name).upper() or "SHELL"
    return Actor(id=f"U{clean}", name=name, origin="shell", channel="shell")


class ShellMessenger:
    """Messages the bot posts or updates are printed, as the channel would show them.

    To print only what an update changed, the shell remembers the text of the last
    ``KEPT`` messages posted or updated (older ones are forgotten, so a long session or an
    alert storm never grows its memory; an update of a forgotten message prints whole)."""

    KEPT = 200

    def __init__(self, shell: "Shell"):
        self.shell = shell
        self._n = 0
        self._shown: OrderedDict[str, list[str]] = OrderedDict()

    def _remember(self, ts: str, lines: list[str]) -> None:
        self._shown[ts] = lines
        self._shown.move_to_end(ts)
        while len(self._shown) > self.KEPT:
            self._shown.popitem(last=False)

    @property
    def remembered(self) -> int:
        return len(self._shown)

    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str:
        self._n += 1
        ts = f"{self._n}.000000"
        prefix = "  │ " if thread_ts else ""
        lines = self.shell.renderer_text(reply).splitlines()
        self._remember(ts, lines)
        self.shell.write_lines(lines, prefix)
        return ts

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        """Print the first line (which message) and the lines that changed."""
        lines = self.shell.renderer_text(reply).splitlines()
        before = set(self._shown.get(ts, []))
        self._remember(ts, lines)
        changed = [line for line in lines[1:] if line not in before]
        if changed:
            self.shell.write_lines(lines[:1] + changed, "  ↻ ")

    def notify(self, channel: str, user: str, reply: Reply) -> None:
        self.shell.say(reply, prefix=f"  (only {user} sees) ")

    def create_channel(self, name: str, private: bool = False) -> tuple[str, str]:
        self.shell.write_lines([f"  + {'private ' if private else ''}channel #{name} created"])
        return f"C{name.upper()}", name

    def invite(self, channel: str, users: list[str]) -> None:
        if users:
            self.shell.write_lines([f"  + invited {', '.join(users)}"])

    def pin(self, channel: str, ts: str) -> None:
        self.shell.write_lines(["  + pinned the readiness summary"])

    def upload(self, channel: str, filename: str, content: str, title: str) -> str:
        self.shell.write_lines([f"  + uploaded {filename} ({len(content.splitlines())} lines): {title}"])
        return filename


class Shell:
    def __init__(self, services: Services, dispatch: Callable[[Services, Actor, str], Reply],
                 user: str = "alice", out: TextIO | None = None, click=None):
        self.services = services
        self.dispatch = dispatch
        self.click = click
        self.actor = shell_actor(user)
        self.out = out or sys.stdout  # looked up now, not at import: it may have been replaced
        services.messenger = ShellMessenger(self)
        services.outbox.inline = True  # one process, printing: delivered at once, unpaced
        if services.inbox is not None:
            services.inbox.inline = True  # alerts sent to a shell's process become incidents at once

    def renderer_text(self, reply: Reply) -> str:
        return self.services.renderer.text(reply)

    def write_lines(self, lines: list[str], prefix: str = "") -> None:
        self.out.write("".join(f"{prefix}{line}\n" for line in lines))
        self.out.flush()

    def say(self, reply: Reply, prefix: str = "") -> None:
        self.write_lines(self.renderer_text(reply).splitlines(), prefix)

    def handle(self, line: str) -> bool:
        """Run one line; False when the shell should end. A bug is reported, not fatal."""
        try:
            return self._handle(line)
        except Exception as e:
            ref = uuid.uuid4().hex[:8]
            log.exception("shell line %r failed [%s]", line, ref)
            self.say(Reply("error", {"message": f"{type(e).__name__}: {e}", "ref": ref}))
            return True

    def _handle(self, line: str) -> bool:
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        if line in ("quit", "exit", r"\q"):
            return False
        if m := re.fullmatch(r"as\s+(\S+)", line):
            self.actor = shell_actor(m.group(1))
            self.say(Reply("shell_as", {"actor": self.actor}))
            return True
        if line == "home":  # the App Home tab of Slack, as text
            self.say(home(self.services, self.actor))
            return True
        if self.click and (m := re.fullmatch(r"click\s+([a-z_-]+)\s+#?([\w-]+)", line)):
            verb, value = m.groups()
            reply = self.click(self.services, self.actor, action_for_verb(verb), value)
            if reply is not None:
                self.say(reply)
            self.after()
            return True
        command = self.services.command
        text = line[len(command):] if line.startswith(command + " ") or line == command else line
        self.say(self.dispatch(self.services, self.actor, text))
        self.after()
        return True

    def after(self) -> None:
        """The shell is a one-process bot: run what the scheduler and the outbox worker
        would run in the background, so their effects show here."""
        expire_due(self.services)
        tick(self.services)
        remind_due(self.services)
        if self.services.outbox is not None:
            self.services.outbox.drain(timeout=5.0)

    def loop(self, stdin: TextIO | None = None) -> int:
        stdin = stdin or sys.stdin
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
