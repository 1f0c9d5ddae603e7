"""Client side of the Bootstrap Interface: Request Bootstrap, Bootstrap-Write/Delete/
Discover/Finish, and unbootstrapping (seed 7.1, 5.1.2.3, D.1.2).

:class:`ClientBootstrap` plugs into :class:`~lwm2m.client.client.LwM2MClient`
through its two seams: it becomes the client's ``bootstrap_request_handler``
(every request from the bootstrap server's address: only the Bootstrap-Server
account may write Security objects or delete through the Bootstrap Interface;
an LwM2M Server's requests never get here) and its ``bootstrapper``
(client-initiated bootstrap when there is no server account, registration
keeps failing, or the Bootstrap-Request Trigger is executed).

Client initiated: ``POST /bs?ep=..[&ept=..][&pct=..]`` to the URI of the
Bootstrap-Server account, then the writes, then Bootstrap-Finish, which is
validated (:func:`check_bootstrap_result`): 2.04 and registration to the new
servers, or 4.06 Not Acceptable naming the inconsistency. Server initiated:
the same requests arriving without a Request Bootstrap are accepted at any
time from the bootstrap server; Bootstrap-Finish then re-registers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lwm2m.client import payload_codec
from lwm2m.client.bootstrap.unbootstrap import AclState, UnbootstrapPlan, plan_unbootstrap
from lwm2m.client.config import ClientConfigError, parse_server_uri
from lwm2m.coap.codes import Code
from lwm2m.coap.errors import CoapError
from lwm2m.coap.message import Message
from lwm2m.formats import registry as formats
from lwm2m.formats.errors import FormatError
from lwm2m.formats.link_format import Link, format_param
from lwm2m.formats.media import ContentFormat
from lwm2m.model.nodes import LwM2MObject, Node, ObjectInstance, Resource, ResourceInstance
from lwm2m.model.path import Path, PathError
from lwm2m.protocol.errors import LwM2MError
from lwm2m.protocol.registration import BootstrapRequestParams

if TYPE_CHECKING:
    from lwm2m.client.client import LwM2MClient
    from lwm2m.client.scheduler import Timer
    from lwm2m.client.store import ObjectStore
    from lwm2m.coap.endpoint import IncomingRequest

logger = logging.getLogger(__name__)

SECURITY = 0
SERVER = 1
ACCESS_CONTROL = 2
DEVICE = 3


@dataclass(frozen=True, slots=True)
class BootstrapOptions:
    """How the client runs client-initiated bootstrap."""

    #: Wait this long for Bootstrap-Finish after the 2.04 to Request Bootstrap.
    finish_timeout_s: float = 120.0
    #: Timeout of the Request Bootstrap exchange itself (None: CoAP's own).
    request_timeout_s: float | None = None
    retry_initial_s: float = 2.0
    retry_max_s: float = 120.0
    #: Give up after this many Request Bootstrap attempts (None: keep trying).
    max_attempts: int | None = None
    #: ``pct`` sent with Request Bootstrap; None: SenML CBOR for LwM2M 1.1+, nothing for 1.0.
    preferred_content_format: int | None = None


# ----------------------------------------------------------------------------- checks


def check_bootstrap_result(store: ObjectStore) -> list[str]:
    """Inconsistencies of the provisioned accounts (empty: Bootstrap-Finish may succeed).

    Rules: at most one Bootstrap-Server account; every other Security instance
    has a valid URI and a Short Server ID used by no other Security instance and
    matched by exactly one Server instance; every Server instance has a Security
    instance; at least one LwM2M Server account exists.
    """
    problems: list[str] = []
    security_ssids: dict[int, int] = {}
    bootstrap_accounts = 0
    for sec in store.instances(SECURITY):
        where = f"/0/{sec.id}"
        uri = sec.get(0)
        if sec.get(1) is True:
            bootstrap_accounts += 1
            if not isinstance(uri, str):
                problems.append(f"{where}: bootstrap account without a URI")
            continue
        if not isinstance(uri, str):
            problems.append(f"{where}: no LwM2M Server URI")
        else:
            try:
                parse_server_uri(uri)
            except ClientConfigError as exc:
                problems.append(f"{where}: {exc}")
        ssid = sec.get(10)
        if not isinstance(ssid, int) or isinstance(ssid, bool) or not 1 <= ssid <= 65534:
            problems.append(f"{where}: no valid Short Server ID")
            continue
        if ssid in security_ssids:
            problems.append(
                f"{where}: Short Server ID {ssid} is also used by /0/{security_ssids[ssid]}"
            )
            continue
        security_ssids[ssid] = sec.id
    if bootstrap_accounts > 1:
        problems.append(f"{bootstrap_accounts} Bootstrap-Server accounts")
    server_ssids: dict[int, int] = {}
    for srv in store.instances(SERVER):
        where = f"/1/{srv.id}"
        ssid = srv.get(0)
        if not isinstance(ssid, int) or isinstance(ssid, bool):
            problems.append(f"{where}: no Short Server ID")
            continue
        if ssid in server_ssids:
            problems.append(
                f"{where}: Short Server ID {ssid} is also used by /1/{server_ssids[ssid]}"
            )
            continue
        server_ssids[ssid] = srv.id
        if ssid not in security_ssids:
            problems.append(f"{where}: Short Server ID {ssid} has no Security instance")
    for ssid, iid in sorted(security_ssids.items()):
        if ssid not in server_ssids:
            problems.append(f"/0/{iid}: Short Server ID {ssid} has no Server instance")
    if not set(security_ssids) & set(server_ssids):
        problems.append("no LwM2M Server account")
    return problems


def node_values(node: ObjectInstance) -> dict[int, object]:
    """An instance node as the ``{resource ID: value}`` mapping the store takes."""
    values: dict[int, object] = {}
    for rid, res in node.resources.items():
        values[rid] = dict(res.instances) if res.instances is not None else res.value
    return values


def acl_states(store: ObjectStore) -> list[AclState]:
    """The Access Control instances of a store as plain data for :func:`plan_unbootstrap`."""
    states: list[AclState] = []
    for inst in store.instances(ACCESS_CONTROL):
        oid, iid, acl, owner = inst.get(0), inst.get(1), inst.get(2), inst.get(3)
        if not isinstance(oid, int) or not isinstance(iid, int):
            continue
        rights = (
            {k: v for k, v in acl.items() if isinstance(v, int)} if isinstance(acl, dict) else {}
        )
        states.append(AclState(inst.id, oid, iid, rights, owner if isinstance(owner, int) else 0))
    return states


# ----------------------------------------------------------------------------- the handler


class ClientBootstrap:
    """The client's Bootstrap Interface; :meth:`install` plugs it into an LwM2MClient."""

    def __init__(self, client: LwM2MClient, options: BootstrapOptions | None = None) -> None:
        self.client = client
        self.options = options or BootstrapOptions()
        self._finish: asyncio.Future[None] | None = None
        self.last_error: str | None = None
        self.finished_count = 0
        self.unbootstrapped: list[UnbootstrapPlan] = []
        self._account_timer: Timer | None = None

    def install(self) -> ClientBootstrap:
        self.client.bootstrap_request_handler = self.handle
        self.client.bootstrapper = self.request_bootstrap
        return self

    # -- Request Bootstrap (client initiated) ---------------------------------------------

    def _pct(self) -> int | None:
        if self.options.preferred_content_format is not None:
            return self.options.preferred_content_format
        if self.client.config.lwm2m_version == "1.0":
            return None
        return int(ContentFormat.SENML_CBOR)

    async def request_bootstrap(self, client: LwM2MClient) -> bool:
        """The client's ``bootstrapper``: Request Bootstrap until a Bootstrap-Finish succeeds."""
        attempts = 0
        delay = self.options.retry_initial_s
        account = client.store.bootstrap_account()
        if account is not None and account.client_hold_off_s > 0:
            # Security resource 11: wait before a Client Initiated Bootstrap.
            await asyncio.sleep(account.client_hold_off_s)
        while self.options.max_attempts is None or attempts < self.options.max_attempts:
            attempts += 1
            if await self._attempt(client):
                return True
            if self.options.max_attempts is not None and attempts >= self.options.max_attempts:
                break
            await asyncio.sleep(delay * client.rng.uniform(0.8, 1.2))
            delay = min(delay * 2, self.options.retry_max_s)
        return False

    async def _attempt(self, client: LwM2MClient) -> bool:
        account = client.store.bootstrap_account()
        if account is None:
            self.last_error = "no Bootstrap-Server account"
            logger.warning("%s: cannot bootstrap: %s", client.endpoint_name, self.last_error)
            return False
        try:
            address = await client.resolve(account.uri)
            endpoint = await client.endpoint_for(account, address)
        except (OSError, LwM2MError, ClientConfigError) as exc:
            self.last_error = f"bootstrap server {account.uri} unusable: {exc}"
            logger.warning("%s: %s", client.endpoint_name, self.last_error)
            return False
        client.expect_bootstrap_from(address)
        loop = asyncio.get_running_loop()
        self._finish = loop.create_future()
        params = BootstrapRequestParams(
            client.config.endpoint, client.config.endpoint_type, self._pct()
        )
        message = Message(Code.POST, uri_path=("bs",), uri_query=params.to_query())
        logger.info("%s: Request Bootstrap to %s", client.endpoint_name, account.uri)
        try:
            response = await endpoint.request(
                message, address, timeout=self.options.request_timeout_s
            )
        except CoapError as exc:
            self.last_error = (
                f"Request Bootstrap to {account.uri} failed: {exc or type(exc).__name__}"
            )
            logger.warning("%s: %s", client.endpoint_name, self.last_error)
            return False
        if response.code != Code.CHANGED:
            detail = response.payload[:200].decode("utf-8", errors="replace")
            code = response.code.dotted if isinstance(response.code, Code) else str(response.code)
            self.last_error = f"Request Bootstrap refused: {code} {detail}".strip()
            logger.warning("%s: %s", client.endpoint_name, self.last_error)
            return False
        try:
            await asyncio.wait_for(asyncio.shield(self._finish), self.options.finish_timeout_s)
        except TimeoutError:
            self.last_error = "no valid Bootstrap-Finish in time"
            logger.warning("%s: %s", client.endpoint_name, self.last_error)
            return False
        finally:
            self._finish = None
        return True

    # -- requests from the bootstrap server ------------------------------------------------

    async def handle(self, request: IncomingRequest) -> Message:
        """Serve one request of the Bootstrap-Server account."""
        message = request.message
        if self.client.store.bootstrap_account() is None:
            # The account was purged (Bootstrap-Server Account Timeout): nobody may bootstrap.
            return _error(Code.UNAUTHORIZED, "no Bootstrap-Server account")
        try:
            if message.uri_path == ("bs",):
                if message.code != Code.POST:
                    return Message(Code.METHOD_NOT_ALLOWED)
                return self._finish_request(message)
            path = Path.from_segments(message.uri_path)
            if message.code == Code.PUT:
                return await self._write(path, message)
            if message.code == Code.DELETE:
                return self._delete(path)
            if message.code == Code.GET:
                if message.accept not in (None, int(ContentFormat.LINK_FORMAT)) and (
                    self.client.config.lwm2m_version != "1.0"
                ):
                    return await self._read(path, message.accept)
                return self._discover(path, message)
            return Message(Code.METHOD_NOT_ALLOWED)
        except PathError as exc:
            return _error(Code.BAD_REQUEST, str(exc))
        except FormatError as exc:
            return _error(Code.BAD_REQUEST, str(exc))
        except LwM2MError as exc:
            return _error(exc.code, exc.message)

    async def _write(self, path: Path, message: Message) -> Message:
        """Bootstrap-Write: an object, an instance or a resource; instances are created as needed."""
        if path.is_root or path.is_resource_instance:
            return _error(
                Code.BAD_REQUEST, "Bootstrap-Write targets an object, instance or resource"
            )
        assert path.object_id is not None
        store = self.client.store
        if (
            store.get_object(path.object_id) is None
            and self.client.registry.object(path.object_id) is None
        ):
            return _error(Code.NOT_FOUND, f"object {path.object_id} is not supported")
        fmt = message.content_format
        if fmt is None:
            if not path.is_resource:
                return _error(Code.BAD_REQUEST, "Bootstrap-Write without Content-Format")
            fmt = int(ContentFormat.TEXT)
        try:
            formats.codec(fmt)
        except FormatError:
            return _error(Code.UNSUPPORTED_CONTENT_FORMAT, f"content format {fmt} not supported")
        node: Node = formats.decode(message.payload, path, fmt, self.client.registry)
        if isinstance(node, LwM2MObject):
            for inst in node.instances.values():
                await store.write_instance(path.object_id, inst.id, node_values(inst), replace=True)
        elif isinstance(node, ObjectInstance):
            assert path.instance_id is not None
            await store.write_instance(
                path.object_id, path.instance_id, node_values(node), replace=True
            )
        elif isinstance(node, Resource):
            assert path.instance_id is not None
            value = dict(node.instances) if node.instances is not None else node.value
            await store.write_instance(path.object_id, path.instance_id, {node.id: value})
        elif isinstance(node, ResourceInstance):  # pragma: no cover - excluded above
            return _error(Code.BAD_REQUEST, "Bootstrap-Write of a resource instance")
        self.client.state_changed()
        return Message(Code.CHANGED)

    def _delete(self, path: Path) -> Message:
        """Bootstrap-Delete of ``/``, ``/o`` or ``/o/i``, with unbootstrapping (D.1.2)."""
        if path.depth > 2:
            return _error(Code.BAD_REQUEST, "Bootstrap-Delete targets /, an object or an instance")
        store = self.client.store
        targets: list[tuple[int, int]] = []
        for obj in store.objects():
            if path.object_id is not None and obj.id != path.object_id:
                continue
            if path.is_root and obj.id == DEVICE:
                continue  # the Device object is never deleted (LwM2M 1.1 E.1 / 6.1.7.5)
            for inst in obj:
                if path.instance_id is not None and inst.id != path.instance_id:
                    continue
                if obj.id == SECURITY and inst.get(1) is True:
                    if path.is_instance:
                        return _error(
                            Code.BAD_REQUEST, "the Bootstrap-Server account cannot be deleted"
                        )
                    continue  # kept by / and /0
                targets.append((obj.id, inst.id))
        # Unbootstrapping first: it needs the ACLs and Server instances as they are.
        # A server is removed when its last Security instance goes.
        deleted_security = {iid for oid, iid in targets if oid == SECURITY}
        remaining = self._remaining_ssids(store, excluding=deleted_security)
        removed_ssids: set[int] = set()
        for iid in deleted_security:
            ssid = _instance_value(store, SECURITY, iid, 10)
            if isinstance(ssid, int) and not isinstance(ssid, bool) and ssid not in remaining:
                removed_ssids.add(ssid)
        for oid, iid in targets:
            if oid == SECURITY and store.instance(oid, iid) is not None:
                store.delete_instance(oid, iid)
        for ssid in sorted(removed_ssids):
            self._unbootstrap(ssid)
        for oid, iid in targets:
            if store.instance(oid, iid) is not None:
                store.delete_instance(oid, iid)
                self.client.observations.remove_under(Path(oid, iid))
        self.client.state_changed()
        return Message(Code.DELETED)

    @staticmethod
    def _remaining_ssids(store: ObjectStore, *, excluding: set[int]) -> set[int]:
        result: set[int] = set()
        for sec in store.instances(SECURITY):
            ssid = sec.get(10)
            if sec.id not in excluding and sec.get(1) is not True and isinstance(ssid, int):
                result.add(ssid)
        return result

    def _unbootstrap(self, ssid: int) -> None:
        """Apply D.1.2 for server ``ssid`` whose Security instance was just deleted."""
        store = self.client.store
        servers: dict[int, int] = {}
        for srv in store.instances(SERVER):
            value = srv.get(0)
            if isinstance(value, int) and not isinstance(value, bool):
                servers[srv.id] = value
        plan = plan_unbootstrap(ssid, acl_states(store), servers)
        self.unbootstrapped.append(plan)
        # 1 and 4: instances only S could access, and S's Server instance.
        for path in plan.delete_instances:
            assert path.object_id is not None and path.instance_id is not None
            if store.instance(path.object_id, path.instance_id) is not None:
                store.delete_instance(path.object_id, path.instance_id)
                self.client.observations.remove_under(path)
        for iid in plan.delete_acl_instances:
            if store.instance(ACCESS_CONTROL, iid) is not None:
                store.delete_instance(ACCESS_CONTROL, iid)
        # 2: S's ACL entries removed, ownership handed over.
        for updated in plan.update_acl_instances:
            inst = store.instance(ACCESS_CONTROL, updated.acl_instance)
            if inst is None:
                continue
            if updated.acl:
                inst.set(2, dict(updated.acl))
            else:
                inst.unset(2)
            inst.set(3, updated.owner)
        # 3: S's observations.
        self.client.observations.remove_server(ssid)
        # 5: De-register from S when it is reachable (after this response goes out).
        session = self.client.sessions.get(ssid)
        if session is not None and session.registered:
            logger.info(
                "%s: server %d unbootstrapped, de-registering", self.client.endpoint_name, ssid
            )

            async def deregister() -> None:
                await session.deregister()

            self.client.after_response(deregister)
        logger.info(
            "%s: unbootstrapped server %d: deleted %s, ownership changes %s",
            self.client.endpoint_name,
            ssid,
            [str(p) for p in plan.delete_instances],
            [(c.acl_instance, c.new_owner) for c in plan.owner_changes],
        )

    async def _read(self, path: Path, accept: int) -> Message:
        """Bootstrap-Read (LwM2M 1.1, 6.1.7.2): the Server or Access Control object only.

        A GET whose Accept is not link format (link format or none is Bootstrap-
        Discover). The Security object holds the keys and is never readable over
        any interface: 4.01 Unauthorized (Access Right Permission Denied), as for a
        server's Read of it; any other object, the root or a resource is outside
        the operation's scope: 4.00 Bad Request. Missing instance 4.04, unsupported
        Accept 4.06. The answer is not ACL-filtered: access control does not apply
        to the Bootstrap-Server account.
        """
        if path.object_id == SECURITY:
            return _error(Code.UNAUTHORIZED, "the Security object cannot be read")
        if path.object_id not in (SERVER, ACCESS_CONTROL) or path.depth > 2:
            return _error(
                Code.BAD_REQUEST,
                "Bootstrap-Read targets the Server or Access Control object or one instance",
            )
        node = await self.client.dispatcher.read_node(path, None)
        fmt = payload_codec.response_format(accept, node, self.client.default_format)
        payload = payload_codec.encode(node, path, fmt, self.client.registry)
        return Message(Code.CONTENT, payload=payload, content_format=fmt)

    def _discover(self, path: Path, message: Message) -> Message:
        """Bootstrap-Discover on ``/`` or ``/o`` (link format with ``ssid``/``uri``)."""
        if message.accept not in (None, int(ContentFormat.LINK_FORMAT)):
            return _error(Code.NOT_ACCEPTABLE, "Bootstrap-Discover answers in link format only")
        if path.depth > 1:
            return _error(Code.BAD_REQUEST, "Bootstrap-Discover targets / or an object")
        store = self.client.store
        links: list[Link] = []
        for obj in store.objects():
            if path.object_id is not None and obj.id != path.object_id:
                continue
            instances = list(obj)
            if not instances:
                links.append(Link(f"/{obj.id}"))
                continue
            for inst in instances:
                params: list[tuple[str, str | None]] = []
                if obj.id == SECURITY:
                    ssid = inst.get(10)
                    if inst.get(1) is not True and isinstance(ssid, int):
                        params.append(("ssid", str(ssid)))
                    uri = inst.get(0)
                    if isinstance(uri, str):
                        params.append(("uri", uri))
                elif obj.id == SERVER:
                    ssid = inst.get(0)
                    if isinstance(ssid, int):
                        params.append(("ssid", str(ssid)))
                links.append(Link(f"/{obj.id}/{inst.id}", tuple(params)))
        version = "1.0" if self.client.config.lwm2m_version == "1.0" else "1.1"
        body = f'</>;lwm2m="{version}",' + ",".join(_discover_link(link) for link in links)
        return Message(
            Code.CONTENT,
            payload=body.encode("utf-8"),
            content_format=int(ContentFormat.LINK_FORMAT),
        )

    def _arm_account_timeout(self) -> None:
        """Security resource 12: purge the Bootstrap-Server account that long after Finish."""
        if self._account_timer is not None:
            self._account_timer.cancel()
            self._account_timer = None
        timeout = _account_timeout(self.client.store)
        if timeout > 0:
            self._account_timer = self.client.scheduler.call_later(timeout, self._purge_account)

    def _purge_account(self) -> None:
        self._account_timer = None
        store = self.client.store
        for sec in store.instances(SECURITY):
            if sec.get(1) is True:
                store.delete_instance(SECURITY, sec.id)
        self.client.state_changed()
        logger.info(
            "%s: Bootstrap-Server account timed out and was purged", self.client.endpoint_name
        )

    def _finish_request(self, message: Message) -> Message:
        """Bootstrap-Finish: validate, then register to the new accounts."""
        if message.payload or message.uri_query:
            return _error(Code.BAD_REQUEST, "Bootstrap-Finish carries no payload or query")
        problems = check_bootstrap_result(self.client.store)
        if problems:
            self.last_error = "; ".join(problems)
            logger.warning(
                "%s: Bootstrap-Finish refused: %s", self.client.endpoint_name, self.last_error
            )
            return _error(Code.NOT_ACCEPTABLE, self.last_error)
        self.finished_count += 1
        self.last_error = None
        self._arm_account_timeout()
        waiting = self._finish
        if waiting is not None and not waiting.done():
            waiting.set_result(None)  # the bootstrapper re-registers
        else:
            client = self.client

            async def reregister() -> None:
                client.bootstrapped = True
                client.save_state()
                await client.restart_sessions()

            client.after_response(reregister)
        logger.info("%s: Bootstrap-Finish accepted", self.client.endpoint_name)
        return Message(Code.CHANGED)


def _account_timeout(store: ObjectStore) -> int:
    for sec in store.instances(SECURITY):
        value = sec.get(12)
        if sec.get(1) is True and isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def _discover_link(link: Link) -> str:
    """``<target>;ssid=N;uri="..."``: the URI always quoted, as in the LwM2M examples."""
    parts = [f"<{link.target}>"]
    for name, value in link.params:
        if name == "uri" and value is not None:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'uri="{escaped}"')
        else:
            parts.append(format_param(name, value))
    return ";".join(parts)


def _instance_value(store: ObjectStore, oid: int, iid: int, rid: int) -> Any:
    inst = store.instance(oid, iid)
    return None if inst is None else inst.get(rid)


def _error(code: Code, text: str) -> Message:
    return Message(code, payload=text.encode("utf-8"), content_format=int(ContentFormat.TEXT))


def install_bootstrap(
    client: LwM2MClient, options: BootstrapOptions | None = None
) -> ClientBootstrap:
    """Make ``client`` bootstrap-capable (client- and server-initiated); returns the handler."""
    return ClientBootstrap(client, options).install()


__all__ = [
    "BootstrapOptions",
    "ClientBootstrap",
    "acl_states",
    "check_bootstrap_result",
    "install_bootstrap",
    "node_values",
]
