"""``lwm2m firmware add|list|show|delete``: manage the firmware repository.

Two ways to reach it:

* ``--url http://host:8080`` (the default, ``http://127.0.0.1:8080``) talks to a
  running ``lwm2m server`` through its REST API (``--token`` if it runs with
  ``--api-token``). The upload is the raw image with its SHA-256 computed
  here, so the server refuses bytes damaged on the way.
* ``--data-dir DIR`` (with ``--store``, as ``lwm2m server`` takes them) works on
  the files and the store directly, for provisioning before the server
  starts. Do not use it while a server runs on that data directory: the
  running server would not see the change until its restart.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"


class CommandError(Exception):
    """What to print before exiting with status 1."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--url", help=f"REST API of a running server (default {DEFAULT_URL}, or $LWM2M_URL)"
    )
    where.add_argument(
        "--data-dir", help="work on a stopped server's data directory instead of its REST API"
    )
    parser.add_argument("--token", help="bearer token (the server's --api-token; or $LWM2M_TOKEN)")
    parser.add_argument(
        "--store", default="sqlite", help="with --data-dir: sqlite (default) or a redis:// URL"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="upload an image")
    add.add_argument("file", help="the image file")
    add.add_argument("--version", required=True, help="firmware version the image installs")
    add.add_argument("--name", help="image name (default: the file name)")
    add.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="only devices reporting VALUE at PATH, e.g. /3/0/1='Model X' (repeatable)",
    )
    actions.add_parser("list", help="list images")
    show = actions.add_parser("show", help="show one image")
    show.add_argument("id")
    delete = actions.add_parser("delete", help="delete an image")
    delete.add_argument("id")


def run(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(_local(args)) if args.data_dir else _remote(args)
    except CommandError as exc:
        print(f"lwm2m firmware: {exc}", file=sys.stderr)
        return 1
    if args.action == "list":
        assert isinstance(result, list)
        for image in result:
            target = ",".join(f"{k}={v}" for k, v in image["target"].items()) or "-"
            print(
                f"{image['id']}  {image['name']}  {image['version']}  "
                f"{image['size']}  {image['sha256'][:16]}  {target}"
            )
    elif result is not None:
        print(json.dumps(result, indent=2))
    return 0


# Private


def _targets(items: list[str]) -> dict[str, str]:
    target: dict[str, str] = {}
    for item in items:
        path, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"--target {item!r}: expected PATH=VALUE")
        target[path.strip()] = value
    return target


def _image_file(args: argparse.Namespace) -> tuple[bytes, str]:
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise CommandError(f"{args.file}: {exc.strerror or exc}") from None
    return data, args.name or os.path.basename(args.file)


async def _local(args: argparse.Namespace) -> Any:
    from lwm2m.server.firmware import FirmwareError, FirmwareRepository
    from lwm2m.stores import StoreError, open_stores

    try:
        stores = await open_stores(args.store, args.data_dir)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    try:
        repo = await FirmwareRepository.open(stores.documents, args.data_dir)
        try:
            if args.action == "add":
                data, name = _image_file(args)
                image = await repo.add(
                    data, name=name, version=args.version, target=_targets(args.target)
                )
                return image.to_json()
            if args.action == "list":
                return [image.to_json() for image in await repo.list()]
            if args.action == "show":
                found = await repo.get(args.id)
                if found is None:
                    raise CommandError(f"no firmware image {args.id!r}")
                return found.to_json()
            if not await repo.delete(args.id):
                raise CommandError(f"no firmware image {args.id!r}")
            return None
        except FirmwareError as exc:
            raise CommandError(str(exc)) from None
    finally:
        await stores.close()


def _remote(args: argparse.Namespace) -> Any:
    base = (args.url or os.environ.get("LWM2M_URL") or DEFAULT_URL).rstrip("/")
    api = f"{base}/api/firmware"
    if args.action == "add":
        data, name = _image_file(args)
        query = {
            "name": name,
            "version": args.version,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        target = _targets(args.target)
        if target:
            query["target"] = json.dumps(target)
        url = f"{api}?{urllib.parse.urlencode(query)}"
        return _call(args, "POST", url, data)
    if args.action == "list":
        return _call(args, "GET", api)
    quoted = urllib.parse.quote(args.id, safe="")
    if args.action == "show":
        return _call(args, "GET", f"{api}/{quoted}")
    return _call(args, "DELETE", f"{api}/{quoted}")


def _call(args: argparse.Namespace, method: str, url: str, body: bytes | None = None) -> Any:
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/octet-stream"
    token = args.token or os.environ.get("LWM2M_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        raise CommandError(f"{method} {url}: {exc.code} {_message(exc.read())}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach {url}: {reason} (is the server running?)") from None
    return json.loads(text) if text else None


def _message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:200]
    return str(doc.get("message", doc)) if isinstance(doc, dict) else str(doc)
