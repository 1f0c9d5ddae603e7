"""The one error every content-format codec raises."""

from __future__ import annotations


class FormatError(ValueError):
    """A payload (or a node to encode) that a content format cannot carry.

    The message names the byte offset or the field at fault, so that a 4.00
    Bad Request diagnostic or a CLI error tells the user where to look.
    """
