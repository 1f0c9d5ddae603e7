"""Which resource type a value at a path has, and the codecs' side of the value-typing policy.

A resource's type comes from the model when the model knows the resource;
otherwise from the node (``Resource.type``); otherwise it is inferred from the
Python value. What each type holds, and which conversions are lossless, is
:mod:`lwm2m.model.value_typing`'s one policy; :func:`as_type` applies it
before encoding (and to decoded numbers), reporting a misfit as a
:class:`FormatError` instead of producing bytes a peer would misread.
Codecs relay non-finite Floats (rule 4 of that policy); a format that cannot
carry them says so itself.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass

from lwm2m.formats.errors import FormatError
from lwm2m.model import value_typing
from lwm2m.model.definitions import ResourceDef
from lwm2m.model.nodes import Value
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ObjectLink, ResourceType
from lwm2m.model.value_typing import ValueTypeError


@dataclass(frozen=True, slots=True)
class At:
    """A path for error messages, formatted only when a message is built.

    Hot encode/decode loops carry ID tuples rather than :class:`Path` objects
    (whose validation costs more than the codec work); this prints like one.
    """

    ids: tuple[int, ...]

    def __str__(self) -> str:
        return "/" + "/".join(map(str, self.ids))


def rdef_at(model: ModelRegistry | None, ids: tuple[int, ...]) -> ResourceDef | None:
    """The definition of the resource at (or above) the ID path ``ids``."""
    if model is None or len(ids) < 3:
        return None
    return model.resource(ids[0], ids[2])


def type_at(model: ModelRegistry | None, ids: tuple[int, ...]) -> ResourceType | None:
    """The model's type for the resource at ``ids`` (``None`` when unknown or ``NONE``)."""
    if model is None or len(ids) < 3:
        return None
    rdef = model.resource(ids[0], ids[2])
    if rdef is None or rdef.type is ResourceType.NONE:
        return None
    return rdef.type


def effective_type_at(
    model: ModelRegistry | None,
    ids: tuple[int, ...],
    node_type: ResourceType | None,
    value: object,
) -> ResourceType:
    """The type used to encode ``value`` at ``ids``: model, then node, then inferred."""
    rtype = type_at(model, ids)
    if rtype is not None:
        return rtype
    if node_type is not None and node_type is not ResourceType.NONE:
        return node_type
    return infer_type(value)


@functools.lru_cache(maxsize=4096)
def parse_path(text: str) -> Path:
    """``Path.parse`` with a cache: notifications and Send repeat the same names.

    Raises ``PathError`` like ``Path.parse`` (errors are not cached).
    """
    return Path.parse(text)


def resource_def(model: ModelRegistry | None, path: Path) -> ResourceDef | None:
    """The definition of the resource ``path`` points into, if the model has it."""
    if model is None or path.object_id is None or path.resource_id is None:
        return None
    return model.resource(path.object_id, path.resource_id)


def model_type(model: ModelRegistry | None, path: Path) -> ResourceType | None:
    """The model's type for a resource path (``None`` when unknown or ``NONE``)."""
    rdef = resource_def(model, path)
    if rdef is None or rdef.type is ResourceType.NONE:
        return None
    return rdef.type


def declared_type(model: ModelRegistry | None, path: Path, declared: object) -> ResourceType | None:
    """The model's type for ``path``, else the one a JSON view declares (its ``"type"``).

    The model wins: a body cannot retype a resource the server knows. Raises
    ValueError (its message without the field name, for the caller to add)
    when the declared type is not a type name.
    """
    rtype = model_type(model, path)
    if rtype is not None or declared is None:
        return rtype
    if not isinstance(declared, str):
        raise ValueError(f"must be a type name, got {declared!r}")
    parsed = ResourceType.parse(declared)
    return None if parsed is ResourceType.NONE else parsed


def infer_type(value: object) -> ResourceType:
    """The natural resource type of a Python value (see :func:`value_typing.infer_type`)."""
    try:
        return value_typing.infer_type(value)
    except ValueTypeError as exc:
        raise FormatError(str(exc)) from None


def effective_type(
    model: ModelRegistry | None, path: Path, node_type: ResourceType | None, value: object
) -> ResourceType:
    """The type used to encode ``value`` at ``path``: model, then node, then inferred."""
    rtype = model_type(model, path)
    if rtype is not None:
        return rtype
    if node_type is not None and node_type is not ResourceType.NONE:
        return node_type
    return infer_type(value)


def epoch_seconds(value: datetime.datetime, where: object) -> int:
    """Whole seconds since the epoch (LwM2M Time has one-second resolution)."""
    try:
        return value_typing.epoch_seconds(value, str(where))
    except ValueTypeError as exc:
        raise FormatError(str(exc)) from None


def from_epoch(seconds: int | float, where: object) -> datetime.datetime:
    """A UTC datetime from epoch seconds; out-of-range values are a FormatError."""
    try:
        return value_typing.from_epoch(seconds, str(where))
    except ValueTypeError as exc:
        raise FormatError(str(exc)) from None


def json_number(value: object, where: object) -> int | float:
    """A JSON/CBOR number (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormatError(f"{where}: expected a number, got {type(value).__name__}")
    return value


def number_as(raw: object, rtype: ResourceType | None, where: object) -> Value | None:
    """A numeric field (LwM2M JSON ``v``, SenML ``v``) typed by the model.

    Returns None when ``rtype`` is not numeric, leaving the caller to report
    the type mismatch in its own words.
    """
    number = json_number(raw, where)
    if rtype is None:
        return number
    if rtype is ResourceType.FLOAT:
        return float(number)
    if rtype in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.TIME):
        if isinstance(number, float):
            if not number.is_integer():
                raise FormatError(f"{where}: {rtype.value} value {number} is not integral")
            number = int(number)
        if rtype is ResourceType.TIME:
            return from_epoch(number, where)
        return as_type(number, rtype, where)
    return None


def as_type(value: object, rtype: ResourceType, where: object) -> Value:
    """``value`` as ``rtype`` holds it (:func:`value_typing.normalise`), or a FormatError."""
    try:
        return value_typing.normalise(value, rtype, str(where))
    except ValueTypeError as exc:
        raise FormatError(str(exc)) from None


def parse_objlnk(text: str, where: object) -> ObjectLink:
    try:
        return ObjectLink.parse(text)
    except ValueError as exc:
        raise FormatError(f"{where}: {exc}") from None
