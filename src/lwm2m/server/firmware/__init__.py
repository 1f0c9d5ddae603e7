"""Firmware images for over-the-air updates: the repository and how devices pull from it.

``FirmwareRepository`` keeps images (files under the data directory, metadata
in the store); ``firmware_response`` serves ``/fw/{id}`` over CoAP with
Block2. HTTP serving lives in :mod:`lwm2m.web.routes_firmware`.
"""

from lwm2m.server.firmware.coap import URI_SEGMENT, firmware_response
from lwm2m.server.firmware.repository import (
    DEFAULT_MAX_IMAGE_BYTES,
    FirmwareError,
    FirmwareImage,
    FirmwareRepository,
    ImageInUse,
    ImageNotFound,
    ImageTooLarge,
)

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "URI_SEGMENT",
    "FirmwareError",
    "FirmwareImage",
    "FirmwareRepository",
    "ImageInUse",
    "ImageNotFound",
    "ImageTooLarge",
    "firmware_response",
]
