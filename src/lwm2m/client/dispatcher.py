"""Requests from LwM2M servers to the client: Device Management and Information Reporting.

One method per operation; each checks access rights, runs the operation on
the :class:`~lwm2m.client.store.ObjectStore` and returns the response message.
Every failure is an :class:`~lwm2m.protocol.errors.LwM2MError` mapped to its
code in :meth:`RequestDispatcher.handle`, so no request can crash the client.

Operation mapping (LwM2M 1.1 Table 6.x): GET Read / Discover (Accept
link-format) / Observe (Observe=0) / cancel (Observe=1); FETCH Read- and
Observe-Composite; PUT Write (replace) or Write-Attributes (query, no
payload); POST Create (object), partial Write (instance), Execute (resource);
iPATCH Write-Composite; DELETE Delete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lwm2m.client import payload_codec
from lwm2m.client.acl import AccessControl, Permission
from lwm2m.client.instance import Instance, check_arguments
from lwm2m.client.link_payloads import discover_payload
from lwm2m.client.observe import AttributeStore, Observation, ObservationManager
from lwm2m.client.store import ACCESS_CONTROL, DEVICE, SECURITY, SERVER, ObjectStore
from lwm2m.client.stored_values import Stored
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer
from lwm2m.formats.media import ContentFormat
from lwm2m.model.nodes import LwM2MObject, Node, ObjectInstance, Resource, ResourceInstance
from lwm2m.model.path import Path, PathError
from lwm2m.model.types import ResourceType
from lwm2m.protocol.attributes import AttributeError_, parse_attribute_query
from lwm2m.protocol.errors import (
    BadRequest,
    LwM2MError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    Unauthorized,
)

logger = logging.getLogger(__name__)


class ServerRequest(Protocol):
    """A request from an LwM2M server, as the dispatcher uses it.

    An :class:`lwm2m.coap.endpoint.IncomingRequest`; the name keeps ``Request``
    to the server's typed requests (:mod:`lwm2m.server.operations`).
    """

    @property
    def message(self) -> Message: ...

    @property
    def peer(self) -> Peer: ...

    def start_observation(self, on_cancel: Callable[[], None] | None = None) -> object: ...


@dataclass(slots=True)
class Hooks:
    """What the dispatcher tells the client about."""

    server_for: Callable[[Peer], int | None]  # Short Server ID of a peer, None: a stranger
    changed: Callable[[], None]  # persistent state changed (save it)
    default_format: Callable[[int], int]  # ssid -> multi-value format


def _response(
    code: Code, payload: bytes = b"", fmt: int | None = None, **options: object
) -> Message:
    message = Message(
        code=code, payload=payload, content_format=fmt if payload or fmt is not None else None
    )
    return message.with_(**options) if options else message


def resource_node(inst: Instance, rid: int, value: Stored) -> Resource:
    rtype = inst.resource_type(rid)
    if isinstance(value, dict):
        return Resource.multiple(rid, value, rtype)
    return Resource.single(rid, value, rtype)


class RequestDispatcher:
    def __init__(
        self,
        store: ObjectStore,
        acl: AccessControl,
        attributes: AttributeStore,
        observations: ObservationManager,
        hooks: Hooks,
    ) -> None:
        self.store = store
        self.acl = acl
        self.attributes = attributes
        self.observations = observations
        self.hooks = hooks
        self.served = 0

    @property
    def model(self):  # type: ignore[no-untyped-def]
        return self.store.registry

    # -- entry point ---------------------------------------------------------------------

    async def handle(self, request: ServerRequest) -> Message:
        self.served += 1
        message = request.message
        try:
            ssid = self.hooks.server_for(request.peer)
            if ssid is None:
                raise Unauthorized(f"{request.peer.address} is not a server of this client")
            return await self._dispatch(request, ssid)
        except LwM2MError as exc:
            logger.debug("%s %s -> %s", Code.from_byte(message.code), message.path_str, exc)
            return _response(exc.code, exc.message.encode()[:200])
        except Exception:
            logger.exception("request %s %s failed", message.code, message.path_str)
            return _response(Code.INTERNAL_SERVER_ERROR)

    def _path(self, message: Message) -> Path:
        try:
            return Path.from_segments(message.uri_path)
        except PathError as exc:
            raise BadRequest(f"invalid path: {exc}") from None

    async def _dispatch(self, request: ServerRequest, ssid: int) -> Message:
        message = request.message
        code = message.code
        if code == Code.FETCH:
            return await self.read_composite(request, ssid)
        if code == Code.IPATCH:
            return await self.write_composite(message, ssid)
        path = self._path(message)
        if path.is_root:
            raise MethodNotAllowed("operation not allowed on the root path")
        if code == Code.GET:
            if message.accept == ContentFormat.LINK_FORMAT:
                return self.discover(path, ssid)
            if message.observe == 0:
                return await self.observe(request, path, ssid)
            if message.observe == 1:
                self.observations.remove(ssid, message.token)
            return await self.read(path, ssid, message.accept)
        if code == Code.PUT:
            if not message.payload and message.content_format is None and message.uri_query:
                return self.write_attributes(path, ssid, message.uri_query)
            return await self.write(path, ssid, message, replace=True)
        if code == Code.POST:
            if path.depth == 1:
                return await self.create(path, ssid, message)
            if path.depth == 2:
                return await self.write(path, ssid, message, replace=False)
            if path.depth == 3:
                return await self.execute_or_append(path, ssid, message)
            raise MethodNotAllowed("POST is not allowed on a resource instance")
        if code == Code.DELETE:
            return await self.delete(path, ssid)
        raise MethodNotAllowed(f"method {code} is not supported")

    # -- lookups -------------------------------------------------------------------------

    def _instance(self, path: Path) -> Instance:
        obj = self.store.get_object(path.object_id or 0)
        if obj is None:
            raise NotFound(f"object {path.object_id} not found")
        inst = obj.instances.get(path.instance_id or 0)
        if inst is None:
            raise NotFound(f"/{path.object_id}/{path.instance_id} not found")
        return inst

    def _exists(self, path: Path) -> None:
        obj = self.store.get_object(path.object_id or 0)
        if obj is None:
            raise NotFound(f"object {path.object_id} not found")
        if path.depth == 1:
            return
        inst = self._instance(path)
        if path.depth >= 3 and not inst.has_resource(path.resource_id or 0):
            raise NotFound(f"{path} not found")
        if path.depth == 4:
            value = inst.get(path.resource_id or 0)
            if not isinstance(value, dict) or path.resource_instance_id not in value:
                raise NotFound(f"{path} not found")

    def _check(self, ssid: int, path: Path, needed: Permission) -> None:
        if path.object_id == SECURITY:
            raise Unauthorized("the Security object is not accessible to servers")
        self.acl.check(ssid, path.object_id or 0, path.instance_id or 0, needed)

    # -- Read ----------------------------------------------------------------------------

    async def read_instance_node(self, inst: Instance) -> ObjectInstance:
        resources: list[Resource] = []
        for rid in inst.resource_ids():
            if not inst.operations(rid).readable:
                continue
            try:
                value = await inst.read(rid)
            except LwM2MError:
                continue
            resources.append(resource_node(inst, rid, value))
        return ObjectInstance.of(inst.id, resources)

    async def read_node(self, path: Path, ssid: int | None) -> Node:
        """The node at ``path`` (ACL-checked for ``ssid``; ``None``: no check)."""
        obj = self.store.get_object(path.object_id or 0)
        if obj is None:
            raise NotFound(f"object {path.object_id} not found")
        if path.depth == 1:
            if ssid is not None and path.object_id == SECURITY:
                raise Unauthorized("the Security object is not accessible to servers")
            instances = []
            for inst in obj:
                if ssid is None or Permission.READ in self.acl.rights(ssid, obj.id, inst.id):
                    instances.append(await self.read_instance_node(inst))
            if ssid is not None and obj.instances and not instances:
                raise Unauthorized(f"no readable instance of object {obj.id}")
            return LwM2MObject.of(obj.id, instances)
        inst = self._instance(path)
        if ssid is not None:
            self._check(ssid, path, Permission.READ)
        if path.depth == 2:
            return await self.read_instance_node(inst)
        rid = path.resource_id or 0
        known = inst.has_resource(rid) or inst.resource_def(rid) is not None
        if known and not inst.operations(rid).readable:
            raise MethodNotAllowed(f"{path} is not readable")
        if not inst.has_resource(rid):
            raise NotFound(f"{path} not found")
        value = await inst.read(rid)
        if path.depth == 3:
            return resource_node(inst, rid, value)
        if not isinstance(value, dict) or path.resource_instance_id not in value:
            raise NotFound(f"{path} not found")
        return ResourceInstance(
            path.resource_instance_id or 0, value[path.resource_instance_id or 0]
        )

    async def read(self, path: Path, ssid: int, accept: int | None) -> Message:
        node = await self.read_node(path, ssid)
        fmt = payload_codec.response_format(accept, node, self.hooks.default_format(ssid))
        payload = payload_codec.encode(node, path, fmt, self.model)
        return _response(Code.CONTENT, payload, fmt)

    async def leaf_values(self, paths: tuple[Path, ...]) -> dict[Path, Stored]:
        """Current values under ``paths`` keyed by resource path (what observations compare)."""
        result: dict[Path, Stored] = {}
        for path in paths:
            if path.depth == 1:
                instances = self.store.instances(path.object_id or 0)
            else:
                inst = self.store.instance(path.object_id or 0, path.instance_id or 0)
                instances = [] if inst is None else [inst]
            for inst in instances:
                rids = inst.resource_ids() if path.depth <= 2 else [path.resource_id or 0]
                for rid in rids:
                    if not inst.operations(rid).readable or not inst.has_resource(rid):
                        continue
                    try:
                        value = await inst.read(rid)
                    except LwM2MError:
                        continue
                    rpath = inst.path.child(rid)
                    if path.depth == 4 and isinstance(value, dict):
                        ri = path.resource_instance_id or 0
                        if ri in value:
                            result[path] = value[ri]
                    else:
                        result[rpath] = value
        return result

    # -- Discover ------------------------------------------------------------------------

    def discover(self, path: Path, ssid: int) -> Message:
        if path.depth == 4:
            raise MethodNotAllowed("Discover is not allowed on a resource instance")
        if path.object_id == SECURITY:
            raise Unauthorized("the Security object is not accessible to servers")
        self._exists(path)
        attrs = {
            p: a
            for s, p, a in self.attributes.items()
            if s == ssid and p.startswith(Path(path.object_id))
        }
        payload = discover_payload(self.store, path, attrs)
        return _response(Code.CONTENT, payload, ContentFormat.LINK_FORMAT)

    # -- Write / Write-Attributes -------------------------------------------------------

    def _check_writable(self, inst: Instance, rid: int) -> None:
        if not inst.operations(rid).writable:
            if inst.resource_def(rid) is None and not inst.has_resource(rid):
                raise NotFound(f"{inst.path}/{rid} not found")
            raise MethodNotAllowed(f"{inst.path}/{rid} is not writable")

    async def write(self, path: Path, ssid: int, message: Message, *, replace: bool) -> Message:
        if path.depth == 1:
            raise MethodNotAllowed("Write on an object is not allowed")
        inst = self._instance(path)
        self._check(ssid, path, Permission.WRITE)
        node = payload_codec.decode(message.payload, path, message.content_format, self.model)
        await self.apply_write(inst, path, node, replace=replace)
        self.hooks.changed()
        return _response(Code.CHANGED)

    async def apply_write(self, inst: Instance, path: Path, node: Node, *, replace: bool) -> None:
        if isinstance(node, ObjectInstance):
            if node.id != inst.id:
                raise BadRequest(f"payload is for instance {node.id}, not {inst.id}")
            for res in node.resources.values():
                self._check_writable(inst, res.id)
            typed = {
                res.id: inst.typed(
                    res.id, res.value if res.instances is None else dict(res.instances)
                )
                for res in node.resources.values()
            }
            if replace:
                for rid in inst.resource_ids():
                    if rid not in typed and inst.operations(rid).writable and rid in inst._values:
                        rdef = inst.resource_def(rid)
                        if rdef is None or not rdef.mandatory:
                            inst.unset(rid)
            for rid, typed_value in typed.items():
                await inst.write(rid, typed_value, merge=not replace)
        elif isinstance(node, Resource):
            self._check_writable(inst, node.id)
            raw: object = node.value if node.instances is None else dict(node.instances)
            await inst.write(node.id, inst.typed(node.id, raw), merge=not replace)
        elif isinstance(node, ResourceInstance):
            rid = path.resource_id or 0
            self._check_writable(inst, rid)
            if not inst.is_multiple(rid):
                raise BadRequest(f"{path.parent} is not a multiple resource")
            await inst.write(rid, {node.id: node.value}, merge=True)
        else:
            raise BadRequest("payload does not match the path")

    def write_attributes(self, path: Path, ssid: int, query: tuple[str, ...]) -> Message:
        if path.depth == 4:
            raise MethodNotAllowed("Write-Attributes on a resource instance is not supported")
        self._exists(path)
        if path.depth >= 2:
            self._check(ssid, path, Permission.READ)
        elif path.object_id == SECURITY:
            raise Unauthorized("the Security object is not accessible to servers")
        try:
            update = parse_attribute_query(query)
        except AttributeError_ as exc:
            raise BadRequest(str(exc)) from None
        numeric = {"gt", "lt", "st"}
        touched = {name for name, _ in update.set}
        if touched & numeric:
            if path.depth != 3:
                raise BadRequest("gt, lt and st apply to numeric resources only")
            inst = self._instance(path)
            rtype = inst.resource_type(path.resource_id or 0)
            if rtype not in (
                ResourceType.INTEGER,
                ResourceType.UNSIGNED_INTEGER,
                ResourceType.FLOAT,
                None,
            ):
                raise BadRequest(f"{path} is not numeric: gt, lt and st do not apply")
        new = self.attributes.get(ssid, path).apply(update)
        try:
            new.validate()
            self.attributes.effective(ssid, path).inherit(new).validate()
        except AttributeError_ as exc:
            raise BadRequest(str(exc)) from None
        self.attributes.set(ssid, path, new)
        self.observations.attributes_changed(ssid)
        self.hooks.changed()  # attributes are part of the state file
        return _response(Code.CHANGED)

    # -- Execute -------------------------------------------------------------------------

    async def execute_or_append(self, path: Path, ssid: int, message: Message) -> Message:
        inst = self._instance(path)
        rid = path.resource_id or 0
        if (
            not inst.operations(rid).executable
            and inst.is_multiple(rid)
            and message.content_format is not None
        ):
            # LwM2M 1.1: POST on a multiple resource adds/updates resource instances.
            self._check(ssid, path, Permission.WRITE)
            node = payload_codec.decode(message.payload, path, message.content_format, self.model)
            await self.apply_write(inst, path, node, replace=False)
            self.hooks.changed()
            return _response(Code.CHANGED)
        self._check(ssid, path, Permission.EXECUTE)
        if not inst.operations(rid).executable:
            if inst.resource_def(rid) is None and not inst.has_resource(rid):
                raise NotFound(f"{path} not found")
            raise MethodNotAllowed(f"{path} is not executable")
        try:
            arguments = message.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("execute arguments are not UTF-8") from None
        check_arguments(arguments)
        await inst.execute(rid, arguments)
        return _response(Code.CHANGED)

    # -- Create / Delete -------------------------------------------------------------------

    async def create(self, path: Path, ssid: int, message: Message) -> Message:
        oid = path.object_id or 0
        obj = self.store.get_object(oid)
        if obj is None:
            raise NotFound(f"object {oid} not found")
        if oid in (SECURITY, ACCESS_CONTROL):
            raise Unauthorized(f"servers cannot create instances of object {oid}")
        self.acl.check_create(ssid, oid)
        instances = self._decode_create(message, path, obj.free_instance_id())
        created: list[int] = []
        for node in instances:
            if node.id in obj.instances:
                raise BadRequest(f"/{oid}/{node.id} already exists")
            if not obj.multiple and (obj.instances or len(instances) > 1):
                raise BadRequest(f"object {oid} is single-instance")
            for res in node.resources.values():
                rdef = obj.definition.resources.get(res.id) if obj.definition else None
                if rdef is not None and not rdef.operations.writable:
                    raise MethodNotAllowed(f"/{oid}/{node.id}/{res.id} is not writable")
        for node in instances:
            values = {
                res.id: (res.value if res.instances is None else dict(res.instances))
                for res in node.resources.values()
            }
            inst = self.store.create_instance(oid, node.id, values)
            missing = [
                r.id
                for r in (obj.definition.resources.values() if obj.definition else ())
                if r.mandatory
                and not r.operations.executable
                and not inst.has_resource(r.id)
                and r.operations.writable
            ]
            if missing:
                self.store.delete_instance(oid, node.id)
                raise BadRequest(f"/{oid}/{node.id}: mandatory resources {missing} missing")
            created.append(node.id)
            self.acl.instance_created(ssid, oid, node.id)
        self.hooks.changed()
        location = (str(oid), str(created[0])) if len(created) == 1 else ()
        return _response(Code.CREATED, location_path=location)

    def _decode_create(self, message: Message, path: Path, free_id: int) -> list[ObjectInstance]:
        if not message.payload:
            return [ObjectInstance(free_id)]
        try:
            node = payload_codec.decode(message.payload, path, message.content_format, self.model)
        except BadRequest:
            # A 1.0 TLV payload may hold resources without an instance header.
            node = payload_codec.decode(
                message.payload, path.child(free_id), message.content_format, self.model
            )
        if isinstance(node, LwM2MObject):
            if not node.instances:
                return [ObjectInstance(free_id)]
            return list(node.instances.values())
        if isinstance(node, ObjectInstance):
            return [node]
        raise BadRequest("Create payload must hold an object instance")

    async def delete(self, path: Path, ssid: int) -> Message:
        if path.depth != 2:
            raise MethodNotAllowed("Delete is allowed on object instances only")
        inst = self._instance(path)
        oid = path.object_id or 0
        if oid == SECURITY:
            raise Unauthorized("the Security object is not accessible to servers")
        self._check(ssid, path, Permission.DELETE)
        if oid in (DEVICE, SERVER) or (oid == ACCESS_CONTROL and not self.acl.enforced()):
            raise MethodNotAllowed(f"{path} cannot be deleted")
        self.store.delete_instance(oid, inst.id)
        self.acl.instance_deleted(oid, inst.id)
        self.observations.remove_under(path)
        self.attributes.remove_under(path)
        self.hooks.changed()
        return _response(Code.DELETED)

    # -- Observe ---------------------------------------------------------------------------

    async def observe(self, request: ServerRequest, path: Path, ssid: int) -> Message:
        message = request.message
        node = await self.read_node(path, ssid)
        fmt = payload_codec.response_format(message.accept, node, self.hooks.default_format(ssid))
        payload = payload_codec.encode(node, path, fmt, self.model)
        values = await self.leaf_values((path,))
        token = message.token
        handle = request.start_observation(lambda: self._forget(ssid, token))
        obs = Observation(ssid, (path,), token, fmt, False, handle)
        self.observations.add(obs, values)
        return _response(Code.CONTENT, payload, fmt)

    def _forget(self, ssid: int, token: bytes) -> None:
        self.observations.remove(ssid, token)

    async def read_composite(self, request: ServerRequest, ssid: int) -> Message:
        message = request.message
        if message.uri_path:
            raise MethodNotAllowed("composite operations use the root path")
        paths = payload_codec.decode_paths(message.payload, message.content_format)
        if not paths:
            raise BadRequest("no paths requested")
        nodes: dict[Path, Node] = {}
        for path in paths:
            if path.is_root:
                raise BadRequest("the root path cannot be read")
            try:
                nodes[path] = await self.read_node(path, ssid)
            except NotFound:
                continue  # absent paths are left out of the answer
        if not nodes:
            raise NotFound("none of the requested paths exists")
        fmt = (
            message.accept
            if message.accept is not None
            else (message.content_format or ContentFormat.SENML_CBOR)
        )
        if fmt not in payload_codec.COMPOSITE:
            raise NotAcceptable(f"content format {fmt} cannot carry a composite answer")
        payload = payload_codec.encode_composite(nodes, fmt, self.model)
        if message.observe == 0:
            values = await self.leaf_values(tuple(nodes))
            token = message.token
            handle = request.start_observation(lambda: self._forget(ssid, token))
            self.observations.add(Observation(ssid, tuple(nodes), token, fmt, True, handle), values)
        elif message.observe == 1:
            self.observations.remove(ssid, message.token)
        return _response(Code.CONTENT, payload, fmt)

    async def write_composite(self, message: Message, ssid: int) -> Message:
        if message.uri_path:
            raise MethodNotAllowed("composite operations use the root path")
        records = payload_codec.decode_records(message.payload, message.content_format, self.model)
        plan: list[tuple[Instance, int, int | None, object]] = []
        for record in records:
            path = record.path
            if path.depth < 3 or record.value is None:
                raise BadRequest(f"{path}: Write-Composite needs resource values")
            inst = self._instance(path)
            self._check(ssid, path, Permission.WRITE)
            rid = path.resource_id or 0
            self._check_writable(inst, rid)
            plan.append(
                (
                    inst,
                    rid,
                    path.resource_instance_id,
                    inst.typed(rid, record.value) if path.depth == 3 else record.value,
                )
            )
        for inst, rid, ri, value in plan:
            if ri is None:
                await inst.write(rid, value)
            else:
                await inst.write(rid, {ri: value}, merge=True)
        self.hooks.changed()
        return _response(Code.CHANGED)
