"""The one error every content-format codec raises."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class FormatError(ValueError):
    """A payload (or a node to encode) that a content format cannot carry.

    The message names the byte offset or the field at fault, so that a 4.00
    Bad Request diagnostic or a CLI error tells the user where to look.
    """


def guard(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the ``ValueError`` s the node model raises (IDs out of range ...) into FormatError.

    Decoders build nodes from untrusted input; the node constructors'
    checks are the last line of defence and must surface as the codec error.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except FormatError:
            raise
        except (ValueError, OverflowError, RecursionError) as exc:
            raise FormatError(str(exc)) from None

    return wrapper
