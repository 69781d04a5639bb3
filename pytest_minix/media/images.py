"""The MINIX image cache: fetch, decompress, hash (pinned or trust on first use), verify, prune.

Layout under the cache root (``$PYTEST_MINIX_CACHE`` or the user cache directory)::

    images/<release>/<file>          the decompressed image (never written after this)
    images/<release>/record.json     its SHA-256 and the download's, recorded on first fetch
    images/<release>/<url name>.part a partial download, resumed by the next fetch
    boot/<sha256 prefix>/            kernel and modules extracted from an ISO

A per-release file lock makes concurrent fetches (xdist workers, two sessions) download
once: the others wait and then verify what the first one recorded.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import filelock

from pytest_minix.errors import ConfigError, DownloadError, GuestUnavailable, ImageError
from pytest_minix.media.iso import BootSet, extract_boot, image_kind
from pytest_minix.media.releases import Release, check_sha256
from pytest_minix.paths import CACHE_ENV, cache_root, read_memo, write_memo

OFFLINE_ENV = "PYTEST_MINIX_OFFLINE"
RECORD = "record.json"
_CHUNK = 1 << 20


class ImageUnavailable(GuestUnavailable):
    """No image could be had (offline, or the download failed): MINIX tests skip."""


def offline_from_env() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "no", "false")


@dataclass(frozen=True)
class CachedImage:
    """An image ready to boot: where it is, what it is, and its verified SHA-256."""

    path: Path
    sha256: str
    kind: str  # "iso", "raw" or "qcow2"
    release: str = ""  # empty for a user's own image
    download_sha256: str = ""


_hashes: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, computed once per process for an unchanged file (same inode, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _hashes:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(_CHUNK):
                h.update(block)
        _hashes[key] = h.hexdigest()
    return _hashes[key]


HASH_MEMO = "sha256-memo.json"


def sha256_remembered(path: Path, memo: Path | None = None) -> str:
    """SHA-256 of a file, remembered across sessions while its inode, size and mtime stay the same.

    For keys that must be computed at every session start (the boot cache's): hashing a 2 GB
    disk image takes seconds, a ``stat`` does not. Like ``make`` and git's index, it trusts the
    mtime: an image rewritten in place with its old mtime restored would go unnoticed.
    """
    memo = memo or cache_root() / HASH_MEMO
    st = path.stat()
    key = f"{path.resolve()}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}"
    with filelock.FileLock(str(memo) + ".lock", timeout=60):
        known = read_memo(memo)
        digest = known.get(key)
        if isinstance(digest, str) and len(digest) == 64:
            return digest
        digest = sha256_file(path)
        # One line per file: a file's older versions are dropped.
        prefix = f"{path.resolve()}|"
        known = {k: v for k, v in known.items() if not k.startswith(prefix)}
        known[key] = digest
        write_memo(memo, known)
        return digest


def _stderr(message: str) -> None:
    print(f"pytest-minix: {message}", file=sys.stderr, flush=True)


class ImageStore:
    """Cached release images and the boot files extracted from them."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        notify: Callable[[str], None] = _stderr,
        progress: bool | None = None,
        timeout: float = 30.0,
        retries: int = 3,
    ) -> None:
        base = root or cache_root()
        self.root = base / "images"
        self.boot_root = base / "boot"
        self.notify = notify
        self.progress = progress
        self.timeout = timeout
        self.retries = retries

    # -- paths ------------------------------------------------------------
    def release_dir(self, rel: Release) -> Path:
        return self.root / rel.name

    def image_path(self, rel: Release) -> Path:
        return self.release_dir(rel) / rel.file

    def download_path(self, rel: Release) -> Path:
        return self.release_dir(rel) / rel.download_name

    def _record(self, rel: Release) -> dict[str, Any] | None:
        try:
            data = json.loads((self.release_dir(rel) / RECORD).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ImageError(
                f"The hash record {self.release_dir(rel) / RECORD} is unreadable ({exc}). "
                f"Re-fetch the image with `pytest-minix fetch --force {rel.name}`."
            ) from None
        return data if isinstance(data, dict) else None

    def _write_record(self, rel: Release, record: dict[str, Any]) -> None:
        path = self.release_dir(rel) / RECORD
        tmp = path.with_name(f".{RECORD}.tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    @contextlib.contextmanager
    def _locked(self, rel: Release) -> Iterator[None]:
        self.release_dir(rel).mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.release_dir(rel) / ".lock"))
        try:
            lock.acquire(timeout=1)
        except filelock.Timeout:
            self.notify(f"waiting for another process fetching MINIX {rel.name} ({lock.lock_file})")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def _by_hand(self, rel: Release) -> str:
        return (
            f"Fetch it with `pytest-minix fetch {rel.name}` where downloads work, or download {rel.url} on "
            f"a machine with network access and put it at {self.download_path(rel)} (or its decompressed "
            f"image at {self.image_path(rel)}), or pass your own image with --minix-image PATH, or run the "
            f"suites on the reference guest with --minix-guest=reference."
        )

    # -- fetch and verify ---------------------------------------------------
    def fetch(self, rel: Release, *, offline: bool = False, pin: str = "", force: bool = False) -> CachedImage:
        """The release's image, downloaded and decompressed if needed, its hashes verified."""
        pin = check_sha256(pin, "--minix-sha256")
        with self._locked(rel):
            image, dl = self.image_path(rel), self.download_path(rel)
            if force:
                for p in (image, dl, self.release_dir(rel) / RECORD):
                    p.unlink(missing_ok=True)
            if image.is_file():
                return self._verify_locked(rel, pin)
            if rel.compression == "none":  # downloaded under its own name, renamed only once verified
                dl = image.with_name(image.name + ".download")
            if not dl.is_file():
                if offline:
                    raise ImageUnavailable(
                        f"The MINIX {rel.name} image ({rel.file}) is not in the cache and downloads are off "
                        f"(--minix-offline or ${OFFLINE_ENV}). {self._by_hand(rel)}"
                    )
                from pytest_minix.media.download import (
                    download,  # requests is imported only when something is downloaded
                )

                self.notify(f"downloading MINIX {rel.name} from {rel.url}")
                try:
                    got = download(rel.url, dl, timeout=self.timeout, retries=self.retries, progress=self.progress)
                except DownloadError as exc:
                    raise ImageUnavailable(
                        f"The MINIX {rel.name} image ({rel.file}) could not be fetched. {exc} {self._by_hand(rel)}"
                    ) from None
                except OSError as exc:  # the cache's disk, not the network: a harness error, not a skip
                    raise ImageError(
                        f"Could not write the MINIX {rel.name} download {dl}.part: {exc.strerror or exc}. "
                        f"Free space there, or move the cache with ${CACHE_ENV}; the partial file is kept "
                        "and resumed next time."
                    ) from None
                dl_sha = got.sha256
            else:
                dl_sha = sha256_file(dl)  # placed by hand, or left by a fetch that was cut during decompression
            return self._install(rel, dl, dl_sha, pin)

    def _install(self, rel: Release, dl: Path, dl_sha: str, pin: str) -> CachedImage:
        image = self.image_path(rel)

        # Everything is checked on a staging file; the image appears under its real name (where
        # the cache and later sessions look) only once it passed, and with its record beside it.
        staged = image.with_name(image.name + ".part") if rel.compression == "bz2" else dl

        def reject(what: str) -> ImageError:
            for p in {dl, staged}:
                p.unlink(missing_ok=True)
            return ImageError(f"{what} Nothing was cached; the bad file was deleted. {self._by_hand(rel)}")

        if rel.download_sha256 and dl_sha != rel.download_sha256:
            raise reject(
                f"Checksum mismatch for {rel.url}: SHA-256 {dl_sha}, but the release manifest pins "
                f"{rel.download_sha256}."
            )
        img_sha = self._decompress(rel, dl, staged, reject) if rel.compression == "bz2" else dl_sha
        try:
            kind = image_kind(staged)
        except ImageError as exc:
            raise reject(f"The downloaded MINIX {rel.name} image is unusable: {exc}") from None
        if kind != rel.kind:
            raise reject(f"The downloaded MINIX {rel.name} image is a {kind} image, not the {rel.kind} expected.")
        if rel.sha256 and img_sha != rel.sha256:
            raise reject(
                f"Checksum mismatch for MINIX {rel.name}: the image's SHA-256 is {img_sha}, but the release "
                f"manifest pins {rel.sha256}."
            )
        if pin and pin not in (img_sha, dl_sha):
            raise reject(
                f"Checksum mismatch for MINIX {rel.name}: --minix-sha256 is {pin}, but the download's "
                f"SHA-256 is {dl_sha} and the image's is {img_sha}."
            )
        record = {
            "release": rel.name,
            "file": rel.file,
            "url": rel.url,
            "kind": kind,
            "sha256": img_sha,
            "size": staged.stat().st_size,
            "download_sha256": dl_sha,
            "download_size": dl.stat().st_size,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "pinned": bool(rel.sha256 or rel.download_sha256 or pin),
        }
        self._write_record(rel, record)
        os.replace(staged, image)
        if dl.exists() and dl != image:
            dl.unlink()  # the record keeps its hash; the image is what boots
        how = "verified against a pinned hash" if record["pinned"] else "trust on first use: later uses must match"
        self.notify(
            f"MINIX {rel.name} cached at {image}\n  image    SHA-256 {img_sha}\n"
            f"  download SHA-256 {dl_sha} ({rel.download_name})\n  ({how})"
        )
        return CachedImage(image, img_sha, kind, rel.name, dl_sha)

    def _decompress(self, rel: Release, src: Path, part: Path, reject: Callable[[str], ImageError]) -> str:
        """Stream-decompress bz2 (multi-stream too) into ``part``, hashing as it goes."""
        h = hashlib.sha256()
        fout_error: list[OSError] = []
        try:
            with open(src, "rb") as fin, open(part, "wb") as fout:
                dec, fed, streams = bz2.BZ2Decompressor(), False, 0
                while block := fin.read(_CHUNK):
                    while block:
                        out = dec.decompress(block)
                        fed = True
                        h.update(out)
                        try:
                            fout.write(out)
                        except OSError as exc:
                            fout_error.append(exc)
                            raise
                        block = b""
                        if dec.eof:  # pbzip2-style files hold several streams back to back
                            streams += 1
                            block = dec.unused_data
                            dec, fed = bz2.BZ2Decompressor(), False
                if fed or streams == 0:
                    raise EOFError("the compressed stream ends early" if streams or fed else "the file is empty")
                fout.flush()
                os.fsync(fout.fileno())
        except (OSError, EOFError, ValueError) as exc:
            part.unlink(missing_ok=True)
            if fout_error or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)):
                # A full disk is not a corrupt download: keep the download, say where space is missing.
                raise ImageError(
                    f"Could not write the decompressed MINIX {rel.name} image {part}: "
                    f"{getattr(exc, 'strerror', None) or exc}. "
                    f"Free space there, or move the cache with ${CACHE_ENV}; the download {src} is kept. "
                    "Nothing was cached as an image."
                ) from None
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            what = f"{src} is not a complete bz2 file ({detail}): the download is truncated or corrupt."
            raise reject(what) from None
        return h.hexdigest()

    def verify(self, rel: Release, pin: str = "") -> CachedImage:
        """Re-hash a cached image and compare it with its record (and the pin, if any)."""
        pin = check_sha256(pin, "--minix-sha256")
        with self._locked(rel):
            return self._verify_locked(rel, pin)

    def _verify_locked(self, rel: Release, pin: str) -> CachedImage:
        image = self.image_path(rel)
        if not image.is_file():
            raise ImageError(
                f"MINIX {rel.name} is not cached ({image} is missing). Fetch it with `pytest-minix fetch {rel.name}`."
            )
        sha = sha256_file(image)
        record = self._record(rel)
        if record is None:  # the image was put here by hand: record it now
            try:
                kind = image_kind(image)
            except ImageError as exc:
                raise ImageError(f"The MINIX image placed at {image} is unusable: {exc}") from None
            for want, what in ((rel.sha256, "the release manifest"), (pin, "--minix-sha256")):
                if want and sha != want:
                    raise ImageError(
                        f"Checksum mismatch for {image}: SHA-256 {sha}, but {what} pins {want}. "
                        f"Replace the file with the genuine image. {self._by_hand(rel)}"
                    )
            record = {
                "release": rel.name,
                "file": rel.file,
                "url": rel.url,
                "kind": kind,
                "sha256": sha,
                "size": image.stat().st_size,
                "download_sha256": "",
                "download_size": 0,
                "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "pinned": bool(rel.sha256 or pin),
                "placed_by_hand": True,
            }
            self._write_record(rel, record)
            self.notify(f"MINIX {rel.name}: recorded SHA-256 {sha} of {image} (placed by hand; trust on first use)")
            return CachedImage(image, sha, kind, rel.name)
        if sha != record.get("sha256"):
            raise ImageError(
                f"The cached MINIX {rel.name} image {image} has changed since it was recorded: SHA-256 {sha}, "
                f"recorded {record.get('sha256')} on {record.get('recorded')}. It may be corrupt or tampered "
                f"with. Fetch it again with `pytest-minix fetch --force {rel.name}`."
            )
        for want, what in ((rel.sha256, "the release manifest"), (pin, "--minix-sha256")):
            if want and want not in (sha, record.get("download_sha256")):
                raise ImageError(
                    f"Checksum mismatch for MINIX {rel.name}: {what} pins {want}, but the cached image's SHA-256 "
                    f"is {sha} (download {record.get('download_sha256') or 'unknown'}). Check the pin, or fetch "
                    f"the image again with `pytest-minix fetch --force {rel.name}`."
                )
        return CachedImage(image, sha, str(record.get("kind", rel.kind)), rel.name, str(record.get("download_sha256")))

    # -- users' own images --------------------------------------------------
    @staticmethod
    def user_image(path: Path, pin: str = "") -> CachedImage:
        """A user's ISO or disk image, its kind detected from its content; checked against the pin if given."""
        pin = check_sha256(pin, "--minix-sha256")
        if not path.is_file():
            raise ConfigError(f"--minix-image {path}: no such file. Give the path of a MINIX ISO or disk image.")
        kind = image_kind(path)
        # Remembered by inode, size and mtime: re-hashing a 2 GB disk image cost 1.5-7 s per session.
        sha = sha256_remembered(path)
        if pin and sha != pin:
            raise ImageError(
                f"Checksum mismatch for {path}: SHA-256 {sha}, but --minix-sha256 is {pin}. "
                "Check that this is the image you meant, or fix the pin."
            )
        return CachedImage(path.resolve(), sha, kind)

    def boot_set(self, image: CachedImage) -> BootSet:
        """Kernel and modules extracted from an ISO (once per image content, shared by processes)."""
        if image.kind != "iso":
            raise ImageError(f"{image.path} is a {image.kind} disk image; boot files come only from an ISO.")
        dest = self.boot_root / image.sha256[:16]
        self.boot_root.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(dest) + ".lock"):
            return extract_boot(image.path, dest)

    # -- listing and pruning ------------------------------------------------
    def cached(self) -> list[dict[str, Any]]:
        """Records of every cached image (with ``path``), plus partial downloads as ``partial``."""
        out: list[dict[str, Any]] = []
        if not self.root.is_dir():
            return out
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            try:
                record = json.loads((d / RECORD).read_text())
            except (OSError, ValueError):
                record = {}
            image = d / str(record.get("file", ""))
            if record and image.is_file():
                out.append({**record, "path": str(image), "size": image.stat().st_size})
            for part in sorted(d.glob("*.part")):
                out.append({"release": d.name, "path": str(part), "size": part.stat().st_size, "partial": True})
        return out

    def prune(self, known: set[str], *, everything: bool = False) -> list[Path]:
        """Remove what no cached image uses: partial downloads, leftovers, orphans, unknown releases.

        ``everything`` removes every image and boot set too. Releases locked by a running
        fetch are left alone.
        """
        removed: list[Path] = []

        def rm(p: Path) -> None:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)

        keep_sha: set[str] = set()
        if self.root.is_dir():
            for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
                lock = filelock.FileLock(str(d / ".lock"))
                try:
                    lock.acquire(timeout=0)
                except filelock.Timeout:
                    self.notify(f"skipping {d}: a fetch is running")
                    continue
                try:
                    record = self._read(d / RECORD)
                    image = d / str(record.get("file", "")) if record else None
                    in_use = not everything and d.name in known and image is not None and image.is_file()
                    if not in_use:
                        rm(d)  # removing the lock file under our own lock is fine: nobody else holds it
                        continue
                    assert image is not None
                    keep_sha.add(str(record.get("sha256", "")))
                    for p in d.iterdir():
                        if p.name not in (".lock", RECORD, image.name):
                            rm(p)
                finally:
                    lock.release()
        if self.boot_root.is_dir():
            for p in sorted(self.boot_root.iterdir()):
                stem = p.name.removesuffix(".lock")
                if not any(sha.startswith(stem) for sha in keep_sha if stem):
                    rm(p)
        return removed

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def describe(image: CachedImage) -> dict[str, Any]:
    return asdict(image)
