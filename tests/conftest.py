"""Shared fixtures: settings pointing at a temporary keys directory, unique topic names."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from bus.settings import BusSettings

REPO = Path(__file__).resolve().parent.parent


def unique(prefix: str) -> str:
    """A topic or group name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.mkdir()
    return path


@pytest.fixture
def offline_settings(keys_dir: Path) -> BusSettings:
    """Settings for tests that need no broker."""
    return BusSettings(keys_dir=keys_dir, schemas_dir=REPO / "schemas")
