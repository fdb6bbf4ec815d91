"""Free local ports for the brokers that tests start on their own."""

from __future__ import annotations

import socket


def free_port_run(length: int) -> int:
    """The first of ``length`` consecutive free ports."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + length < 65536 and all(_free(base + i) for i in range(length)):
            return base
    raise AssertionError(f"no {length} consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
