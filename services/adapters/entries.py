"""What the adapter reads from a drop folder: regular files only, never through a link.

A national system writes its drop folder, and the bus does not trust what it puts there. A
symbolic link named ``export.csv`` that points at the adapter's private key, or a hard link to
it (another name for the same file, possible on the same filesystem), would otherwise be read,
"rejected" and copied to ``bus.dlq`` and ``quarantine/``; a FIFO would block the reader for ever;
a device may act when opened. So:

- the folder is listed with ``lstat``, which never follows a link, and only what it calls a
  regular file is opened;
- that file is opened with ``O_NOFOLLOW | O_NONBLOCK | O_NOCTTY`` and the *opened* descriptor is
  checked with ``fstat``: a file swapped for a link, a FIFO or a directory between listing and
  opening is still refused, before a byte of it is read;
- a regular file with more than one name (``st_nlink > 1``) is refused like a link.

    content = read_regular(path, limit_bytes)      # or raises NotRegular / OSError
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from services.adapters.errors import AdapterError

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK_BYTES = 1024 * 1024

SYMLINK = "a symbolic link"
HARD_LINK = "a hard link"
DIRECTORY = "a directory"


def kind_of(mode: int) -> str | None:
    """What an entry that is not a regular file is, for reasons; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return SYMLINK
    if stat.S_ISDIR(mode):
        return DIRECTORY
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    return "not a regular file"


def refusal_reason(kind: str, *, links: int = 0) -> str:
    """The reason reported for an entry that is not read."""
    if kind == HARD_LINK:
        return (
            f"a hard link (one of {links} names of the same file); the adapter reads only "
            "regular files dropped here: copy the file in, do not link it"
        )
    return f"{kind}; the adapter reads only regular files dropped here"


class NotRegular(AdapterError):
    """A drop-folder entry that is not read: ``kind`` says what it is (``SYMLINK``, …)."""

    def __init__(self, kind: str, *, links: int = 0) -> None:
        self.kind = kind
        self.reason = refusal_reason(kind, links=links)
        super().__init__(self.reason)


@dataclass(frozen=True)
class FileContent:
    """A regular file as read: its bytes (empty when over the limit), size and SHA-256, and
    ``identity`` (device, inode) to tell it from whatever may replace it later."""

    data: bytes
    size: int
    sha256: str
    identity: tuple[int, int]


def read_regular(path: Path, limit_bytes: int) -> FileContent:
    """Read ``path`` if, once opened, it is a regular file with one name; else ``NotRegular``.

    A file over ``limit_bytes`` (also one that grew past it while read) is hashed, not kept.
    Blocking: call it in a thread.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise NotRegular(SYMLINK) from exc
        raise
    try:
        st = os.fstat(fd)
        kind = kind_of(st.st_mode)
        if kind is not None:
            raise NotRegular(kind)
        if st.st_nlink > 1:
            raise NotRegular(HARD_LINK, links=st.st_nlink)
        identity = (st.st_dev, st.st_ino)
        with os.fdopen(os.dup(fd), "rb") as f:
            if st.st_size <= limit_bytes:
                data = f.read(limit_bytes + 1)
                if len(data) <= limit_bytes:
                    return FileContent(data, len(data), hashlib.sha256(data).hexdigest(), identity)
                f.seek(0)
            digest = hashlib.sha256()
            size = 0
            while chunk := f.read(_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
            return FileContent(b"", size, digest.hexdigest(), identity)
    finally:
        os.close(fd)


def check_own_directory(path: Path) -> None:
    """Create ``path`` (done/, quarantine/, .state/) or check that it is a real directory.

    The adapter moves files into these and writes reports there; through a symbolic link it
    would write wherever the link points. Raises ``AdapterError`` naming the problem.
    """
    try:
        path.mkdir()
        return
    except FileExistsError:
        st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        kind = kind_of(st.st_mode) or "a regular file"
        raise AdapterError(
            f"{path} is {kind}, not a directory; the adapter writes only into real directories "
            "of its drop folder: remove it (the adapter creates the directory itself)"
        )


#: The longest file name most filesystems take, in bytes.
NAME_MAX_BYTES = 255


def fit_name(name: str, *, reserve_bytes: int = 0) -> str:
    """``name``, shortened (keeping its suffix, adding a hash) to leave ``reserve_bytes`` under
    ``NAME_MAX_BYTES``: a dropped file with a 255-byte name still gets its report and its
    renamed copy, rather than failing on every pass."""
    encoded = os.fsencode(name)
    if len(encoded) + reserve_bytes <= NAME_MAX_BYTES:
        return name
    tag = "~" + hashlib.sha256(encoded).hexdigest()[:12]
    suffix = os.fsencode(Path(name).suffix)[:16]
    room = NAME_MAX_BYTES - reserve_bytes - len(tag) - len(suffix)
    stem = encoded[: max(room, 1)].decode("utf-8", "ignore")  # never half a character
    return os.fsdecode(os.fsencode(stem) + os.fsencode(tag) + suffix)


def move_into(folder: Path, path: Path, *, tag: str, identity: tuple[int, int] | None) -> Path:
    """Move ``path`` into ``folder`` (a real directory, checked) under a free name; the target.

    The name is kept, or gets ``.<tag>`` before its suffix if taken. With ``identity`` (of the
    file read), an entry that replaced the file in the meantime and is not a regular file or a
    directory (a link, a FIFO) is removed again at once: ``done/`` and ``quarantine/`` hold no
    links for anyone to follow.
    """
    check_own_directory(folder)
    name = fit_name(path.name, reserve_bytes=len(tag) + 8)
    target = folder / name
    counter = 0
    while os.path.lexists(target):
        counter += 1
        stem, suffix = Path(name).stem, Path(name).suffix
        target = folder / f"{stem}.{tag}{f'-{counter}' if counter > 1 else ''}{suffix}"
    os.replace(path, target)
    if identity is not None:
        st = os.lstat(target)
        if (st.st_dev, st.st_ino) != identity and kind_of(st.st_mode) not in (None, DIRECTORY):
            os.unlink(target)
    return target


_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_links_below(
    folder: Path, *, max_entries: int = 10_000, max_depth: int = 32
) -> tuple[int, bool]:
    """Remove every link, FIFO, socket and device below ``folder``, and every file with more
    than one name, so that a directory moved into quarantine/ holds nothing to follow.

    Only names are listed, never a file's bytes. Walks by directory descriptors (no path grows
    long, at most ``2 * max_depth`` descriptors open) and stops after ``max_entries``: returns
    (how many were removed, whether everything was looked at).
    """
    removed, seen, complete = 0, 0, True
    root = os.open(folder, _DIRECTORY_FLAGS)
    stack = [(root, os.scandir(root))]
    try:
        while stack:
            fd, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                entries.close()
                os.close(fd)
                continue
            seen += 1
            if seen > max_entries:
                return removed, False
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if len(stack) >= max_depth:
                    complete = False
                    continue
                child = os.open(entry.name, _DIRECTORY_FLAGS, dir_fd=fd)
                stack.append((child, os.scandir(child)))
            elif kind_of(st.st_mode) is not None or st.st_nlink > 1:
                os.unlink(entry.name, dir_fd=fd)
                removed += 1
        return removed, complete
    finally:
        for fd, entries in stack:
            entries.close()
            os.close(fd)
