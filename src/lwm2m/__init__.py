"""lwm2m: an OMA Lightweight M2M stack (server, bootstrap server, client) in Python."""

__version__ = "0.1.0"
