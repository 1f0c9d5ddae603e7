"""Interactive commands for a single running client (``lwm2m client`` on a terminal).

Reads lines from stdin without blocking the event loop; when stdin is closed,
not readable or a regular file the client simply runs on (service mode).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import shlex
import sys
from collections.abc import Callable
from typing import TextIO

from lwm2m.client.client import LwM2MClient
from lwm2m.client.objects.location import Location
from lwm2m.formats.errors import FormatError
from lwm2m.formats.text import text_to_value
from lwm2m.model.nodes import Value
from lwm2m.model.path import Path, PathError
from lwm2m.protocol.errors import LwM2MError

HELP = """commands:
  list                      objects and instances
  show PATH                 read /o, /o/i or /o/i/r (e.g. show /3/0/9)
  set PATH VALUE            change a resource value (observers are notified)
  update [SSID]             send a registration Update now
  send PATH...              Send current values to the server(s) (POST /dp)
  move LAT LON [ALT]        change the Location object
  sleep | wake              enter / leave queue-mode sleep
  status                    registrations and counters
  reboot | factory-reset    like the Device object executes
  quit                      de-register and exit
  help                      this text"""


def show_value(value: Value) -> str:
    """Values as a person reads them: times in ISO 8601, opaque in hex, strings quoted."""
    if isinstance(value, datetime.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bytes):
        return "0x" + value.hex() if value else "(empty)"
    if isinstance(value, str):
        return repr(value)
    return str(value)


class Console:
    def __init__(
        self, client: LwM2MClient, quit: Callable[[], None], out: TextIO = sys.stdout
    ) -> None:
        self.client = client
        self.quit = quit
        self.out = out
        self._buffer = b""

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def attach(self, fd: int | None = None) -> bool:
        """Start reading commands from ``fd`` (stdin); False when it cannot be watched."""
        if fd is None:
            try:
                fd = sys.stdin.fileno()
            except (AttributeError, ValueError, OSError):
                return False
        loop = asyncio.get_running_loop()
        try:
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._readable, fd)
        except (OSError, ValueError, NotImplementedError):
            return False
        self._fd = fd
        return True

    def detach(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            self._fd = None

    def _readable(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.detach()  # stdin closed: keep running as a service
            return
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self.client.spawn(self.execute(line.decode("utf-8", "replace")))

    async def execute(self, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.say(f"error: {exc}")
            return
        if not words:
            return
        command, args = words[0].lower(), words[1:]
        try:
            await self._run(command, args)
        except (LwM2MError, PathError, FormatError, ValueError) as exc:
            self.say(f"error: {exc}")

    async def _run(self, command: str, args: list[str]) -> None:
        client = self.client
        if command in ("help", "?"):
            self.say(HELP)
        elif command in ("quit", "exit"):
            self.quit()
        elif command == "list":
            for obj in client.store.objects():
                name = obj.definition.name if obj.definition else "?"
                ids = ", ".join(str(i.id) for i in obj) or "-"
                self.say(f"/{obj.id:<6} {name:<32} instances: {ids}")
        elif command == "show":
            if len(args) != 1:
                raise ValueError("usage: show PATH")
            await self._show(Path.parse(args[0]))
        elif command == "set":
            if len(args) != 2:
                raise ValueError("usage: set PATH VALUE")
            path = Path.parse(args[0])
            if path.depth != 3:
                raise ValueError("set needs a resource path /o/i/r")
            inst = client.instance(path.object_id or 0, path.instance_id or 0)
            if inst is None:
                raise ValueError(f"{path.parent} does not exist")
            rid = path.resource_id or 0
            value = text_to_value(args[1], inst.resource_type(rid), str(path))
            inst.set(rid, value)
            stored = inst.get(rid)
            self.say(
                f"{path} = {show_value(stored) if stored is not None and not isinstance(stored, dict) else stored}"
            )
        elif command == "update":
            client.trigger_update(int(args[0]) if args else None)
            self.say("update requested")
        elif command == "send":
            if not args:
                raise ValueError("usage: send PATH...")
            code = await client.send([Path.parse(a) for a in args])
            self.say(f"send answered {code}")
        elif command == "move":
            if len(args) not in (2, 3):
                raise ValueError("usage: move LAT LON [ALT]")
            loc = client.instance(6, 0)
            if not isinstance(loc, Location):
                raise ValueError("no Location object")
            loc.move(float(args[0]), float(args[1]), float(args[2]) if len(args) == 3 else None)
            self.say(f"moved to {args[0]}, {args[1]}")
        elif command == "sleep":
            client.sleep()
            self.say("sleeping (queue mode)")
        elif command == "wake":
            client.wake()
            self.say("awake")
        elif command == "status":
            for ssid, s in client.sessions.items():
                where = "/".join(s.location) or "-"
                self.say(
                    f"server {ssid} {s.account.uri}: {s.state.value} /{where} lifetime {s.lifetime_s}s"
                )
            st = client.stats
            self.say(
                f"requests served {st.requests_served}, notifications {st.notifications_sent}, "
                f"observations {len(client.observations)}, sleeping {client.sleeping}"
            )
        elif command == "reboot":
            client.spawn(client.reboot())
        elif command in ("factory-reset", "reset"):
            client.spawn(client.factory_reset())
        else:
            raise ValueError(f"unknown command {command!r} (try help)")

    async def _show(self, path: Path) -> None:
        node = await self.client.dispatcher.read_node(path, None)
        from lwm2m.model.nodes import LwM2MObject, ObjectInstance, Resource, ResourceInstance

        def fmt_res(prefix: str, res: Resource) -> None:
            if res.instances is not None:
                for ri, v in res.instances.items():
                    self.say(f"{prefix}/{res.id}/{ri} = {show_value(v)}")
            else:
                assert res.value is not None
                self.say(f"{prefix}/{res.id} = {show_value(res.value)}")

        if isinstance(node, LwM2MObject):
            for inst in node.instances.values():
                for res in inst.resources.values():
                    fmt_res(f"/{node.id}/{inst.id}", res)
        elif isinstance(node, ObjectInstance):
            for res in node.resources.values():
                fmt_res(str(path), res)
        elif isinstance(node, Resource):
            fmt_res(str(path.parent), node)
        elif isinstance(node, ResourceInstance):
            self.say(f"{path} = {show_value(node.value)}")
