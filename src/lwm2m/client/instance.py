"""Object instances as Python objects: what a device developer writes.

A class per object, resources as descriptors::

    class Temperature(Instance, object_id=3303):
        value = Res(5700, 20.0)
        units = Res(5701, "Cel")

        @execute(5605)
        async def reset_min_max(self, args: str) -> None:
            ...

    temp = Temperature(0)
    client.add_instance(temp)
    temp.value = 21.5          # stored, typed by the model, observers notified

Readers and writers may be plain or async functions (``@value.reader``). The
resource type, operations and multiplicity come from the object's model
definition when there is one, else from the descriptor's arguments.

Instances of objects without a class (DDF-only objects, the Security and
Server objects filled by bootstrap) are :class:`Instance` itself: a bag of
stored values that the model types.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar, overload

from lwm2m.client.stored_values import Stored, coerce_stored
from lwm2m.model.definitions import ObjectDef, ResourceDef
from lwm2m.model.path import Path
from lwm2m.model.types import Operations, ResourceType
from lwm2m.model.value_typing import ValueTypeError
from lwm2m.protocol.errors import BadRequest, MethodNotAllowed, NotFound

logger = logging.getLogger(__name__)

T = TypeVar("T")
InstanceT = TypeVar("InstanceT", bound="Instance")

Reader = Callable[[Any], Any]  # (instance) -> value | Awaitable[value]
Writer = Callable[[Any, Any], Any]  # (instance, value) -> None | Awaitable[None]
Executor = Callable[[Any, str], Any]  # (instance, arguments) -> None | Awaitable[None]


class InstanceOwner(Protocol):
    """The object an instance belongs to (the store's ``ClientObject``), as the instance uses it.

    A Protocol rather than the class keeps ``store`` -> ``instance`` the only import.
    """

    @property
    def id(self) -> int: ...

    @property
    def definition(self) -> ObjectDef | None: ...

    def changed(self, path: Path) -> None: ...


async def _maybe_await(result: object) -> Any:
    if inspect.isawaitable(result):
        return await result
    return result


class Res(Generic[T]):
    """A resource of an :class:`Instance` subclass, by resource ID.

    ``default`` is the initial value (``None``: absent until set). ``type``,
    ``multiple`` and ``operations`` are only needed when the object has no
    model definition.
    """

    __slots__ = ("default", "id", "multiple", "name", "operations", "read_fn", "type", "write_fn")

    def __init__(
        self,
        id: int,
        default: T | None = None,
        *,
        type: ResourceType | None = None,
        multiple: bool | None = None,
        operations: Operations | str | None = None,
    ) -> None:
        self.id = id
        self.default = default
        self.type = type
        self.multiple = multiple
        self.operations = (
            Operations.parse(operations) if isinstance(operations, str) else operations
        )
        self.read_fn: Reader | None = None
        self.write_fn: Writer | None = None
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Res[T]: ...
    @overload
    def __get__(self, instance: Instance, owner: type) -> T: ...
    def __get__(self, instance: Instance | None, owner: type) -> Res[T] | T:
        if instance is None:
            return self
        value = instance._values.get(self.id)
        return value if value is not None else self.default  # type: ignore[return-value]

    def __set__(self, instance: Instance, value: T) -> None:
        instance.set(self.id, value)

    def reader(self, fn: Callable[[Any], T | Awaitable[T]]) -> Callable[[Any], T | Awaitable[T]]:
        """Compute the value on every Read (and notification check) instead of storing it."""
        self.read_fn = fn
        return fn

    def writer(self, fn: Callable[[Any, T], Any]) -> Callable[[Any, T], Any]:
        """Called with the typed value before it is stored; raise an LwM2MError to refuse it."""
        self.write_fn = fn
        return fn


def execute(resource_id: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method ``(self, args: str)`` (sync or async) as the Execute handler of a resource."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn._lwm2m_execute = resource_id  # type: ignore[attr-defined]
        return fn

    return mark


class Instance:
    """One object instance: stored values plus the class's readers, writers and executes."""

    __slots__ = ("_fns", "_owner", "_values", "id")

    object_id: ClassVar[int | None] = None
    _resources: ClassVar[dict[int, Res[Any]]] = {}
    _executors: ClassVar[dict[int, str]] = {}

    def __init_subclass__(cls, object_id: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if object_id is not None:
            cls.object_id = object_id
        resources: dict[int, Res[Any]] = {}
        executors: dict[int, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, member in vars(klass).items():
                if isinstance(member, Res):
                    resources[member.id] = member
                rid = getattr(member, "_lwm2m_execute", None)
                if isinstance(rid, int):
                    executors[rid] = attr
        cls._resources = resources
        cls._executors = executors

    def __init__(self, instance_id: int = 0, values: Mapping[int, object] | None = None) -> None:
        self.id = instance_id
        self._owner: InstanceOwner | None = None
        self._values: dict[int, Stored] = {}
        self._fns: dict[tuple[str, int], Callable[..., Any]] | None = None
        for res in self._resources.values():
            if res.default is not None:
                self._values[res.id] = res.default  # typed when attached to its object
        if values:
            for rid, value in values.items():
                self._values[rid] = value  # type: ignore[assignment]

    # -- what the model says ------------------------------------------------------------

    @property
    def definition(self) -> ObjectDef | None:
        return None if self._owner is None else self._owner.definition

    @property
    def path(self) -> Path:
        oid = self._owner.id if self._owner is not None else self.object_id
        if oid is None:
            raise ValueError("instance not attached to an object")
        return Path(oid, self.id)

    def resource_def(self, resource_id: int) -> ResourceDef | None:
        definition = self.definition
        return None if definition is None else definition.resources.get(resource_id)

    def resource_type(self, resource_id: int) -> ResourceType | None:
        rdef = self.resource_def(resource_id)
        if rdef is not None:
            return rdef.type
        res = self._resources.get(resource_id)
        return None if res is None else res.type

    def is_multiple(self, resource_id: int) -> bool:
        rdef = self.resource_def(resource_id)
        if rdef is not None:
            return rdef.multiple
        res = self._resources.get(resource_id)
        if res is not None and res.multiple is not None:
            return res.multiple
        return isinstance(self._values.get(resource_id), dict)

    def operations(self, resource_id: int) -> Operations:
        rdef = self.resource_def(resource_id)
        if rdef is not None:
            return rdef.operations
        if resource_id in self._executors or self._fn("e", resource_id) is not None:
            return Operations.E
        res = self._resources.get(resource_id)
        if res is not None and res.operations is not None:
            return res.operations
        return Operations.RW

    def _attach(self, owner: InstanceOwner) -> None:
        """Type the initial values with the model once the object is known."""
        self._owner = owner
        for rid, value in list(self._values.items()):
            self._values[rid] = self.typed(rid, value)

    def typed(self, resource_id: int, value: object) -> Stored:
        try:
            return coerce_stored(
                value,
                self.resource_type(resource_id),
                self.is_multiple(resource_id),
                f"{self.path if self._owner else self.id}/{resource_id}",
            )
        except ValueTypeError as exc:
            raise BadRequest(str(exc)) from None

    # -- application API ----------------------------------------------------------------

    def get(self, resource_id: int) -> Stored | None:
        """The stored value (readers are not called)."""
        return self._values.get(resource_id)

    def set(self, resource_id: int, value: object) -> None:
        """Store a value from the application and notify observers when it changed."""
        typed = self.typed(resource_id, value)
        if self._values.get(resource_id) == typed and resource_id in self._values:
            return
        self._values[resource_id] = typed
        self._changed(resource_id)

    def unset(self, resource_id: int) -> None:
        """Remove an optional resource."""
        if self._values.pop(resource_id, None) is not None:
            self._changed(resource_id)

    def _changed(self, resource_id: int | None = None) -> None:
        if self._owner is not None:
            path = self.path if resource_id is None else self.path.child(resource_id)
            self._owner.changed(path)

    # -- handlers given as plain functions (decorated functions API) -------------------

    def add_reader(self, resource_id: int, fn: Callable[[], Any]) -> None:
        """``fn()`` (sync or async) computes the value on every Read."""
        self._set_fn("r", resource_id, fn)

    def add_writer(self, resource_id: int, fn: Callable[[Any], Any]) -> None:
        """``fn(value)`` (sync or async) sees a server's typed value before it is stored."""
        self._set_fn("w", resource_id, fn)

    def add_executor(self, resource_id: int, fn: Callable[[str], Any]) -> None:
        """``fn(arguments)`` (sync or async) runs on Execute."""
        self._set_fn("e", resource_id, fn)

    def _set_fn(self, kind: str, resource_id: int, fn: Callable[..., Any]) -> None:
        if self._fns is None:
            self._fns = {}
        self._fns[(kind, resource_id)] = fn
        if self._owner is not None:
            self._owner.changed(self.path.child(resource_id))

    def _fn(self, kind: str, resource_id: int) -> Callable[..., Any] | None:
        return None if self._fns is None else self._fns.get((kind, resource_id))

    def has_reader(self, resource_id: int) -> bool:
        """Whether the value is computed on read (observations then sample it, epmin/epmax)."""
        res = self._resources.get(resource_id)
        return (res is not None and res.read_fn is not None) or self._fn(
            "r", resource_id
        ) is not None

    # -- what the request dispatcher calls --------------------------------------------

    def resource_ids(self) -> list[int]:
        """Resources present in this instance (stored, computed or executable)."""
        ids = set(self._values)
        for rid, res in self._resources.items():
            if res.read_fn is not None:
                ids.add(rid)
        ids.update(self._executors)
        if self._fns is not None:
            ids.update(rid for kind, rid in self._fns if kind in ("r", "e"))
        return sorted(ids)

    def has_resource(self, resource_id: int) -> bool:
        if resource_id in self._values or resource_id in self._executors:
            return True
        if self._fn("e", resource_id) is not None:
            return True
        return self.has_reader(resource_id)

    async def read(self, resource_id: int) -> Stored:
        """The current value; raises NotFound for an absent or executable resource."""
        res = self._resources.get(resource_id)
        fn = self._fn("r", resource_id)
        class_fn = res.read_fn if res is not None else None
        if fn is not None or class_fn is not None:
            value = await _maybe_await(fn() if fn is not None else class_fn(self))  # type: ignore[misc]
            typed = self.typed(resource_id, value)
            if self._values.get(resource_id) != typed:
                self._values[resource_id] = typed
            return typed
        value = self._values.get(resource_id)
        if value is None:
            if resource_id in self._executors:
                raise MethodNotAllowed(f"{self.path}/{resource_id} is executable")
            raise NotFound(f"{self.path}/{resource_id} not found")
        return value

    async def write(self, resource_id: int, value: object, *, merge: bool = False) -> None:
        """Store a value written by a server (or bootstrap); ``merge`` adds resource instances."""
        typed = self.typed(resource_id, value)
        if merge and isinstance(typed, dict):
            current = self._values.get(resource_id)
            if isinstance(current, dict):
                typed = dict(sorted({**current, **typed}.items()))
        res = self._resources.get(resource_id)
        fn = self._fn("w", resource_id)
        if fn is not None:
            await _maybe_await(fn(typed))
        elif res is not None and res.write_fn is not None:
            await _maybe_await(res.write_fn(self, typed))
        changed = self._values.get(resource_id) != typed
        self._values[resource_id] = typed
        await self.on_write(resource_id)
        if changed:
            self._changed(resource_id)

    async def delete_resource_instance(self, resource_id: int, instance_id: int) -> None:
        current = self._values.get(resource_id)
        if not isinstance(current, dict) or instance_id not in current:
            raise NotFound(f"{self.path}/{resource_id}/{instance_id} not found")
        del current[instance_id]
        self._changed(resource_id)

    async def execute(self, resource_id: int, arguments: str) -> None:
        fn = self._fn("e", resource_id)
        if fn is not None:
            await _maybe_await(fn(arguments))
            return
        name = self._executors.get(resource_id)
        if name is None:
            rdef = self.resource_def(resource_id)
            if rdef is not None and rdef.operations.executable:
                # A model-only executable resource (DDF object without code): accept it.
                logger.info(
                    "%s/%d executed (%r), no handler installed", self.path, resource_id, arguments
                )
                return
            if self.has_resource(resource_id) or rdef is not None:
                raise MethodNotAllowed(f"{self.path}/{resource_id} is not executable")
            raise NotFound(f"{self.path}/{resource_id} not found")
        await _maybe_await(getattr(self, name)(arguments))

    async def on_write(self, resource_id: int) -> None:
        """Hook for subclasses: a server or bootstrap server wrote this resource."""

    def snapshot(self) -> dict[int, Stored]:
        """Stored values (copies of multiple resources), for persistence."""
        return {rid: dict(v) if isinstance(v, dict) else v for rid, v in self._values.items()}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path if self._owner else self.id}>"


def check_arguments(arguments: str) -> list[tuple[int, str | None]]:
    """Parse Execute arguments (LwM2M 1.1 5.4.4: ``0='abc',1``); raises BadRequest."""
    result: list[tuple[int, str | None]] = []
    text = arguments
    pos = 0
    seen: set[int] = set()
    while pos < len(text):
        start = pos
        while pos < len(text) and text[pos].isdigit():
            pos += 1
        if pos == start or pos - start > 1:
            raise BadRequest(f"execute arguments: expected a digit at {start}")
        number = int(text[start:pos])
        if number in seen:
            raise BadRequest(f"execute arguments: argument {number} given twice")
        seen.add(number)
        value: str | None = None
        if pos < len(text) and text[pos] == "=":
            pos += 1
            if pos >= len(text) or text[pos] != "'":
                raise BadRequest(f"execute arguments: value must be quoted at {pos}")
            end = text.find("'", pos + 1)
            if end < 0:
                raise BadRequest("execute arguments: unterminated quoted value")
            value = text[pos + 1 : end]
            pos = end + 1
        result.append((number, value))
        if pos < len(text):
            if text[pos] != ",":
                raise BadRequest(f"execute arguments: expected ',' at {pos}")
            pos += 1
            if pos == len(text):
                raise BadRequest("execute arguments: trailing ','")
    return result
