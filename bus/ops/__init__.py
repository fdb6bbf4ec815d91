"""The operator's view: each service's metrics, health and readiness, and ``bus status``.

Each long-running service keeps a ``ServiceMetrics`` (``service.metrics``) and serves it::

    async with OpsServer(service.metrics, host="127.0.0.1", port=8490):
        await service.run()       # GET /metrics, /healthz, /readyz meanwhile
"""

from bus.ops.lag import ConsumerLag
from bus.ops.metrics import (
    AdapterMetrics,
    FanoutMetrics,
    IndexMetrics,
    Readiness,
    ServiceMetrics,
)
from bus.ops.server import OpsServer, ops_endpoint
from bus.ops.settings import OpsSettings

__all__ = [
    "AdapterMetrics",
    "ConsumerLag",
    "FanoutMetrics",
    "IndexMetrics",
    "OpsServer",
    "OpsSettings",
    "Readiness",
    "ServiceMetrics",
    "ops_endpoint",
]
