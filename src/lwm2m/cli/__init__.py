"""The ``lwm2m`` command: one module per subcommand, over the library's roles.

:func:`main` (from :mod:`lwm2m.cli.main`) is the console script and
``python -m lwm2m``. Only this package parses arguments, prints to a terminal
and starts the web app; no role package imports it or ``web/``.
"""

from lwm2m.cli.main import main

__all__ = ["main"]
