"""The client's objects and instances, and the server accounts they describe.

:class:`ObjectStore` is the data every part of the client works on: the
request dispatcher (through access control), the registration manager (which
servers, which objects), persistence, and the client-side bootstrap (which
writes Security/Server/Access Control instances with bootstrap semantics,
bypassing access control, through :meth:`ObjectStore.create_instance`,
:meth:`ObjectStore.write_instance` and :meth:`ObjectStore.delete_instance`).

Listeners hear about value changes (observations) and structure changes
(instances created or deleted: the registration payload changes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from lwm2m.client.instance import Instance
from lwm2m.client.stored_values import Stored
from lwm2m.model.definitions import ObjectDef
from lwm2m.model.path import MAX_INSTANCE_ID, Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.protocol.errors import BadRequest, MethodNotAllowed, NotFound

SECURITY = 0
SERVER = 1
ACCESS_CONTROL = 2
DEVICE = 3
CONNECTIVITY_MONITORING = 4
FIRMWARE_UPDATE = 5
LOCATION = 6
CONNECTIVITY_STATISTICS = 7

InstanceFactory = Callable[[int], Instance]
ChangeListener = Callable[[Path], None]
StructureListener = Callable[[int], None]


class ClientObject:
    """One object of the client: its model definition, instances and instance factory."""

    __slots__ = ("_store", "definition", "factory", "id", "instances")

    def __init__(
        self,
        object_id: int,
        definition: ObjectDef | None,
        factory: InstanceFactory | None,
        store: ObjectStore,
    ) -> None:
        self.id = object_id
        self.definition = definition
        self.factory: InstanceFactory = factory or Instance
        self.instances: dict[int, Instance] = {}
        self._store = store

    @property
    def version(self) -> str:
        return self.definition.version if self.definition is not None else "1.0"

    @property
    def multiple(self) -> bool:
        return self.definition.multiple if self.definition is not None else True

    def changed(self, path: Path) -> None:
        self._store.value_changed(path)

    def free_instance_id(self) -> int:
        for candidate in range(MAX_INSTANCE_ID + 1):
            if candidate not in self.instances:
                return candidate
        raise BadRequest(f"object {self.id} has no free instance ID")

    def __iter__(self) -> Iterator[Instance]:
        return iter(sorted(self.instances.values(), key=lambda i: i.id))


@dataclass(frozen=True, slots=True)
class ServerAccount:
    """A Security instance and (for LwM2M servers) the Server instance with its Short Server ID."""

    short_server_id: int
    uri: str
    bootstrap: bool
    security_instance: int
    server_instance: int | None
    security_mode: int = 3  # NoSec
    public_key_or_identity: bytes = b""
    server_public_key: bytes = b""
    secret_key: bytes = b""
    #: Security resource 15 (RFC 6698 usage), None when absent
    certificate_usage: int | None = None
    lifetime_s: int | None = None
    binding: str = "U"
    default_pmin_s: int = 0
    default_pmax_s: int | None = None
    notification_storing: bool = True
    client_hold_off_s: int = 0
    #: Server resources 16-20 (LwM2M 1.1 registration retry procedure); None = absent
    bootstrap_on_failure: bool = True
    retry_count: int | None = None
    retry_timer_s: int | None = None
    sequence_delay_s: int | None = None
    sequence_retry_count: int | None = None


def _as_int(value: Stored | None, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _as_optional_int(value: Stored | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_bytes(value: Stored | None) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return b""


class ObjectStore:
    """Objects by ID; model definitions come from a (shared) :class:`ModelRegistry`."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._objects: dict[int, ClientObject] = {}
        self._change_listeners: list[ChangeListener] = []
        self._structure_listeners: list[StructureListener] = []

    # -- listeners ----------------------------------------------------------------------

    def add_change_listener(self, listener: ChangeListener) -> None:
        """``listener(path)`` after a resource (or instance) value changed."""
        self._change_listeners.append(listener)

    def add_structure_listener(self, listener: StructureListener) -> None:
        """``listener(object_id)`` after an object or instance was added or removed."""
        self._structure_listeners.append(listener)

    def value_changed(self, path: Path) -> None:
        for listener in self._change_listeners:
            listener(path)

    def structure_changed(self, object_id: int) -> None:
        for listener in self._structure_listeners:
            listener(object_id)

    # -- objects ------------------------------------------------------------------------

    def add_object(self, object_id: int, factory: InstanceFactory | None = None) -> ClientObject:
        """Declare an object (with no instances yet); its definition comes from the registry."""
        obj = self._objects.get(object_id)
        if obj is None:
            obj = ClientObject(object_id, self.registry.object(object_id), factory, self)
            self._objects[object_id] = obj
            self.structure_changed(object_id)
        elif factory is not None:
            obj.factory = factory
        return obj

    def remove_object(self, object_id: int) -> None:
        if self._objects.pop(object_id, None) is not None:
            self.structure_changed(object_id)

    def get_object(self, object_id: int) -> ClientObject | None:
        return self._objects.get(object_id)

    def objects(self) -> list[ClientObject]:
        return [self._objects[k] for k in sorted(self._objects)]

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._objects

    def instance(self, object_id: int, instance_id: int) -> Instance | None:
        obj = self._objects.get(object_id)
        return None if obj is None else obj.instances.get(instance_id)

    def instances(self, object_id: int) -> list[Instance]:
        obj = self._objects.get(object_id)
        return [] if obj is None else list(obj)

    # -- instances (bootstrap semantics: no access control here) -----------------------

    def add_instance(self, instance: Instance, object_id: int | None = None) -> Instance:
        """Attach an application-made instance (replacing one with the same ID)."""
        oid = object_id if object_id is not None else instance.object_id
        if oid is None:
            raise ValueError(f"{type(instance).__name__} has no object_id")
        obj = self.add_object(oid)
        if obj.factory is Instance and type(instance) is not Instance:
            obj.factory = type(instance)
        instance._attach(obj)
        obj.instances[instance.id] = instance
        self.structure_changed(oid)
        return instance

    def create_instance(
        self,
        object_id: int,
        instance_id: int | None = None,
        values: Mapping[int, object] | None = None,
    ) -> Instance:
        """Create an instance with the object's factory and the given typed values.

        Raises BadRequest for a taken ID or a badly typed value, MethodNotAllowed
        for a second instance of a single-instance object.
        """
        obj = self.add_object(object_id)
        if instance_id is None:
            instance_id = obj.free_instance_id()
        if instance_id in obj.instances:
            raise BadRequest(f"/{object_id}/{instance_id} already exists")
        if not obj.multiple and obj.instances:
            raise MethodNotAllowed(f"object {object_id} is single-instance")
        instance = obj.factory(instance_id)
        instance._attach(obj)
        for rid, value in (values or {}).items():
            instance._values[rid] = instance.typed(rid, value)
        obj.instances[instance_id] = instance
        self.structure_changed(object_id)
        return instance

    async def write_instance(
        self,
        object_id: int,
        instance_id: int,
        values: Mapping[int, object],
        *,
        replace: bool = False,
    ) -> Instance:
        """Bootstrap-Write semantics: create the instance if missing, else update (or replace) it."""
        instance = self.instance(object_id, instance_id)
        if instance is None:
            return self.create_instance(object_id, instance_id, values)
        if replace:
            for rid in list(instance._values):
                if rid not in values:
                    del instance._values[rid]
        for rid, value in values.items():
            await instance.write(rid, value, merge=not replace)
        return instance

    def delete_instance(self, object_id: int, instance_id: int) -> None:
        obj = self._objects.get(object_id)
        if obj is None or instance_id not in obj.instances:
            raise NotFound(f"/{object_id}/{instance_id} not found")
        instance = obj.instances.pop(instance_id)
        instance._owner = None
        self.structure_changed(object_id)

    # -- server accounts ----------------------------------------------------------------

    def server_accounts(self, *, include_bootstrap: bool = False) -> list[ServerAccount]:
        """Accounts from Security (0) instances joined to Server (1) instances by SSID.

        LwM2M servers without a Server instance are skipped (they cannot be
        registered to); the bootstrap account has no Server instance.
        """
        servers: dict[int, Instance] = {}
        for inst in self.instances(SERVER):
            ssid = inst.get(0)
            if isinstance(ssid, int) and not isinstance(ssid, bool):
                servers[ssid] = inst
        accounts: list[ServerAccount] = []
        for sec in self.instances(SECURITY):
            bootstrap = sec.get(1) is True
            if bootstrap and not include_bootstrap:
                continue
            uri = sec.get(0)
            if not isinstance(uri, str):
                continue
            ssid = _as_int(sec.get(10), 0)
            srv = None if bootstrap else servers.get(ssid)
            if not bootstrap and srv is None:
                continue
            lifetime = srv.get(1) if srv is not None else None
            binding = srv.get(7) if srv is not None else None
            pmax = srv.get(3) if srv is not None else None
            accounts.append(
                ServerAccount(
                    short_server_id=ssid,
                    uri=uri,
                    bootstrap=bootstrap,
                    security_instance=sec.id,
                    server_instance=None if srv is None else srv.id,
                    security_mode=_as_int(sec.get(2), 3),
                    public_key_or_identity=_as_bytes(sec.get(3)),
                    server_public_key=_as_bytes(sec.get(4)),
                    secret_key=_as_bytes(sec.get(5)),
                    certificate_usage=_as_optional_int(sec.get(15)),
                    lifetime_s=lifetime if isinstance(lifetime, int) else None,
                    binding=binding if isinstance(binding, str) and binding else "U",
                    default_pmin_s=_as_int(srv.get(2) if srv is not None else None, 0),
                    default_pmax_s=pmax if isinstance(pmax, int) and pmax > 0 else None,
                    notification_storing=(srv.get(6) is not False) if srv is not None else True,
                    client_hold_off_s=_as_int(sec.get(11), 0),
                    bootstrap_on_failure=(srv.get(16) is not False) if srv is not None else True,
                    retry_count=_as_optional_int(srv.get(17) if srv is not None else None),
                    retry_timer_s=_as_optional_int(srv.get(18) if srv is not None else None),
                    sequence_delay_s=_as_optional_int(srv.get(19) if srv is not None else None),
                    sequence_retry_count=_as_optional_int(srv.get(20) if srv is not None else None),
                )
            )
        return sorted(accounts, key=lambda a: (a.bootstrap, a.short_server_id))

    def bootstrap_account(self) -> ServerAccount | None:
        for account in self.server_accounts(include_bootstrap=True):
            if account.bootstrap:
                return account
        return None

    def server_instance(self, short_server_id: int) -> Instance | None:
        for inst in self.instances(SERVER):
            if inst.get(0) == short_server_id:
                return inst
        return None
