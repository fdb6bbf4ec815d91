"""The cluster tests run their own three-node cluster: they need no session broker."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _delete_test_topics() -> None:
    """Nothing to clean on the session broker: the cluster, and its topics, go with the test."""
