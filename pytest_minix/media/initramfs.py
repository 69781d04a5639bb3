"""A small writer for Linux initramfs images: ``newc`` cpio archives, optionally gzipped.

Written in Python so building a guest needs neither root nor ``cpio``: every entry is
owned by uid/gid 0 in the archive whatever the builder's own ids are, and device nodes
can be described without ``mknod``. Timestamps default to 0 so the same inputs give
byte-identical archives.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member; ``data`` is the file contents or the symlink target."""

    name: str
    mode: int  # full st_mode: file type bits | permission bits
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _normalise(path: str) -> str:
    """Archive names are relative (``bin/sh``); reject anything that climbs out."""
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in ("..", ".") for p in parts):
        raise ValueError(f"bad initramfs path {path!r}")
    return "/".join(parts)


class CpioWriter:
    """Collects entries, then serialises them as a ``newc`` archive.

    Missing parent directories are added automatically (mode 0755) because the kernel's
    unpacker does not create them and silently drops entries whose parent is missing.
    """

    def __init__(self, mtime: int = 0) -> None:
        self.mtime = mtime
        self._entries: dict[str, Entry] = {}

    def __contains__(self, path: str) -> bool:
        return _normalise(path) in self._entries

    @property
    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def _add(self, entry: Entry) -> None:
        parent = PurePosixPath(entry.name).parent
        if str(parent) != ".":
            self.add_dir(str(parent), exist_ok=True)
        if entry.name in self._entries:
            raise ValueError(f"duplicate initramfs entry {entry.name!r}")
        self._entries[entry.name] = entry

    def add_dir(self, path: str, mode: int = 0o755, *, exist_ok: bool = False) -> None:
        name = _normalise(path)
        existing = self._entries.get(name)
        if existing is not None:
            if exist_ok and stat.S_ISDIR(existing.mode):
                return
            raise ValueError(f"duplicate initramfs entry {name!r}")
        self._add(Entry(name, stat.S_IFDIR | (mode & 0o7777)))

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._add(Entry(_normalise(path), stat.S_IFREG | (mode & 0o7777), data))

    def add_symlink(self, path: str, target: str) -> None:
        if not target:
            raise ValueError(f"empty symlink target for {path!r}")
        self._add(Entry(_normalise(path), stat.S_IFLNK | 0o777, target.encode()))

    def add_device(self, path: str, kind: str, major: int, minor: int, mode: int = 0o600) -> None:
        """Add a character (``kind="c"``) or block (``kind="b"``) device node."""
        types = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}
        if kind not in types:
            raise ValueError(f"device kind must be 'c' or 'b', not {kind!r}")
        self._add(Entry(_normalise(path), types[kind] | (mode & 0o7777), b"", major, minor))

    def add_tree(self, src: Path, dest: str) -> None:
        """Copy a host directory tree (files, dirs, symlinks) under ``dest``."""
        self.add_dir(dest, exist_ok=True)
        for child in sorted(src.rglob("*")):
            rel = f"{dest.rstrip('/')}/{child.relative_to(src).as_posix()}"
            if child.is_symlink():
                self.add_symlink(rel, str(child.readlink()))
            elif child.is_dir():
                self.add_dir(rel, child.stat().st_mode, exist_ok=True)
            elif child.is_file():
                self.add_file(rel, child.read_bytes(), child.stat().st_mode)

    def to_bytes(self) -> bytes:
        out = bytearray()
        # Sorted names put every directory before its contents, as the unpacker needs.
        entries = sorted(self._entries.values(), key=lambda e: e.name.split("/"))
        for ino, entry in enumerate([*entries, Entry(_TRAILER, 0)], start=1):
            is_trailer = entry.name == _TRAILER
            name = entry.name.encode() + b"\0"
            fields = (
                0 if is_trailer else ino,
                entry.mode,
                0,  # uid
                0,  # gid
                2 if stat.S_ISDIR(entry.mode) else 1,  # nlink
                0 if is_trailer else self.mtime,
                len(entry.data),
                0,  # devmajor
                0,  # devminor
                entry.rdev_major,
                entry.rdev_minor,
                len(name),
                0,  # check: only used by the "crc" format
            )
            header = _MAGIC + b"".join(b"%08X" % f for f in fields)
            out += header + name + _pad4(len(header) + len(name))
            out += entry.data + _pad4(len(entry.data))
        return bytes(out)

    def write(self, path: Path, *, compress: bool = True) -> None:
        """Write the archive, gzipped by default (every distro kernel has RD_GZIP)."""
        raw = self.to_bytes()
        # mtime=0 keeps the gzip header deterministic too.
        path.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0) if compress else raw)
