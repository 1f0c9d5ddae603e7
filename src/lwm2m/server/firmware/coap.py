"""``GET /fw/{id}`` over CoAP: firmware blocks read from the file, one block per request.

The handler slices the image itself (RFC 7959 2.2) instead of returning the
whole body for the engine to cut: a 64 MiB image pulled by hundreds of
devices would otherwise sit in memory once per transfer. Every block carries
the image's ETag (first 8 bytes of its SHA-256), so a device notices when the
image behind a URI changed between two blocks (it cannot, rule 3 of the
repository, but a device may not know that) and can validate a cached copy
with a GET carrying the ETag (answered 2.03 Valid).
"""

from __future__ import annotations

from lwm2m.coap.codes import Code
from lwm2m.coap.message import Block, Message
from lwm2m.formats.media import ContentFormat
from lwm2m.server.firmware.repository import FirmwareError, FirmwareRepository

#: the first path segment of firmware URIs (``/fw/{id}``), on CoAP and HTTP alike
URI_SEGMENT = "fw"

#: largest block served: 1024 bytes (SZX 6); a client asking for smaller blocks gets them
DEFAULT_BLOCK_SZX = 6


async def serve_firmware(
    repository: FirmwareRepository, request: Message, *, block_szx: int = DEFAULT_BLOCK_SZX
) -> Message:
    """:func:`firmware_response` after making the image readable on this node.

    Shared images (a cluster, repository rule 5) are looked up in the store when a
    transfer starts (block 0, or a node that does not know the image yet), so an
    image uploaded on another node is served here and one deleted there is not.
    Later blocks of a transfer are served from this node's copy alone.
    """
    segments = request.uri_path
    if repository.shared and len(segments) == 2 and request.code == Code.GET:
        requested = request.block2
        if requested is None or requested.num == 0 or not repository.cached(segments[1]):
            try:
                await repository.fetch(segments[1])
            except FirmwareError:
                return Message(Code.SERVICE_UNAVAILABLE, payload=b"firmware image unavailable")
    return firmware_response(repository, request, block_szx=block_szx)


def firmware_response(
    repository: FirmwareRepository, request: Message, *, block_szx: int = DEFAULT_BLOCK_SZX
) -> Message:
    """The response to a request for ``/fw/...``: a block of the image, or an error."""
    segments = request.uri_path
    if len(segments) != 2 or segments[0] != URI_SEGMENT:
        return Message(Code.NOT_FOUND)
    if request.code != Code.GET:
        return Message(Code.METHOD_NOT_ALLOWED)
    image = repository.lookup(segments[1])
    if image is None:
        return Message(Code.NOT_FOUND, payload=b"no such firmware image")
    etag = image.etag
    requested = request.block2
    if etag in request.etag and (requested is None or requested.num == 0):
        return Message(Code.VALID, etag=(etag,))
    szx = block_szx if requested is None else min(block_szx, requested.szx)
    size = 1 << (szx + 4)
    num = 0 if requested is None else requested.num
    offset = num * size
    if offset >= image.size:
        return Message(Code.BAD_OPTION, payload=b"block number out of range")
    try:
        chunk = repository.read(image.id, offset, size)
    except FirmwareError:
        return Message(Code.NOT_FOUND, payload=b"no such firmware image")
    more = offset + len(chunk) < image.size
    whole = requested is None and not more
    return Message(
        Code.CONTENT,
        payload=chunk,
        content_format=ContentFormat.OCTET_STREAM,
        etag=(etag,),
        block2=None if whole else Block(num, more, szx),
        size2=image.size if num == 0 and not whole else None,
    )
