"""A process that prepares alerts for a publisher: ``python -m bus.publishing.worker``.

    python -m bus.publishing.worker <origin> <keys_dir> <schemas_dir>

Started by ``PreparingPool``, never by hand. It loads the schemas and the origin's signing key
itself, says so (with its public key, which the publisher checks against its own), then
prepares each chunk of alerts it reads from stdin and answers on stdout (``prepare_chunk``),
until stdin closes. The frames are in ``bus.publishing.frames``.
Stray output of any library goes to stderr, never into the frames.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys

from bus.publishing import frames


def main(argv: list[str]) -> int:
    # The publishing process decides when this one ends (it closes stdin); a Ctrl-C in its
    # terminal reaches both, and only the publisher should act on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    frames_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # print() can no longer break a frame
    frames_out.write(frames.MAGIC)
    frames_in = sys.stdin.buffer
    try:
        origin, keys_dir, schemas_dir = argv
    except ValueError:
        usage = "usage: python -m bus.publishing.worker ORIGIN KEYS_DIR SCHEMAS_DIR"
        frames.write(frames_out, ("fatal", usage))
        return 2
    from pathlib import Path

    from bus.codec import AlertCodec
    from bus.errors import BusError
    from bus.keys import Signer
    from bus.publishing.ready import prepare_chunk
    from bus.schemas import SchemaRegistry

    try:
        codec = AlertCodec(SchemaRegistry.load(Path(schemas_dir)))
        signer = Signer.load(Path(keys_dir), origin)
    except BusError as exc:
        frames.write(frames_out, ("fatal", str(exc)))
        return 1
    # This process holds only a chunk at a time, and a chunk's objects die with it: the cycle
    # collector runs between chunks, on what is young, instead of in the middle of one
    # (about 3 % of the time here), and on everything every hundred chunks.
    gc.freeze()  # the schemas, writers and modules loaded above stay: never walk them
    gc.disable()
    chunks = 0
    frames.write(frames_out, ("ready", os.getpid(), signer.public_key))
    while (body := frames.read_body(frames_in)) is not None:
        (seq,) = frames.SEQ.unpack_from(body)
        try:
            items = pickle.loads(memoryview(body)[frames.SEQ.size :])
        except Exception:  # e.g. a class only the publisher's own program knows
            frames.write(frames_out, ("done", seq, None, None))
            continue
        ready, failure = prepare_chunk(items, codec, signer, origin)
        frames.write(frames_out, ("done", seq, ready, failure))
        del body, items, ready, failure
        chunks += 1
        gc.collect(2 if chunks % 100 == 0 else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
