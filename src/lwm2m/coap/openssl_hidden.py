"""OpenSSL functions that are linked into cryptography's extension but not declared by it.

cryptography links OpenSSL statically into ``_rust.abi3.so`` and declares to
cffi only the functions it uses itself. Sharing session-ticket keys between
server nodes needs ``SSL_CTX_ctrl`` (``SSL_CTRL_SET_TLSEXT_TICKET_KEYS``), which
is in that very library, with hidden visibility, and not declared.

We find it through the extension's ELF symbol table: the file offset of a
symbol plus the address the library was loaded at. The load address is
derived from functions cffi *does* declare (their ``_cffi_d_*`` direct-call
wrappers, whose addresses cffi hands out): three of them must agree on one
page-aligned base, or nothing is resolved. A stripped or non-ELF build, or a
release that renames the symbols, makes :func:`hidden_function` return None
and the caller falls back (node-local ticket keys); it never guesses.

Only OpenSSL's public, ABI-stable functions are looked up this way; no
structure layout is assumed.
"""

from __future__ import annotations

import logging
import struct
import sys
from functools import cache
from typing import Any

from OpenSSL.SSL import _ffi  # type: ignore[attr-defined]

logger = logging.getLogger(__name__)

#: functions cffi declares, used to locate the library in memory
_ANCHORS = ("SSL_CTX_new", "SSL_session_reused", "SSL_CTX_set_timeout")
_PAGE = 4096
_STT_FUNC = 2
_SHT_SYMTAB = 2


def hidden_function(name: str, signature: str) -> Any | None:
    """A callable for OpenSSL's ``name`` with the C ``signature`` (a function pointer type).

    None when the function cannot be located with certainty.
    """
    table = _symbols()
    if table is None:
        return None
    base, offsets = table
    offset = offsets.get(name)
    if offset is None:
        return None
    return _ffi.cast(signature, base + offset)


#: every name a caller may ask for; the symbol table is read once for all of them
WANTED = ("SSL_CTX_ctrl",)


@cache
def _symbols() -> tuple[int, dict[str, int]] | None:
    try:
        from cryptography.hazmat.bindings._rust import _openssl
    except ImportError:
        return None
    raw_lib = _openssl.lib
    path = getattr(sys.modules.get("cryptography.hazmat.bindings._rust"), "__file__", None)
    if path is None:
        return None
    anchors = tuple("_cffi_d_" + name for name in _ANCHORS)
    try:
        with open(path, "rb") as file:
            image = file.read()
        offsets = _elf_function_offsets(image, WANTED + anchors)
    except (OSError, ValueError, struct.error) as exc:
        logger.debug("OpenSSL symbols of %s unreadable: %s", path, exc)
        return None
    bases = set()
    for name, anchor in zip(_ANCHORS, anchors, strict=True):
        if anchor not in offsets:
            return None
        try:
            address = int(_ffi.cast("uintptr_t", _ffi.addressof(raw_lib, name)))
        except (AttributeError, TypeError):
            return None
        bases.add(address - offsets[anchor])
    if len(bases) != 1:
        return None
    (base,) = bases
    if base <= 0 or base % _PAGE:
        return None
    return base, {name: offsets[name] for name in WANTED if name in offsets}


def _elf_function_offsets(image: bytes, names: tuple[str, ...]) -> dict[str, int]:
    """``name -> st_value`` for defined functions in a little-endian ELF64 symbol table."""
    if image[:4] != b"\x7fELF" or image[4] != 2 or image[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    (shoff,) = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", image, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", image, shoff + i * shentsize) for i in range(shnum)
    ]
    symtabs = [s for s in sections if s[1] == _SHT_SYMTAB]
    if not symtabs:
        raise ValueError("no symbol table (stripped)")
    symtab = symtabs[0]
    strtab = sections[symtab[6]]
    strings = image[strtab[4] : strtab[4] + strtab[5]]
    wanted: dict[int, str] = {}
    for name in names:
        # Any offset whose C string is ``name``: linkers may share one string's tail.
        needle = name.encode("ascii") + b"\0"
        at = strings.find(needle)
        while at >= 0:
            wanted[at] = name
            at = strings.find(needle, at + 1)
    found: dict[str, int] = {}
    symbols = image[symtab[4] : symtab[4] + symtab[5]]
    for st_name, info, _other, shndx, value, _size in struct.iter_unpack("<IBBHQQ", symbols):
        if st_name in wanted and info & 0xF == _STT_FUNC and shndx != 0:
            name = wanted[st_name]
            if found.setdefault(name, value) != value:
                raise ValueError(f"{name} is defined twice")
    return found
