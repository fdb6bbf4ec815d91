"""Preparing alerts for publishing in more than one process.

A large ``Publisher.publish_many`` call spends most of its time validating, encoding and signing,
all of it holding the interpreter lock. With ``BUS_PUBLISH_WORKERS=N`` the publisher keeps N
worker processes (``python -m bus.publishing.worker``) that prepare chunks of the call's alerts
while the publishing process prepares its own share and lays the results out in producer
batches. Each worker loads the signing key from ``BUS_KEYS_DIR`` itself, so the private key
never crosses a pipe. See ``bus.publishing.pool``.
"""

from bus.publishing.pool import PreparingPool, WorkerLost
from bus.publishing.ready import ChunkFailure, Ready, make_ready, prepare_chunk

__all__ = ["ChunkFailure", "PreparingPool", "Ready", "WorkerLost", "make_ready", "prepare_chunk"]
