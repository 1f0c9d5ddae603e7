"""LwM2M content formats: one pure module per format, chosen by Content-Format.

Start with :mod:`lwm2m.formats.registry` (``encode``, ``decode``,
``encode_composite``, ``decode_composite``, ``decode_records``,
``encode_paths``/``decode_paths``, ``preferred_format``, ``can_carry``);
:mod:`lwm2m.formats.link_format` for CoRE links (Register, Discover);
:mod:`lwm2m.formats.jsonview` to show or accept nodes as plain JSON. Every
decoder raises only :class:`lwm2m.formats.errors.FormatError` on bad input.

Nothing is imported here so that ``lwm2m decode`` and the roles load only
the codecs they use.
"""
