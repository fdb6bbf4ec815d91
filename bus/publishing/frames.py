"""Frames between a publisher and its preparing workers.

A worker's output opens with ``MAGIC``, so that anything else written there (a ``sitecustomize``
that prints, say) is told apart at once instead of being read as a frame's length. Then each
frame is a 4-byte big-endian length and a body. The publisher sends chunks as ``SEQ`` (the
chunk's number, outside the pickle, so a worker that cannot unpickle a chunk can still say which
it was) and the pickle of the alerts; a worker answers with pickled tuples:

- ``("ready", pid, public_key)`` once, after it loaded the schemas and the signing key;
- ``("fatal", message)`` instead, when it could not;
- ``("done", seq, ready, failure)`` for each chunk (``ready`` is None for a chunk it could not
  read: the publisher prepares that one itself).

Pickle, because both ends are this package in processes of one user, over pipes nobody else
holds; nothing read from the network is ever unpickled.
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

MAGIC = b"BUS\x01"
HEAD = struct.Struct(">I")
SEQ = struct.Struct(">Q")


def encode(obj: Any) -> bytes:
    return _frame(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def chunk(seq: int, items: Any) -> bytes:
    """A chunk of alerts for a worker, numbered ``seq``."""
    return _frame(SEQ.pack(seq) + pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))


def _frame(body: bytes) -> bytes:
    return HEAD.pack(len(body)) + body


def read_body(stream: IO[bytes]) -> bytes | None:
    """The next frame's body, or None at the end of the stream."""
    head = stream.read(HEAD.size)
    if len(head) < HEAD.size:
        return None
    (size,) = HEAD.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def read(stream: IO[bytes]) -> Any | None:
    """The next frame's object, or None at the end of the stream."""
    body = read_body(stream)
    return None if body is None else pickle.loads(body)


def write(stream: IO[bytes], obj: Any) -> None:
    stream.write(encode(obj))
    stream.flush()
