"""Unit tests of the newc cpio writer, checked against its own format and the real cpio."""

from __future__ import annotations

import gzip
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pytest_minix.media.initramfs import CpioWriter

needs_cpio = pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed (apt-get install cpio)")


def parse_newc(raw: bytes) -> list[dict[str, object]]:
    """A minimal independent reader: header fields, name and data of every entry."""
    entries: list[dict[str, object]] = []
    pos = 0
    while True:
        assert pos % 4 == 0, f"header at unaligned offset {pos}"
        assert raw[pos : pos + 6] == b"070701"
        fields = [int(raw[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_start = pos + 110
        name = raw[name_start : name_start + namesize]
        assert name.endswith(b"\0")
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        assert data_start % 4 == 0
        data = raw[data_start : data_start + filesize]
        pos = data_start + filesize + (-filesize % 4)
        entry = {
            "name": name[:-1].decode(),
            "mode": fields[1],
            "uid": fields[2],
            "gid": fields[3],
            "nlink": fields[4],
            "mtime": fields[5],
            "rdev": (fields[9], fields[10]),
            "data": data,
        }
        if entry["name"] == "TRAILER!!!":
            assert raw[pos:].strip(b"\0") == b""
            return entries
        entries.append(entry)


def sample() -> CpioWriter:
    w = CpioWriter()
    w.add_dir("/etc")
    w.add_dir("tmp", 0o1777)
    w.add_file("/etc/passwd", b"root::0:0:root:/root:/bin/sh\n")
    w.add_file("bin/busybox", b"\x7fELF" + bytes(range(256)) * 3, 0o755)
    w.add_symlink("bin/sh", "/bin/busybox")
    w.add_symlink("sbin/init", "../bin/busybox")
    w.add_file("init", b"#!/bin/sh\necho hi\n", 0o755)
    w.add_file("empty", b"")
    return w


def test_format_fields_and_order() -> None:
    entries = parse_newc(sample().to_bytes())
    names = [e["name"] for e in entries]
    # Parents come before children and missing parents (bin, sbin) were added.
    assert names == ["bin", "bin/busybox", "bin/sh", "empty", "etc", "etc/passwd", "init", "sbin", "sbin/init", "tmp"]
    by_name = {e["name"]: e for e in entries}
    assert all(e["uid"] == 0 and e["gid"] == 0 and e["mtime"] == 0 for e in entries)
    assert by_name["tmp"]["mode"] == stat.S_IFDIR | 0o1777
    assert by_name["tmp"]["nlink"] == 2
    assert by_name["bin"]["mode"] == stat.S_IFDIR | 0o755
    assert by_name["init"]["mode"] == stat.S_IFREG | 0o755
    assert by_name["etc/passwd"]["mode"] == stat.S_IFREG | 0o644
    assert by_name["bin/sh"]["mode"] == stat.S_IFLNK | 0o777
    assert by_name["bin/sh"]["data"] == b"/bin/busybox"


@pytest.mark.parametrize("length", range(1, 9))
def test_name_padding_every_length(length: int) -> None:
    # 110-byte header + name + NUL must pad to 4: exercise every residue, odd ones included.
    w = CpioWriter()
    w.add_file("x" * length, b"abc")  # odd-length data needs padding too
    w.add_file("y" * (length + 1), b"defgh")
    entries = parse_newc(w.to_bytes())
    assert [(e["name"], e["data"]) for e in entries] == [("x" * length, b"abc"), ("y" * (length + 1), b"defgh")]


def test_device_nodes() -> None:
    w = CpioWriter()
    w.add_device("dev/console", "c", 5, 1)
    w.add_device("dev/sda", "b", 8, 0, 0o660)
    by_name = {e["name"]: e for e in parse_newc(w.to_bytes())}
    assert by_name["dev/console"]["mode"] == stat.S_IFCHR | 0o600
    assert by_name["dev/console"]["rdev"] == (5, 1)
    assert by_name["dev/sda"]["mode"] == stat.S_IFBLK | 0o660
    assert by_name["dev/sda"]["rdev"] == (8, 0)
    with pytest.raises(ValueError):
        w.add_device("dev/x", "p", 1, 1)


def test_rejects_duplicates_and_bad_paths() -> None:
    w = CpioWriter()
    w.add_file("a/b", b"")
    with pytest.raises(ValueError):
        w.add_file("/a/b", b"")
    with pytest.raises(ValueError):
        w.add_file("a", b"")  # already a directory
    w.add_dir("a", exist_ok=True)
    for bad in ("", "/", "../x", "a/../b", "./x"):
        with pytest.raises(ValueError):
            w.add_file(bad, b"")
    with pytest.raises(ValueError):
        w.add_symlink("l", "")


def test_gzip_output_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.gz", tmp_path / "b.gz"
    sample().write(a)
    sample().write(b)
    assert a.read_bytes() == b.read_bytes()
    assert gzip.decompress(a.read_bytes()) == sample().to_bytes()
    sample().write(tmp_path / "raw", compress=False)
    assert (tmp_path / "raw").read_bytes() == sample().to_bytes()


def test_add_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"data")
    (src / "sub" / "f").chmod(0o640)
    (src / "link").symlink_to("sub/f")
    w = CpioWriter()
    w.add_tree(src, "mnt/t")
    by_name = {e["name"]: e for e in parse_newc(w.to_bytes())}
    assert by_name["mnt/t/sub/f"]["data"] == b"data"
    assert by_name["mnt/t/sub/f"]["mode"] == stat.S_IFREG | 0o640
    assert by_name["mnt/t/link"]["data"] == b"sub/f"


@needs_cpio
def test_real_cpio_lists_and_extracts(tmp_path: Path) -> None:
    archive = sample().to_bytes()
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=archive, capture_output=True, check=True)
    assert listing.stdout.decode().split() == [
        "bin",
        "bin/busybox",
        "bin/sh",
        "empty",
        "etc",
        "etc/passwd",
        "init",
        "sbin",
        "sbin/init",
        "tmp",
    ]
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        ["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=archive, cwd=out, capture_output=True, check=True
    )
    assert (out / "etc" / "passwd").read_bytes() == b"root::0:0:root:/root:/bin/sh\n"
    assert (out / "bin" / "busybox").read_bytes() == b"\x7fELF" + bytes(range(256)) * 3
    assert (out / "empty").read_bytes() == b""
    assert stat.S_IMODE((out / "init").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "etc" / "passwd").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "tmp").stat().st_mode) == 0o1777
    assert (out / "bin" / "sh").is_symlink() and str((out / "bin" / "sh").readlink()) == "/bin/busybox"
    assert str((out / "sbin" / "init").readlink()) == "../bin/busybox"


@needs_cpio
def test_real_cpio_odd_names(tmp_path: Path) -> None:
    w = CpioWriter()
    names = ["a", "bb", "ccc", "dddd", "eeeee", "d/x", "d/yyy"]
    for n in names:
        if n != "d":
            w.add_file(n, n.encode() * 3)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=w.to_bytes(), cwd=out, capture_output=True, check=True)
    for n in names:
        assert (out / n).read_bytes() == n.encode() * 3


@needs_cpio
def test_real_cpio_sees_device_nodes() -> None:
    w = CpioWriter()
    w.add_device("dev/console", "c", 5, 1)
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=w.to_bytes(), capture_output=True, check=True)
    line = next(ln for ln in listing.stdout.decode().splitlines() if ln.endswith("dev/console"))
    assert line.startswith("crw-------")
    assert "5," in line and " 1 " in line
