"""Everything the bus says to Kafka: client construction, bounded calls, admin, the local broker.

``bus.kafka.clients`` builds producers and consumers from settings and bounds every call;
``bus.kafka.admin`` administers topics; ``bus.kafka.local`` runs a local KRaft broker from the
Maven jars (``bus.kafka.secure`` makes it secure) and ``bus.kafka.cluster`` a cluster of them;
``bus.kafka.security`` turns the settings into client credentials and ``bus.kafka.diagnose``
says why a connection or request was refused.
Everything else in the bus talks to Kafka through these names.
"""

from bus.kafka.admin import Admin
from bus.kafka.clients import (
    ReadWindow,
    WaitBudget,
    bounded,
    iter_records,
    make_consumer,
    make_producer,
    read_to_end,
    stop_client,
    topic_partitions,
)

__all__ = [
    "Admin",
    "ReadWindow",
    "WaitBudget",
    "bounded",
    "iter_records",
    "make_consumer",
    "make_producer",
    "read_to_end",
    "stop_client",
    "topic_partitions",
]
