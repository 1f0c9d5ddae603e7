"""Regular expressions the OpenAPI schema gives for LwM2M paths and content formats.

Each one matches exactly the text that :func:`lwm2m.web.present.parse_path`,
``parse_paths`` and ``parse_format`` accept, so that a client generated from the
schema (or a fuzzer following it) is never refused for syntax, and the schema
tells a reader the ranges (object 0-65535, instance 0-65534 ...) without prose.
The parsers stay the authority: they give the precise reason for a refusal,
which a schema mismatch would not. tests/web/test_param_patterns.py holds both
sides to the same answer.
"""

from __future__ import annotations

import re

from lwm2m.formats.media import SHORT_NAMES, ContentFormat
from lwm2m.model.path import (
    MAX_INSTANCE_ID,
    MAX_OBJECT_ID,
    MAX_RESOURCE_ID,
    MAX_RESOURCE_INSTANCE_ID,
)


def _any_digits(count: int) -> str:
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def decimal_up_to(limit: int) -> str:
    """A group matching 0..limit in decimal without leading zeros."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    digits = str(limit)
    alternatives = ["0"]
    # Every shorter length, whole: 1-9, 10-99, ...
    for length in range(1, len(digits)):
        alternatives.append("[1-9]" + _any_digits(length - 1))
    # The limit's own length: equal up to position i, smaller there, anything after.
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        high = int(digit) - 1
        if high >= low:
            rest = len(digits) - i - 1
            alternatives.append(f"{digits[:i]}[{low}-{high}]" + _any_digits(rest))
    if limit > 0:
        alternatives.append(digits)
    return "(?:" + "|".join(dict.fromkeys(alternatives)) + ")"


_OBJECT = decimal_up_to(MAX_OBJECT_ID)
_INSTANCE = decimal_up_to(MAX_INSTANCE_ID)
_RESOURCE = decimal_up_to(MAX_RESOURCE_ID)
_RESOURCE_INSTANCE = decimal_up_to(MAX_RESOURCE_INSTANCE_ID)

#: The blanks a parser ignores around a path or a format name. Only space and tab,
#: because ``\s`` means different characters in Python, ECMA-262 (the schema's
#: dialect) and the Rust engine of jsonschema-rs.
BLANKS = " \t"
_BLANK_CLASS = BLANKS.replace("\t", r"\t")  # the same two, spelled for a character class

#: One path below the root, the leading slash optional (``3``, ``/3/0/1``, ``5/0/1/2``).
_ONE_PATH = f"/?{_OBJECT}(?:/{_INSTANCE}(?:/{_RESOURCE}(?:/{_RESOURCE_INSTANCE})?)?)?"

PATH_PATTERN = f"^{_ONE_PATH}$"

#: Comma-separated paths; blanks around an item and empty items are ignored,
#: at least one path is required. (Repeating a path is refused, which a regular
#: expression does not say.)
_GAP = f"[{_BLANK_CLASS},]*"  # blanks and empty items between paths
PATHS_PATTERN = f"^{_GAP}{_ONE_PATH}(?:[{_BLANK_CLASS}]*,{_GAP}{_ONE_PATH})*{_GAP}$"


def _spelling(name: str) -> str:
    """``name`` in any letter case, ``-`` and ``_`` alike (as parse_format folds them)."""
    out = []
    for char in name:
        if char.isascii() and char.isalpha():
            out.append(f"[{char.lower()}{char.upper()}]")
        elif char in "-_":
            out.append("[-_]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def _format_pattern() -> str:
    numbers = sorted({int(f) for f in ContentFormat})
    media_types = {f.media_type for f in ContentFormat}
    names = sorted({*SHORT_NAMES, *media_types}, key=lambda n: (-len(n), n))
    choices = [_spelling(n) for n in names] + ["0*(?:" + "|".join(map(str, numbers)) + ")"]
    # Empty means "the default format"; blanks around the value are ignored.
    blanks = f"[{_BLANK_CLASS}]*"
    return f"^(?:{blanks}(?:" + "|".join(choices) + f"){blanks})?$"


FORMAT_PATTERN = _format_pattern()
