"""Firmware Update object (5): the state machine of LwM2M 1.1 E.6 / Figure 29.

States (5/0/3): 0 Idle, 1 Downloading, 2 Downloaded, 3 Updating.
Update Result (5/0/5): 0 initial, 1 success, 2 not enough flash, 3 out of RAM,
4 connection lost during download, 5 integrity check failure, 6 unsupported
package type, 7 invalid URI, 8 update failed, 9 unsupported protocol.

==========================  ===========================================
Idle + Write Package        Downloading -> Downloaded (installer check)
Idle + Write Package URI    Downloading (pull over CoAP/HTTP(S)) -> Downloaded
any + empty Package/URI     Idle, result 0 (cancel)
Downloaded + Execute Update Updating -> Idle/result 1, or Downloaded/result 8
check or download failure   Idle with result 2-7 or 9
==========================  ===========================================

The package is pushed in one Write with Block1 (the endpoint reassembles it),
or pulled from the Package URI: ``coap://`` over the client's plain socket,
``coaps://`` through the DTLS socket (and credentials) of one of its LwM2M
servers (the one at the URI's address if any, so the pull reuses the
registration's DTLS session; else the first ``coaps`` server's), ``http(s)://``.
What "install" means is pluggable: a :class:`FirmwareInstaller`. After a
successful install the device reports the new version in /3/0/3 and sends a
Registration Update to its servers, the way it "comes back" with new firmware.

Simulated packages: an image starting with ``LWM2MFW1 <version>[ <name>]\n``
installs as that version (see :func:`simulated_package`); the older
``FW:<name>:<version>\n`` header is read too.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from lwm2m.client.instance import Instance, Res, execute
from lwm2m.coap.codes import Code
from lwm2m.coap.errors import CoapError, RequestEntityTooLarge
from lwm2m.coap.message import Message
from lwm2m.protocol.errors import BadRequest, LwM2MError, MethodNotAllowed

if TYPE_CHECKING:
    from lwm2m.client.objects.host import ClientHost
    from lwm2m.coap.endpoint import Endpoint

logger = logging.getLogger(__name__)

MAX_PACKAGE_BYTES = 64 * 1024 * 1024


class State(enum.IntEnum):
    IDLE = 0
    DOWNLOADING = 1
    DOWNLOADED = 2
    UPDATING = 3


class Result(enum.IntEnum):
    INITIAL = 0
    SUCCESS = 1
    NOT_ENOUGH_FLASH = 2
    OUT_OF_RAM = 3
    CONNECTION_LOST = 4
    INTEGRITY_CHECK_FAILURE = 5
    UNSUPPORTED_PACKAGE_TYPE = 6
    INVALID_URI = 7
    UPDATE_FAILED = 8
    UNSUPPORTED_PROTOCOL = 9


class FirmwareError(Exception):
    """Raised by an installer or downloader; carries the Update Result to report."""

    def __init__(self, result: Result, message: str = "") -> None:
        super().__init__(message or result.name.lower())
        self.result = result


class FirmwareInstaller(Protocol):
    async def check(self, package: bytes) -> None:
        """Verify a downloaded package; raise FirmwareError(5/6/2/3) to refuse it."""
        ...

    async def install(self, package: bytes) -> tuple[str, str]:
        """Install it; return (package name, version). Raise FirmwareError(8) on failure."""
        ...


#: first bytes of a simulated package: ``LWM2MFW1 <version>[ <name>]\n``
PACKAGE_MAGIC = b"LWM2MFW1 "


def simulated_package(version: str, size: int = 0, *, name: str = "") -> bytes:
    """An image the simulator installs as ``version``: the header, padded to ``size`` bytes.

    The padding is deterministic (derived from the version) so that the same
    call gives the same bytes, hence the same SHA-256.
    """
    if not version or any(c.isspace() for c in version + name):
        raise ValueError("version (and name) must be non-empty words without spaces")
    header = PACKAGE_MAGIC + version.encode() + (b" " + name.encode() if name else b"") + b"\n"
    filler = hashlib.sha256(header).digest()
    missing = max(0, size - len(header))
    return header + (filler * (missing // len(filler) + 1))[:missing]


def package_identity(package: bytes) -> tuple[str, str] | None:
    """(name, version) from a package header, None when it has none."""
    if package.startswith(PACKAGE_MAGIC):
        line = package[len(PACKAGE_MAGIC) :].split(b"\n", 1)[0].decode("utf-8", "replace")
        words = line.split()
        if words:
            return (words[1] if len(words) > 1 else "firmware"), words[0]
    if package.startswith(b"FW:"):
        header = package.split(b"\n", 1)[0].decode("utf-8", "replace")
        parts = header.split(":")
        if len(parts) >= 3:
            return parts[1], parts[2]
    return None


def update_fails(seed: int, endpoint: str, rate: float) -> bool:
    """Whether the simulated device ``endpoint`` fails its updates (``--fw-fail-rate``).

    A pure function of (seed, endpoint), the same in every process, so that
    a test or a campaign report can predict exactly which devices fail.
    """
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{endpoint}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


class AcceptingInstaller:
    """The simulator's installer: any non-empty package installs, as its header says.

    ``LWM2MFW1 <version>[ <name>]`` and ``FW:<name>:<version>`` headers name
    it (:func:`package_identity`); anything else installs as
    ``firmware``/``<size> bytes``. A package starting with ``b"BAD"`` fails
    its integrity check (tests use it). With ``fail_updates`` every install
    fails with Update Result 8 (``--fw-fail-rate`` picks such devices).
    """

    def __init__(self, *, fail_updates: bool = False) -> None:
        self.installed: list[bytes] = []
        self.fail_updates = fail_updates

    async def check(self, package: bytes) -> None:
        if not package:
            raise FirmwareError(Result.INTEGRITY_CHECK_FAILURE, "empty package")
        if package.startswith(b"BAD"):
            raise FirmwareError(Result.INTEGRITY_CHECK_FAILURE, "package marked bad")

    async def install(self, package: bytes) -> tuple[str, str]:
        if self.fail_updates:
            raise FirmwareError(Result.UPDATE_FAILED, "simulated update failure")
        self.installed.append(package)
        identity = package_identity(package)
        if identity is not None:
            return identity
        return "firmware", f"{len(package)} bytes"


class FirmwareUpdate(Instance, object_id=5):
    __slots__ = ("_task", "client", "download_rate_bps", "installer", "package")

    package_uri = Res(1, "")
    state = Res(3, int(State.IDLE))
    update_result = Res(5, int(Result.INITIAL))
    protocol_support = Res(8, {0: 0, 1: 1, 2: 2, 3: 3})  # CoAP, CoAPS, HTTP, HTTPS
    delivery_method = Res(9, 2)  # pull and push

    def __init__(
        self,
        client: ClientHost,
        instance_id: int = 0,
        installer: FirmwareInstaller | None = None,
    ) -> None:
        super().__init__(instance_id)
        self.client = client
        self.installer: FirmwareInstaller = installer or AcceptingInstaller()
        self.package = b""
        #: Simulated link speed (``--fw-download-rate``): a pull of N bytes stays in
        #: Downloading at least N / rate seconds. None: as fast as the network goes.
        self.download_rate_bps: float | None = None
        self._task: asyncio.Task[None] | None = None

    def _state(self) -> State:
        value = self.get(3)
        return State(value) if isinstance(value, int) else State.IDLE

    def _enter(self, state: State, result: Result | None = None) -> None:
        self.set(3, int(state))
        if result is not None:
            self.set(5, int(result))

    def _cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        self.package = b""
        self._enter(State.IDLE, Result.INITIAL)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.ensure_future(coro)

    async def write(self, resource_id: int, value: object, *, merge: bool = False) -> None:
        if resource_id == 0:
            await self._write_package(value)
            return
        if resource_id == 1:
            await self._write_uri(value)
            return
        await super().write(resource_id, value, merge=merge)

    async def _write_package(self, value: object) -> None:
        if not isinstance(value, bytes):
            raise BadRequest("Package must be opaque")
        if not value:
            self._cancel()
            return
        if self._state() is not State.IDLE:
            raise BadRequest(f"cannot accept a package in state {self._state().name}")
        self._enter(State.DOWNLOADING, Result.INITIAL)
        try:
            await self.installer.check(value)
        except FirmwareError as exc:
            logger.warning("firmware package refused: %s", exc)
            self._enter(State.IDLE, exc.result)
            return
        self.package = value
        self._enter(State.DOWNLOADED)

    async def _write_uri(self, value: object) -> None:
        if not isinstance(value, str):
            raise BadRequest("Package URI must be a string")
        self._values[1] = value
        if value == "":
            self._cancel()
            return
        if self._state() is not State.IDLE:
            raise BadRequest(f"cannot start a download in state {self._state().name}")
        scheme = urllib.parse.urlsplit(value).scheme.lower()
        if scheme not in ("coap", "coaps", "http", "https"):
            self._enter(State.IDLE, Result.UNSUPPORTED_PROTOCOL if scheme else Result.INVALID_URI)
            return
        self._enter(State.DOWNLOADING, Result.INITIAL)
        self._spawn(self._download(value))

    async def _download(self, uri: str) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            package = await self.fetch(uri)
            rate = self.download_rate_bps
            if rate is not None and rate > 0:
                # The endpoint follows Block2 at network speed; the simulated
                # link is slower: hold Downloading until the bytes "arrived".
                remaining = len(package) / rate - (loop.time() - started)
                if remaining > 0:
                    await asyncio.sleep(remaining)
            await self.installer.check(package)
        except FirmwareError as exc:
            logger.warning("firmware download of %s failed: %s", uri, exc)
            self._enter(State.IDLE, exc.result)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("firmware download of %s failed: %s", uri, exc)
            self._enter(State.IDLE, Result.CONNECTION_LOST)
            return
        self.package = package
        self._enter(State.DOWNLOADED)

    async def fetch(self, uri: str) -> bytes:
        """Download ``uri`` over CoAP (our own endpoint, Block2) or HTTP(S)."""
        parts = urllib.parse.urlsplit(uri)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            return await asyncio.to_thread(_http_get, uri)
        if not parts.hostname:
            raise FirmwareError(Result.INVALID_URI, f"{uri!r} has no host")
        if self.client.local_address is None:
            raise FirmwareError(Result.CONNECTION_LOST, "client is not running")
        try:
            address = await self.client.resolve(f"{scheme}://{parts.netloc}")
        except (OSError, ValueError) as exc:
            raise FirmwareError(Result.INVALID_URI, str(exc)) from None
        try:
            if scheme == "coaps":
                endpoint = await self._secure_endpoint(address)
            else:
                # IPv4 or IPv6, as the package URI's host resolved.
                endpoint = await self.client.plain_endpoint(address)
        except OSError as exc:
            raise FirmwareError(Result.CONNECTION_LOST, str(exc)) from None
        segments = tuple(urllib.parse.unquote(s) for s in parts.path.split("/") if s)
        query = tuple(urllib.parse.unquote(q) for q in parts.query.split("&") if q)
        try:
            response = await endpoint.request(
                Message(code=Code.GET, uri_path=segments, uri_query=query), address, timeout=120.0
            )
        except RequestEntityTooLarge as exc:
            raise FirmwareError(Result.NOT_ENOUGH_FLASH, str(exc)) from None
        except CoapError as exc:
            raise FirmwareError(Result.CONNECTION_LOST, str(exc)) from None
        if response.code == Code.NOT_FOUND:
            raise FirmwareError(Result.INVALID_URI, f"{uri} not found")
        if response.code != Code.CONTENT:
            raise FirmwareError(
                Result.CONNECTION_LOST, f"{uri} answered {Code.from_byte(response.code)}"
            )
        return response.payload

    async def _secure_endpoint(self, address: tuple[str, int]) -> Endpoint:
        """The DTLS socket of the LwM2M server at ``address``, else of the first coaps server."""
        accounts = [
            session.account
            for session in self.client.sessions.values()
            if urllib.parse.urlsplit(session.account.uri).scheme.lower() == "coaps"
        ]
        if not accounts:
            raise FirmwareError(
                Result.UNSUPPORTED_PROTOCOL, "coaps download needs a coaps server's credentials"
            )
        chosen = accounts[0]
        for account in accounts:
            try:
                if await self.client.resolve(account.uri) == address:
                    chosen = account
                    break
            except (OSError, ValueError):
                continue
        try:
            endpoint = await self.client.endpoint_for(chosen, address)
        except LwM2MError as exc:
            raise FirmwareError(Result.UNSUPPORTED_PROTOCOL, str(exc)) from None
        from lwm2m.coap.tcp_transport import TcpEndpoint

        if isinstance(endpoint, TcpEndpoint):  # only coaps:// accounts were chosen
            raise FirmwareError(Result.UNSUPPORTED_PROTOCOL, "coaps download needs a UDP account")
        return endpoint

    @execute(2)
    def update(self, args: str) -> None:
        if self._state() is not State.DOWNLOADED:
            raise MethodNotAllowed(f"Update needs state Downloaded, not {self._state().name}")
        self._enter(State.UPDATING)
        self._spawn(self._install())

    async def _install(self) -> None:
        try:
            name, version = await self.installer.install(self.package)
        except FirmwareError as exc:
            self._enter(State.DOWNLOADED, exc.result)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("firmware install failed")
            self._enter(State.DOWNLOADED, Result.UPDATE_FAILED)
            return
        self.package = b""
        self.set(6, name)
        self.set(7, version)
        device = self.client.instance(3, 0)
        if device is not None:
            device.set(3, version)
        self._enter(State.IDLE, Result.SUCCESS)
        logger.info("%s: firmware %s %s installed", self.client.endpoint_name, name, version)
        # The new firmware "boots": tell the servers at once (they confirm /3/0/3).
        self.client.trigger_update()


def _http_get(uri: str) -> bytes:
    try:
        with urllib.request.urlopen(uri, timeout=60) as response:
            data: bytes = response.read(MAX_PACKAGE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise FirmwareError(
            Result.INVALID_URI if exc.code == 404 else Result.CONNECTION_LOST, str(exc)
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise FirmwareError(Result.CONNECTION_LOST, str(exc)) from None
    if len(data) > MAX_PACKAGE_BYTES:
        raise FirmwareError(Result.NOT_ENOUGH_FLASH, "package larger than 64 MiB")
    return data
