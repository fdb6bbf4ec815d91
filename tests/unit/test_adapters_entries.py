"""Drop-folder entries: only regular files of one name are read, never through a link."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from services.adapters.entries import (
    DIRECTORY,
    HARD_LINK,
    NAME_MAX_BYTES,
    SYMLINK,
    NotRegular,
    check_own_directory,
    fit_name,
    move_into,
    read_regular,
    remove_links_below,
)
from services.adapters.errors import AdapterError
from services.adapters.quarantine import write_report

SECRET = b"private key bytes that must never be read\n"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "rs.key"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def test_a_regular_file_is_read_with_its_hash_and_identity(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"a,b\n1,2\n")
    content = read_regular(path, 1024)
    assert content.data == b"a,b\n1,2\n"
    assert content.size == 8
    assert content.sha256 == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    st = os.lstat(path)
    assert content.identity == (st.st_dev, st.st_ino)


def test_a_file_over_the_limit_is_hashed_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"x" * 5000)
    content = read_regular(path, 1000)
    assert (content.data, content.size) == (b"", 5000)
    assert content.sha256 == hashlib.sha256(b"x" * 5000).hexdigest()


def test_a_symbolic_link_is_refused_and_not_followed(tmp_path: Path, secret: Path) -> None:
    link = tmp_path / "export.csv"
    link.symlink_to(secret)
    with pytest.raises(NotRegular) as info:
        read_regular(link, 1024)
    assert info.value.kind == SYMLINK
    assert info.value.reason == "a symbolic link; the adapter reads only regular files dropped here"
    assert SECRET.decode() not in str(info.value)


def test_a_hard_link_is_refused(tmp_path: Path, secret: Path) -> None:
    link = tmp_path / "export.csv"
    os.link(secret, link)
    with pytest.raises(NotRegular) as info:
        read_regular(link, 1024)
    assert info.value.kind == HARD_LINK
    assert "one of 2 names of the same file" in info.value.reason


def test_a_fifo_a_directory_and_a_device_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # no writer: a blocking open or read would wait for ever
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    started = time.monotonic()
    kinds = []
    for path in (fifo, folder, Path("/dev/null")):
        with pytest.raises(NotRegular) as info:
            read_regular(path, 1024)
        kinds.append(info.value.kind)
    assert kinds == ["a FIFO (named pipe)", DIRECTORY, "a device node"]
    assert time.monotonic() - started < 2


def test_own_directories_are_created_or_must_be_real_directories(
    tmp_path: Path, secret: Path
) -> None:
    done = tmp_path / "done"
    check_own_directory(done)
    check_own_directory(done)
    assert done.is_dir()
    quarantine = tmp_path / "quarantine"
    quarantine.symlink_to(secret.parent)
    with pytest.raises(AdapterError, match="is a symbolic link, not a directory"):
        check_own_directory(quarantine)
    dangling = tmp_path / "state"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(AdapterError, match="symbolic link"):
        check_own_directory(dangling)
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    with pytest.raises(AdapterError, match="is a regular file, not a directory"):
        check_own_directory(plain)


def test_long_names_are_shortened_to_fit_with_a_hash() -> None:
    name = "ж" * 126 + ".csv"  # 256 bytes in UTF-8
    fitted = fit_name(name, reserve_bytes=len(".report.jsonl"))
    assert len(os.fsencode(fitted + ".report.jsonl")) <= NAME_MAX_BYTES
    assert fitted.endswith(".csv")
    assert fitted != fit_name("ж" * 125 + "з.csv", reserve_bytes=13)
    assert fit_name("a.csv") == "a.csv"


def test_move_into_keeps_names_apart_and_never_keeps_a_swapped_in_link(
    tmp_path: Path, secret: Path
) -> None:
    folder = tmp_path / "done"
    for content in (b"1", b"2", b"3"):
        (tmp_path / "a.csv").write_bytes(content)
        move_into(folder, tmp_path / "a.csv", tag="abc", identity=None)
    assert sorted(p.name for p in folder.iterdir()) == ["a.abc-2.csv", "a.abc.csv", "a.csv"]
    # The file read was replaced by a link before it was moved: the link does not stay.
    (tmp_path / "b.csv").symlink_to(secret)
    target = move_into(folder, tmp_path / "b.csv", tag="abc", identity=(0, 0))
    assert not os.path.lexists(target)
    assert secret.read_bytes() == SECRET


def test_a_link_or_fifo_planted_at_a_report_path_is_replaced_not_written_through(
    tmp_path: Path, secret: Path
) -> None:
    report = tmp_path / "x.csv.report.jsonl"
    report.symlink_to(secret)
    write_report(report, [{"reason": "one"}])
    assert secret.read_bytes() == SECRET
    assert not report.is_symlink()
    assert report.read_text() == '{"reason": "one"}\n'
    fifo = tmp_path / "y.csv.report.jsonl"
    os.mkfifo(fifo)
    write_report(fifo, [{"reason": "two"}])
    assert fifo.read_text() == '{"reason": "two"}\n'


def test_links_fifos_and_second_names_below_a_directory_are_removed_by_name_only(
    tmp_path: Path, secret: Path
) -> None:
    folder = tmp_path / "dropped"
    deep = folder
    for i in range(40):  # deeper than the walk goes
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (folder / "ok.csv").write_bytes(b"a\n")
    (folder / "key.csv").symlink_to(secret)
    os.link(secret, folder / "d0" / "hard.csv")
    os.mkfifo(folder / "d0" / "d1" / "pipe")
    (deep / "far.csv").symlink_to(secret)
    removed, complete = remove_links_below(folder)
    assert removed == 3
    assert not complete  # d31 and below were not looked at
    assert sorted(p.name for p in folder.iterdir()) == ["d0", "ok.csv"]
    assert secret.read_bytes() == SECRET
    assert os.lstat(secret).st_nlink == 1
    many = tmp_path / "many"
    many.mkdir()
    for i in range(20):
        (many / f"{i}.csv").symlink_to(secret)
    assert remove_links_below(many, max_entries=5) == (5, False)
