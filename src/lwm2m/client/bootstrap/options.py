"""``lwm2m client`` options for the four bootstrap modes (seed 7.1).

- Factory Bootstrap: ``--factory FILE`` (or the client's ``--server`` options);
- Bootstrap from Smartcard: ``--smartcard FILE`` (an image file) or
  ``--smartcard-reader [NAME]`` (a PC/SC reader, needs ``pyscard``);
- Client Initiated Bootstrap: ``--bootstrap URI`` (the client command's option):
  Request Bootstrap when there is no LwM2M server account;
- Server Initiated Bootstrap: with a Bootstrap-Server account, writes from
  that server are accepted at any time.

``lwm2m.cli.client`` calls :func:`add_arguments` and then :func:`apply`
on every client before it starts.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lwm2m.client.bootstrap.factory import install_instances, load_factory_file
from lwm2m.client.bootstrap.interface import (
    BootstrapOptions,
    ClientBootstrap,
    install_bootstrap,
    node_values,
)
from lwm2m.client.bootstrap.smartcard import (
    DEFAULT_FILE_ID,
    SmartcardError,
    decode_image,
    load_image_file,
    read_card,
)
from lwm2m.client.config import ClientConfigError
from lwm2m.model.nodes import ObjectInstance
from lwm2m.protocol.bootstrap_config import BootstrapConfigError
from lwm2m.protocol.provisioning import PlannedWrite

if TYPE_CHECKING:
    from lwm2m.client.client import LwM2MClient

SECURITY = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("bootstrap")
    source = group.add_mutually_exclusive_group()
    source.add_argument(
        "--factory",
        metavar="FILE",
        help="factory bootstrap: JSON accounts (servers, bootstrap_server, acl) as in the "
        "bootstrap server's configuration",
    )
    source.add_argument(
        "--smartcard",
        metavar="FILE",
        help="bootstrap from a smartcard image file (docs/bootstrap.md)",
    )
    source.add_argument(
        "--smartcard-reader",
        nargs="?",
        const="",
        metavar="NAME",
        help="bootstrap from a card in a PC/SC reader (first reader, or one whose name contains NAME)",
    )
    group.add_argument(
        "--smartcard-file",
        type=lambda s: int(s, 16),
        default=DEFAULT_FILE_ID,
        metavar="FID",
        help=f"elementary file holding the image on the card (hex, default {DEFAULT_FILE_ID:04X})",
    )
    group.add_argument(
        "--bootstrap-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="client-initiated bootstrap: seconds to wait for Bootstrap-Finish",
    )


def _bootstrap_security(client: LwM2MClient) -> ObjectInstance | None:
    """The Bootstrap-Server Security instance the client has now (from ``--bootstrap``)."""
    from lwm2m.model.nodes import Resource

    for inst in client.store.instances(SECURITY):
        if inst.get(1) is True:
            resources = []
            for rid, value in inst.snapshot().items():
                if isinstance(value, dict):
                    resources.append(Resource.multiple(rid, value))
                else:
                    resources.append(Resource.single(rid, value))
            return ObjectInstance.of(inst.id, resources)
    return None


def install_provisioning(client: LwM2MClient, writes: list[PlannedWrite]) -> None:
    """Install factory/smartcard instances, keeping a ``--bootstrap`` account they lack."""
    kept = _bootstrap_security(client)
    has_bootstrap = any(
        w.path.object_id == SECURITY and node_values(w.instance).get(1) is True for w in writes
    )
    install_instances(client, writes)
    if kept is not None and not has_bootstrap:
        taken = {w.path.instance_id for w in writes if w.path.object_id == SECURITY}
        iid = kept.id
        while iid in taken:
            iid += 1
        client.store.create_instance(SECURITY, iid, node_values(kept))


def apply(client: LwM2MClient, args: argparse.Namespace) -> ClientBootstrap:
    """Provision ``client`` from ``--factory`` / ``--smartcard`` and make it bootstrap-capable."""
    writes: list[PlannedWrite] | None = None
    if getattr(args, "factory", None):
        try:
            config = load_factory_file(args.factory, client.endpoint_name)
        except BootstrapConfigError as exc:
            raise ClientConfigError(f"--factory: {exc}") from None
        from lwm2m.protocol.provisioning import plan_writes

        writes = plan_writes(config)
    elif getattr(args, "smartcard", None):
        try:
            writes = load_image_file(args.smartcard, client.registry)
        except SmartcardError as exc:
            raise ClientConfigError(f"--smartcard: {exc}") from None
    elif getattr(args, "smartcard_reader", None) is not None:
        try:
            image = read_card(args.smartcard_reader or None, args.smartcard_file)
            writes = decode_image(image, client.registry)
        except SmartcardError as exc:
            raise ClientConfigError(f"--smartcard-reader: {exc}") from None
    if writes is not None:
        install_provisioning(client, writes)
    options = BootstrapOptions(finish_timeout_s=getattr(args, "bootstrap_timeout", 120.0))
    return install_bootstrap(client, options)


__all__ = ["add_arguments", "apply", "install_provisioning"]
