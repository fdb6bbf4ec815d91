"""Private files: created with mode 0600 in directories of mode 0700, and refused when looser.

Passwords and private keys only ever touch the disk through these functions, so that a file
is never, even for a moment, readable by another user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bus.errors import ConfigError


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed; refuse an existing one that others can enter."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_private(path)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, the file created with mode 0600 from the start."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)  # whatever the umask did
    tmp.replace(path)


def read_private(path: Path, what: str) -> bytes:
    """Read a private file; refuse it when other users may read it."""
    try:
        check_private(path)
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"No {what} at {path}") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {what} {path}: {exc.strerror}") from exc


def check_private(path: Path) -> None:
    """Raise ``ConfigError`` when group or others have any access to ``path``."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        want = "700" if path.is_dir() else "600"
        raise ConfigError(
            f"{path} is open to other users (mode {mode:o}); it holds credentials. "
            f"Run `chmod {want} {path}`."
        )
