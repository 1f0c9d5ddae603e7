"""A handler's answer that comes later, handed on by plain callbacks.

Why not a coroutine or an asyncio Future: a durable Register waits for the
group commit of its batch, a hundred of them at once. As coroutines, each
one is a chain of six frames parked on a future and stepped on again (the
endpoint, the shutdown gate, the server, the registrar, the store); as
Futures, each hop is a callback scheduled through the loop. A ``Later`` is
resolved by the commit's own callback and calls its callbacks right there,
in the order they were added: the registrar's answer, the server's
follow-up, the gate's count, the endpoint's send, in one go, with no task,
no frame and no loop turn per request.

It is awaitable, for any caller that wants the value in a coroutine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
_UNSET: Any = object()


class Later(Generic[T]):
    """A value set once, by :meth:`resolve`; :meth:`then` callbacks run when it is."""

    __slots__ = ("_callbacks", "_value")

    def __init__(self) -> None:
        self._value: T = _UNSET
        self._callbacks: list[Callable[[T], object]] | None = []

    @property
    def done(self) -> bool:
        return self._callbacks is None

    def result(self) -> T:
        """The value (only once resolved)."""
        if self._callbacks is not None:
            raise RuntimeError("Later not resolved yet")
        return self._value

    def then(self, callback: Callable[[T], object]) -> None:
        """Call ``callback(value)`` once resolved: at once if it already is."""
        callbacks = self._callbacks
        if callbacks is None:
            _run((callback,), self._value)
        else:
            callbacks.append(callback)

    def resolve(self, value: T) -> None:
        """Set the value and run the callbacks, in their order; a second call is an error."""
        callbacks = self._callbacks
        if callbacks is None:
            raise RuntimeError("Later resolved twice")
        self._value = value
        self._callbacks = None
        _run(callbacks, value)

    def __await__(self) -> Generator[Any, None, T]:
        if self._callbacks is None:
            return self._value
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def settle(value: T) -> None:
            if not future.done():
                future.set_result(value)

        self.then(settle)
        return (yield from future)


def _run(callbacks: Sequence[Callable[[T], object]], value: T) -> None:
    """Call each with ``value``; a failing one is logged and the others still run (as the
    loop does for a Future's callbacks)."""
    for callback in callbacks:
        try:
            callback(value)
        except Exception:
            logger.exception("callback %r of a Later failed", callback)
