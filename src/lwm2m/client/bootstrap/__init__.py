"""The client side of bootstrapping (seed 7.1): the four bootstrap modes.

``interface`` answers the Bootstrap Interface and requests bootstrap;
``unbootstrap`` is the pure rule of what deleting a server's Security instance
implies; ``factory`` and ``smartcard`` provision accounts before the first
start; ``options`` wires the ``lwm2m client`` command's options to them.
"""
