"""Frames between a publisher and its preparing workers: a 4-byte big-endian length, a pickle.

Pickle, because both ends are this package in processes of one user, over pipes nobody else
holds; nothing read from the network is ever unpickled.
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

HEAD = struct.Struct(">I")


def encode(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEAD.pack(len(body)) + body


def read(stream: IO[bytes]) -> Any | None:
    """The next frame's object, or None at the end of the stream."""
    head = stream.read(HEAD.size)
    if len(head) < HEAD.size:
        return None
    (size,) = HEAD.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


def write(stream: IO[bytes], obj: Any) -> None:
    stream.write(encode(obj))
    stream.flush()
