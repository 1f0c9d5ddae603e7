"""The SQLite file's tables and the registration statements, with their bulk forms.

Apart from the rest of the SQLite store because the writer process
(:mod:`lwm2m.stores.sqlite_writer`) needs the statements and their forms, and
nothing else: this module imports only the standard library and
:mod:`lwm2m.stores.sqlite_bulk`, so the writer starts in tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lwm2m.stores.sqlite_bulk import delete_form, insert_form, register_form, update_form

SCHEMA = """
CREATE TABLE IF NOT EXISTS registrations (
    id TEXT PRIMARY KEY, endpoint TEXT NOT NULL UNIQUE, doc TEXT NOT NULL DEFAULT '',
    host TEXT, port INTEGER, lifetime_s INTEGER, registered_at REAL, updated_at REAL,
    endpoint_type INTEGER, lwm2m_version TEXT, binding TEXT, queue_mode INTEGER,
    sms_number TEXT, transport TEXT, links_text TEXT, root_path TEXT, content_formats TEXT,
    objects TEXT, identity TEXT);
CREATE TABLE IF NOT EXISTS observations (
    id TEXT PRIMARY KEY, registration_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS observations_by_registration ON observations (registration_id);
CREATE TABLE IF NOT EXISTS security (endpoint TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    namespace TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (namespace, key));
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, namespace TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_namespace ON logs (namespace, seq);
"""

#: One SQL statement and its parameters.
Statement = tuple[str, Sequence[Any]]

#: The columns of a registration row, in the order of ``codec.registration_row``.
REGISTRATION_COLUMNS = (
    "id",
    "endpoint",
    "doc",
    "host",
    "port",
    "lifetime_s",
    "registered_at",
    "updated_at",
    "endpoint_type",
    "lwm2m_version",
    "binding",
    "queue_mode",
    "sms_number",
    "transport",
    "links_text",
    "root_path",
    "content_formats",
    "objects",
    "identity",
)

#: The columns an Update rewrites when only the address, lifetime and time changed.
REGISTRATION_UPDATE_COLUMNS = ("host", "port", "lifetime_s", "updated_at", "transport")

#: A Register, or an Update that changed more than the address and lifetime: the whole row.
#: The UNIQUE endpoint makes REPLACE delete a replaced registration's row (same name) in
#: the same statement.
_UPSERT_HEAD = f"INSERT OR REPLACE INTO registrations ({', '.join(REGISTRATION_COLUMNS)}) VALUES"
REGISTRATION_UPSERT = f"{_UPSERT_HEAD} ({', '.join('?' * len(REGISTRATION_COLUMNS))})"
#: An Update that changed only the address, lifetime or transport (the common one).
REGISTRATION_TOUCH = (
    f"UPDATE registrations SET {', '.join(f'{c} = ?' for c in REGISTRATION_UPDATE_COLUMNS)} "
    "WHERE id = ?"
)
REGISTRATION_DELETE = "DELETE FROM registrations WHERE id = ?"
REGISTRATION_SELECT = f"SELECT {', '.join(REGISTRATION_COLUMNS)} FROM registrations"

register_form(REGISTRATION_UPSERT, insert_form(_UPSERT_HEAD, len(REGISTRATION_COLUMNS)))
register_form(REGISTRATION_TOUCH, update_form("registrations", REGISTRATION_UPDATE_COLUMNS, "id"))
register_form(REGISTRATION_DELETE, delete_form("registrations", "id"))
