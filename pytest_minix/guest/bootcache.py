"""The boot cache: logged-in VMs saved after a cold boot, so later sessions start from them.

Layout under the cache root::

    states/<key>/meta.json          what the state was made from (the key's parts), when, and
                                    each file's size and SHA-256
    states/<key>/vm.state           QEMU's migration stream (RAM and devices)
    states/<key>/disk-<name>.qcow2  each disk overlay as it was, backed by the base image
    states/.tmp-<pid>-<rand>/       an entry being written (renamed into place when complete)

The key is the SHA-256 of everything that determines the saved machine (see :func:`state_key`).
An entry is written whole in a temporary directory and renamed into place under a file lock,
so two writers leave one good entry and a reader never sees half of one. An entry is never
changed: a bad one is removed (renamed away, then deleted) and replaced by the next save.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from pytest_minix.errors import HarnessError
from pytest_minix.guest.shell import setup_lines
from pytest_minix.media.images import sha256_file, sha256_remembered
from pytest_minix.paths import cache_root
from pytest_minix.profiles import GuestProfile
from pytest_minix.qemu.binary import find_qemu, qemu_version
from pytest_minix.qemu.machine import Incoming, Machine
from pytest_minix.version import harness_version

log = logging.getLogger(__name__)

FORMAT = 1  # of an entry's layout; part of the key
META = "meta.json"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
# A temporary directory older than this belongs to a writer that died.
STALE_TMP = 3600.0


class BadState(HarnessError):
    """A saved state that cannot be used (missing file, wrong size or hash, unreadable metadata)."""


@dataclass(frozen=True)
class StateKey:
    """What a saved VM was made from, and its digest (the entry's name)."""

    digest: str
    parts: dict[str, Any]


@dataclass(frozen=True)
class SavedState:
    """One entry of the boot cache."""

    path: Path
    meta: dict[str, Any]

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def incoming(self) -> Incoming:
        disks = {name: self.path / f"disk-{name}.qcow2" for name in self.meta.get("disks", [])}
        return Incoming(self.path / "vm.state", disks)

    @property
    def saved_at(self) -> float:
        return float(self.meta.get("saved_at", 0.0))

    @property
    def size(self) -> int:
        return sum(int(f.get("size", 0)) for f in self.meta.get("files", {}).values())

    def describe(self) -> str:
        m = self.meta
        return (
            f"{m.get('guest', '?')} {m.get('arch', '?')} (accel {m.get('accel', '?')}, {m.get('memory', '?')} MiB, "
            f"QEMU {m.get('qemu_version', '?')})"
        )


def state_key(machine: Machine, profile: GuestProfile) -> StateKey:
    """The key of ``machine`` booted and logged in as ``profile`` says.

    Its parts: the QEMU binary (path, version, size, mtime), the whole command line minus
    this run's own paths and name, accelerator and memory, the SHA-256 of every file the
    command line names (kernel, modules, initrd, CD) and of every base disk image, the
    profile's login and what the harness types after it, and the harness version.
    """
    spec = machine.spec
    qemu = find_qemu(spec.qemu_binary or spec.config.qemu, spec.arch)
    real = Path(os.path.realpath(qemu))
    st = real.stat()
    files: dict[str, Any] = {}
    for name, value in sorted(spec.files.items()):
        paths = [Path(p) for p in str(value).split(",")]
        if all(p.is_file() for p in paths):
            files[name] = [[str(p.resolve()), sha256_remembered(p)] for p in paths]
        else:
            files[name] = str(value)
    disks = {
        name: {
            "path": str(base.resolve()),
            "format": spec.disk_formats.get(name, "raw"),
            "sha256": sha256_remembered(base),
        }
        for name, base in sorted(spec.disks.items())
    }
    lg = profile.login
    parts: dict[str, Any] = {
        "format": FORMAT,
        "harness": harness_version(),
        "qemu": {"path": str(real), "version": qemu_version(qemu), "size": st.st_size, "mtime_ns": st.st_mtime_ns},
        "argv": machine.identity_argv(),
        "accel": spec.accel,
        "memory": spec.memory,
        "files": files,
        "disks": disks,
        "profile": {
            "name": profile.name,
            "login": [lg.user, lg.password, lg.prompt.pattern, lg.shell_prompt.pattern],
            "setup": setup_lines(profile),
            "uname_s": profile.uname_s,
        },
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return StateKey(digest, parts)


class BootCache:
    """The saved states under ``<cache>/states``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "states"

    def _lock(self) -> filelock.FileLock:
        """Held only to rename an entry into or out of place (milliseconds)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(str(self.root / ".lock"), timeout=60)

    # -- reading ----------------------------------------------------------------------------
    def lookup(self, key: StateKey) -> SavedState | None:
        """The entry for ``key``, verified; None when there is none.

        Raises :class:`BadState` for an entry that exists but cannot be used; the caller
        removes it (:meth:`remove`) and boots.
        """
        path = self.root / key.digest
        if not path.is_dir():
            return None
        try:
            entry = self._read(path)
        except BadState:
            if not path.is_dir():
                return None  # removed by another session meanwhile: not ours to judge
            raise
        if entry.meta.get("parts") != key.parts:
            raise BadState(f"saved state {path} was made from something else than its name says")
        self.verify(entry)
        return entry

    def _read(self, path: Path) -> SavedState:
        try:
            meta = json.loads((path / META).read_text())
        except FileNotFoundError:
            raise BadState(f"saved state {path} has no {META} (an incomplete entry)") from None
        except (OSError, ValueError) as exc:
            raise BadState(f"saved state {path} has unreadable metadata: {exc}") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
            raise BadState(f"saved state {path} has malformed metadata")
        return SavedState(path, meta)

    @staticmethod
    def verify(entry: SavedState) -> None:
        """Every file there, whole (its size) and unchanged (its SHA-256)."""
        for name, want in entry.meta["files"].items():
            f = entry.path / name
            try:
                size = f.stat().st_size
            except OSError:
                raise BadState(f"saved state {entry.path} lacks {name}") from None
            if size != want.get("size"):
                raise BadState(
                    f"saved state file {f} is {size} bytes, not {want.get('size')} (truncated or overwritten)"
                )
            if sha256_file(f) != want.get("sha256"):
                raise BadState(f"saved state file {f} does not match its recorded SHA-256 (corrupted)")

    def entries(self) -> list[SavedState | Path]:
        """Every entry, newest first; a path alone for one whose metadata is unreadable or half-written."""
        if not self.root.is_dir():
            return []
        out: list[SavedState | Path] = []
        for d in sorted(self.root.iterdir()):
            if not d.is_dir():
                continue
            if d.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                out.append(d)
                continue
            try:
                out.append(self._read(d))
            except BadState:
                out.append(d)
        return sorted(out, key=lambda e: -e.saved_at if isinstance(e, SavedState) else 0.0)

    # -- writing ----------------------------------------------------------------------------
    def save(self, machine: Machine, key: StateKey, profile: GuestProfile) -> SavedState | None:
        """Save the running, logged-in ``machine`` under ``key``; None when an entry is there already.

        The guest is stopped while its state is written (about 0.1 s per 50 MB) and resumed.
        """
        final = self.root / key.digest
        if final.is_dir():
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=self.root))
        try:
            start = time.monotonic()
            state, disks = machine.save_state(tmp)
            seconds = time.monotonic() - start
            files: dict[str, dict[str, Any]] = {
                p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in (state, *disks.values())
            }
            meta = {
                "format": FORMAT,
                "key": key.digest,
                "parts": key.parts,
                "guest": profile.name,
                "arch": machine.spec.arch,
                "accel": machine.spec.accel,
                "memory": machine.spec.memory,
                "qemu_version": key.parts["qemu"]["version"],
                "harness": key.parts["harness"],
                "saved_at": time.time(),
                "save_seconds": round(seconds, 3),
                "disks": sorted(disks),
                "files": files,
            }
            (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
            with self._lock():
                if final.is_dir():
                    return None  # another session or worker saved it first: theirs stays
                os.rename(tmp, final)
            log.info(
                "saved the logged-in VM as %s (%d bytes, %.2f s)",
                final,
                sum(f["size"] for f in files.values()),
                seconds,
            )
            return SavedState(final, meta)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def remove(self, entry: SavedState | Path) -> None:
        """Remove one entry (renamed away first, so no reader sees it half deleted)."""
        path = entry.path if isinstance(entry, SavedState) else entry
        trash = path.with_name(f"{TRASH_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name.lstrip('.')}")
        with self._lock(), contextlib.suppress(FileNotFoundError):
            os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    @staticmethod
    def stale(entry: SavedState) -> str | None:
        """Why no session of this installation can use ``entry`` any more, or None."""
        parts = entry.meta.get("parts", {})
        if parts.get("harness") != harness_version():
            return f"made by pytest-minix {parts.get('harness')}, this is {harness_version()}"
        qemu = parts.get("qemu", {})
        try:
            st = Path(qemu.get("path", "")).stat()
        except OSError:
            return f"its QEMU {qemu.get('path')} is gone"
        if (st.st_size, st.st_mtime_ns) != (qemu.get("size"), qemu.get("mtime_ns")):
            return f"its QEMU {qemu.get('path')} has changed"
        paths = [p for v in parts.get("files", {}).values() if isinstance(v, list) for p, _ in v]
        paths += [d["path"] for d in parts.get("disks", {}).values()]
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            return f"{missing[0]} is gone"
        return None

    def prune(self, everything: bool = False) -> list[Path]:
        """Remove half-written, unreadable and stale entries (with ``everything``: all); return what went."""
        removed: list[Path] = []
        now = time.time()
        for e in self.entries():
            if isinstance(e, SavedState):
                if not everything and self.stale(e) is None:
                    continue
                path = e.path
            else:
                path = e
                try:
                    if path.name.startswith(TMP_PREFIX) and now - path.stat().st_mtime < STALE_TMP:
                        continue  # being written right now
                except FileNotFoundError:
                    continue  # renamed into place (or removed) since the listing
            self.remove(path)
            removed.append(path)
        return removed
