"""MINIX boot files: pull the kernel and boot modules off a release CD, or find them in a directory.

QEMU boots MINIX 3 by multiboot (``-kernel kernel -initrd mod01_ds,...``), so the harness needs
the files from ``/boot/minix_default`` of the CD as ordinary files. ``image_kind`` tells CD and
disk images apart by content, because file names are not to be trusted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pycdlib  # type: ignore[import-untyped, unused-ignore]
from pycdlib.pycdlibexception import PyCdlibInvalidInput  # type: ignore[import-untyped, unused-ignore]

from pytest_minix.errors import ImageError

BOOT_DIR = "/boot/minix_default"
MODULE_RE = re.compile(r"^mod(\d\d)_[A-Za-z0-9_]+$")

_RR_VERSIONS = ("1.09", "1.10", "1.12")


class _MixedRockRidgePyCdlib(pycdlib.PyCdlib):  # type: ignore[misc]
    """pycdlib that also reads CDs whose Rock Ridge records carry more than one version.

    NetBSD's makefs (``nbmakefs -t cd9660 -o rockridge``, which builds MINIX's release CD
    in releasetools/x86_cdimage.sh) writes records pycdlib takes for both 1.09 and 1.12;
    pycdlib 1.22 refuses such an image ("Inconsistent Rock Ridge versions"), although
    every name and file on it reads fine. Observed on a CD made that way from the MINIX
    3.4 source. The harness only reads, so the highest version seen is kept instead.
    """

    def _set_rock_ridge(self, rr: str) -> None:
        if rr in _RR_VERSIONS and (not self.rock_ridge or _RR_VERSIONS.index(rr) > _RR_VERSIONS.index(self.rock_ridge)):
            self.rock_ridge = rr


# pycdlib's functions are unannotated; going through Any keeps mypy --strict quiet about untyped calls.
_PyCdlib: Any = _MixedRockRidgePyCdlib

_SECTOR = 2048
_VD_START = 16 * _SECTOR  # ECMA-119: the volume descriptor set starts at sector 16
_ISO_MAGIC_OFFSET = _VD_START + 1
_QCOW2_MAGIC = b"QFI\xfb"
_STAMP = ".extracted-from.json"  # marks a dest written by extract_boot, and from which ISO
_ACCEPTED = "Accepted images: an ISO 9660 CD image (the MINIX release CD), or a raw or qcow2 disk image."
_ISO_FIX = "Use an unmodified MINIX 3 release CD image (e.g. minix_R3.4.0rc6-d5e4fc0.iso); re-download it if damaged."
_DIR_FIX = f"Copy kernel and every modNN_* file from {BOOT_DIR} of the MINIX release CD into it."


@dataclass(frozen=True)
class BootSet:
    """A kernel and its boot modules, ordered by module number."""

    kernel: Path
    modules: tuple[Path, ...]

    @property
    def module_count(self) -> int:
        return len(self.modules)

    def initrd_arg(self) -> str:
        """The value for QEMU's ``-initrd``: the module paths joined by commas."""
        for path in self.modules:
            text = str(path)
            # QEMU splits -initrd at commas and cuts each module's file name at the first space
            # (the rest becomes the module's command line), so such a path would load the wrong file.
            if "," in text or " " in text:
                bad = "a comma" if "," in text else "a space"
                raise ImageError(
                    f"Boot module path {text} contains {bad}, which QEMU's -initrd option cannot carry "
                    "(it splits modules at commas and ends a module's file name at a space). "
                    "Move the boot files to a directory whose path has no commas or spaces."
                )
        return ",".join(str(path) for path in self.modules)


def _select(sizes: Mapping[str, int], where: str, fix: str) -> tuple[str, list[str]]:
    """Pick ``kernel`` and the modNN_* names (ordered) out of a listing of name -> size."""
    found = ", ".join(sorted(sizes)) or "nothing"
    if "kernel" not in sizes:
        raise ImageError(f"{where} has no kernel file (found: {found}). {fix}")
    by_number: dict[int, list[str]] = {}
    for name in sizes:
        match = MODULE_RE.match(name)
        if match:
            by_number.setdefault(int(match.group(1)), []).append(name)
    if not by_number:
        raise ImageError(f"{where} has a kernel but no boot modules named modNN_* (found: {found}). {fix}")
    dupes = [names for names in by_number.values() if len(names) > 1]
    if dupes:
        listed = "; ".join(", ".join(sorted(names)) for names in dupes)
        raise ImageError(f"{where} has more than one boot module with the same number ({listed}). {fix}")
    numbers = sorted(by_number)
    missing = [n for n in range(1, numbers[-1] + 1) if n not in by_number]
    if missing or numbers[0] == 0:
        have = ", ".join(by_number[n][0] for n in numbers)
        gap = ", ".join(f"mod{n:02d}" for n in missing) if missing else "mod00 (numbering starts at mod01)"
        raise ImageError(f"{where}: boot module numbers have a gap or bad start: {gap} (have {have}). {fix}")
    modules = [by_number[n][0] for n in numbers]
    empty = [name for name in ["kernel", *modules] if sizes[name] == 0]
    if empty:
        raise ImageError(f"{where}: {', '.join(empty)} is empty (0 bytes). {fix}")
    return "kernel", modules


def read_boot_dir(directory: Path) -> BootSet:
    """The kernel and modNN_* files in a directory (for ``--minix-boot-dir``)."""
    if not directory.exists():
        raise ImageError(f"Boot directory {directory} does not exist. Create it: {_DIR_FIX}")
    if not directory.is_dir():
        raise ImageError(
            f"Boot directory {directory} is not a directory. Give the directory that holds kernel and "
            f"mod01_ds, mod02_rs, ... (e.g. {BOOT_DIR} copied off the MINIX release CD)."
        )
    try:
        sizes = {entry.name: entry.stat().st_size for entry in directory.iterdir() if entry.is_file()}
    except OSError as exc:
        raise ImageError(f"Boot directory {directory} cannot be read ({exc}). Fix its permissions.") from exc
    kernel, modules = _select(sizes, f"Boot directory {directory}", _DIR_FIX)
    base = directory.absolute()
    return BootSet(base / kernel, tuple(base / name for name in modules))


# ---- recognising files -------------------------------------------------------------------------


def _head(path: Path, what: str) -> tuple[bytes, int]:
    """The first bytes of a file (enough for every signature used here) and its size."""
    if not path.exists():
        raise ImageError(f"{what} {path} does not exist. Check the path (or download the image first).")
    if path.is_dir():
        raise ImageError(f"{what} {path} is a directory, not an image file. Give the image file itself.")
    try:
        with path.open("rb") as f:
            head = f.read(_VD_START + _SECTOR)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise ImageError(f"{what} {path} cannot be read ({exc}). Fix its permissions or path.") from exc
    return head, size


def _looks_like(head: bytes, size: int, path: Path) -> tuple[str, str]:
    """What unusable content looks like, and what to do about it."""
    text = head[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    redo = "Download the image again and check it is the file itself, not a page about it."
    if size == 0:
        return "is empty (0 bytes)", redo
    if head.startswith(b"BZh") and head[3:4].isdigit():
        return "is bz2-compressed", f"Decompress it first (bunzip2 -k {path}) and use the result."
    if head.startswith(b"\x1f\x8b"):
        return "is gzip-compressed", f"Decompress it first (gunzip -k {path}) and use the result."
    if head.startswith(b"\xfd7zXZ\x00"):
        return "is xz-compressed", f"Decompress it first (unxz -k {path}) and use the result."
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "is zstd-compressed", f"Decompress it first (unzstd {path}) and use the result."
    if head.startswith(b"PK\x03\x04"):
        return "is a zip archive", f"Unpack it first (unzip {path}) and use the image inside."
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return "is an HTML/XML page (probably an error page saved in place of the download)", redo
    if head.startswith(b"\x7fELF"):
        return "is an ELF executable, not an image", "Pass the kernel with the boot files, not as the image."
    if head.startswith(b"KDMV") or head.startswith(b"conectix") or b"VirtualBox Disk Image" in head[:64]:
        return "is a VMDK, VHD or VDI disk image", f"Convert it first: qemu-img convert -O qcow2 {path} out.qcow2"
    if head.startswith(_QCOW2_MAGIC):
        return "is a qcow2 disk image", "Use it as the disk image, not as the CD."
    if head[_ISO_MAGIC_OFFSET : _ISO_MAGIC_OFFSET + 5] == b"CD001":
        return "is an ISO 9660 CD image", "Use it as the CD image."
    if size >= 512 and head[510:512] == b"\x55\xaa":
        return "is a raw disk image (it has an MBR boot signature)", "Use it as the disk image, not as the CD."
    sample = head[:4096]
    if sample and all(32 <= b < 127 or b in b"\t\r\n" for b in sample):
        return "is a text file", redo
    return f"is unrecognised data (first bytes: {head[:8].hex(' ')})", redo


def _check_iso_size(path: Path, size: int) -> int:
    """Compare the file size with the primary volume descriptor's volume size; return the block size."""
    with path.open("rb") as f:
        for sector in range(16, 16 + 64):
            f.seek(sector * _SECTOR)
            vd = f.read(_SECTOR)
            if len(vd) < _SECTOR:
                break
            if vd[1:6] != b"CD001" or vd[0] == 255:  # 255: set terminator
                break
            if vd[0] == 1:
                blocks = int.from_bytes(vd[80:84], "little")
                block_size = int.from_bytes(vd[128:130], "little")
                expected = blocks * block_size
                if block_size not in (512, 1024, 2048) or blocks == 0:
                    raise ImageError(
                        f"ISO image {path} is corrupt: its primary volume descriptor gives {blocks} blocks of "
                        f"{block_size} bytes. {_ISO_FIX}"
                    )
                if size < expected:
                    raise ImageError(
                        f"ISO image {path} is truncated: {size} of {expected} bytes (an interrupted download?). "
                        f"{_ISO_FIX}"
                    )
                return block_size
    raise ImageError(
        f"ISO image {path} is truncated or corrupt: it has the CD001 signature but no readable primary volume "
        f"descriptor ({size} bytes in all). {_ISO_FIX}"
    )


def _open_iso_checked(iso: Path) -> int:
    """Raise unless ``iso`` is a whole ISO 9660 image; return its logical block size."""
    head, size = _head(iso, "ISO image")
    if head[_ISO_MAGIC_OFFSET : _ISO_MAGIC_OFFSET + 5] != b"CD001":
        looks, fix = _looks_like(head, size, iso)
        raise ImageError(
            f"{iso} is not an ISO 9660 CD image (no CD001 signature at offset 0x8001): it {looks}. {fix} "
            f"The boot files come from the MINIX release CD (e.g. minix_R3.4.0rc6-d5e4fc0.iso); for a disk "
            f"image, give the kernel and modules with --minix-boot-dir."
        )
    return _check_iso_size(iso, size)


def _check_qcow2(path: Path) -> None:
    """Have qemu-img check the image so a truncated or corrupt qcow2 fails here, not mid-boot."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise ImageError(
            f"{path} is a qcow2 image, but qemu-img is not installed to check it. "
            "Install it (apt-get install qemu-utils, or your distribution's QEMU tools package)."
        )
    try:
        proc = subprocess.run(
            [qemu_img, "check", "--output=json", "-f", "qcow2", str(path)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"qemu-img check of {path} took over 300 s; check the image or disk by hand.") from exc
    # 0: clean; 3: only leaked clusters, which waste space but lose no data.
    if proc.returncode in (0, 3):
        return
    detail = next((line.strip() for line in proc.stderr.splitlines() if line.strip()), "no message")
    if proc.returncode == 2:
        with contextlib.suppress(ValueError):
            detail = f"{json.loads(proc.stdout).get('corruptions', '?')} corruptions; first: {detail}"
        raise ImageError(
            f"qcow2 image {path} is corrupt or truncated (qemu-img check: {detail}). "
            "Download or build it again (or try qemu-img check -r all on a copy)."
        )
    raise ImageError(
        f"qcow2 image {path} cannot be opened (qemu-img check exit {proc.returncode}: {detail}). "
        "It is truncated or damaged, or its backing file is missing or locked: fix that or recreate the image."
    )


def image_kind(path: Path) -> Literal["iso", "qcow2", "raw"]:
    """Tell an ISO 9660 CD image, a qcow2 disk image and a raw (MBR) disk image apart by content."""
    head, size = _head(path, "Image")
    if head[_ISO_MAGIC_OFFSET : _ISO_MAGIC_OFFSET + 5] == b"CD001":
        _check_iso_size(path, size)
        return "iso"
    if head.startswith(_QCOW2_MAGIC):
        _check_qcow2(path)
        return "qcow2"
    if size >= 512 and head[510:512] == b"\x55\xaa":
        if size % 512:
            raise ImageError(
                f"{path} looks like a raw disk image (MBR boot signature) but its size, {size} bytes, is not a "
                f"multiple of 512: it is truncated or not a disk image. Download or build it again. {_ACCEPTED}"
            )
        return "raw"
    looks, fix = _looks_like(head, size, path)
    raise ImageError(
        f"{path} is not a usable image: it {looks}. {fix} {_ACCEPTED} "
        "(A raw MINIX disk image starts with an MBR partition table.)"
    )


# ---- extraction --------------------------------------------------------------------------------


def _canonical(identifier: str) -> str:
    """``KERNEL.;1`` / ``KERNEL;1`` / ``kernel`` -> ``kernel``."""
    name = identifier.split(";", 1)[0]
    return name.rstrip(".").lower()


@dataclass(frozen=True)
class _Entry:
    key: str  # the pycdlib path keyword: rr_path, joliet_path or iso_path
    path: str  # the file's path in that namespace, as pycdlib wants it
    record: Any  # pycdlib DirectoryRecord


def _list_files(iso: Any, iso_path: Path, key: str, directory: str, decode: str) -> dict[str, _Entry]:
    """Regular files in ``directory`` of one namespace, keyed by their lower-case canonical name."""
    out: dict[str, _Entry] = {}
    for child in iso.list_children(**{key: directory}):
        if child is None or not child.is_file():
            continue
        ident = bytes(child.file_identifier()).decode(decode, errors="replace")
        if key == "rr_path":
            if child.rock_ridge is None:  # no Rock Ridge name, so no rr_path to read it by
                continue
            ident = bytes(child.rock_ridge.name()).decode("utf-8", errors="replace")
        canon = _canonical(ident)
        if canon in out and (canon == "kernel" or MODULE_RE.match(canon)):
            # The same name twice (e.g. FILE;1 and FILE;2): ambiguous, so say so rather than guess.
            raise ImageError(
                f"ISO image {iso_path}: {BOOT_DIR} lists {canon} twice ({out[canon].path} and "
                f"{directory}/{ident}), so which to boot is ambiguous. {_ISO_FIX}"
            )
        out[canon] = _Entry(key, f"{directory}/{ident}", child)
    return out


def _find_iso9660_dir(iso: Any) -> str | None:
    """Find BOOT_DIR by plain ISO 9660 names: upper case, maybe cut to 8 characters (level 1)."""
    current = ""
    for part in BOOT_DIR.strip("/").split("/"):
        wanted = {part, part[:8]}
        match = None
        for child in iso.list_children(iso_path=current or "/"):
            if child is None or not child.is_dir():
                continue
            ident = bytes(child.file_identifier()).decode("latin-1")
            if ident not in (".", "..", "\x00", "\x01") and _canonical(ident) in wanted:
                match = ident
                # An exact name beats a level-1 truncation that might belong to another directory.
                if _canonical(ident) == part:
                    break
        if match is None:
            return None
        current = f"{current}/{match}"
    return current


def _boot_files(iso: Any, iso_path: Path) -> dict[str, _Entry] | None:
    """Listing of BOOT_DIR, preferring Rock Ridge names, then Joliet, then ISO 9660."""
    if iso.has_rock_ridge():
        with contextlib.suppress(PyCdlibInvalidInput):
            return _list_files(iso, iso_path, "rr_path", BOOT_DIR, "latin-1")
    if iso.has_joliet():
        with contextlib.suppress(PyCdlibInvalidInput):
            return _list_files(iso, iso_path, "joliet_path", BOOT_DIR, "utf-16-be")
    directory = _find_iso9660_dir(iso)
    return None if directory is None else _list_files(iso, iso_path, "iso_path", directory, "latin-1")


def _stamp_for(iso: Path) -> dict[str, object]:
    st = iso.stat()
    return {"iso": str(iso.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _complete(dest: Path, stamp: dict[str, object]) -> BootSet | None:
    """``dest`` as a BootSet if an earlier extract_boot of this same ISO wrote it, else None."""
    try:
        if json.loads((dest / _STAMP).read_text()) != stamp:
            return None
        return read_boot_dir(dest)
    except (OSError, ValueError, ImageError):
        return None


def _recorded_length(iso_path: Path, record: Any, block_size: int) -> int:
    """The data length that the directory on disk gives for ``record``.

    pycdlib silently shortens a file whose extent runs past the end of the image, which would
    turn a damaged image into a short kernel or module; the raw record keeps the true length.
    """
    parent = record.parent
    with iso_path.open("rb") as f:
        f.seek(int(parent.extent_location()) * block_size)
        raw = f.read(int(parent.get_data_length()))
    ident = bytes(record.file_identifier())
    extent = int(record.extent_location())
    pos = 0
    while pos < len(raw):
        length = raw[pos]
        if length == 0:  # records never cross a sector: the rest of this one is padding
            pos = (pos // _SECTOR + 1) * _SECTOR
            continue
        rec = raw[pos : pos + length]
        if int.from_bytes(rec[2:6], "little") == extent and rec[33 : 33 + rec[32]] == ident:
            return int.from_bytes(rec[10:14], "little")
        pos += length
    return int(record.get_data_length())


def _extract_into(iso_path: Path, block_size: int, tmp: Path) -> None:
    iso = _PyCdlib()
    try:
        iso.open(str(iso_path))
    except Exception as exc:  # pycdlib raises all sorts (struct.error, IndexError, ...) on bad data
        raise ImageError(
            f"ISO image {iso_path} is corrupt: pycdlib cannot read it ({type(exc).__name__}: {exc}). {_ISO_FIX}"
        ) from exc
    try:
        files = _boot_files(iso, iso_path)
        if files is None:
            raise ImageError(
                f"ISO image {iso_path} has no {BOOT_DIR} directory, so it is not a MINIX 3 release CD "
                f"(or is from a release with another layout). {_ISO_FIX} Or give the kernel and modules "
                "with --minix-boot-dir."
            )
        sizes = {name: int(entry.record.get_data_length()) for name, entry in files.items()}
        kernel, modules = _select(sizes, f"ISO image {iso_path}: {BOOT_DIR}", _ISO_FIX)
        file_size = iso_path.stat().st_size
        for name in [kernel, *modules]:
            entry = files[name]
            start = int(entry.record.extent_location()) * block_size
            if start + sizes[name] >= file_size:  # pycdlib cuts a file that runs off the end to end there
                sizes[name] = _recorded_length(iso_path, entry.record, block_size)
            end = start + sizes[name]
            if end > file_size:
                raise ImageError(
                    f"ISO image {iso_path} is truncated or corrupt: {entry.path} ends at byte {end} but the file "
                    f"has {file_size} bytes. {_ISO_FIX}"
                )
            with (tmp / name).open("wb") as out:
                iso.get_file_from_iso_fp(out, **{entry.key: entry.path})
            written = (tmp / name).stat().st_size
            if written != sizes[name]:
                raise ImageError(
                    f"ISO image {iso_path} is corrupt: {entry.path} should hold {sizes[name]} bytes but "
                    f"{written} could be read. {_ISO_FIX}"
                )
    except ImageError:
        raise
    except OSError as exc:
        raise ImageError(
            f"Extracting the boot files of {iso_path} into {tmp.parent} failed ({exc}). "
            "Check the free space and permissions there."
        ) from exc
    except Exception as exc:  # pycdlib's own errors, or struct/index errors on damaged directories
        raise ImageError(
            f"ISO image {iso_path} is corrupt: pycdlib failed reading it ({type(exc).__name__}: {exc}). {_ISO_FIX}"
        ) from exc
    finally:
        iso.close()


def extract_boot(iso: Path, dest: Path) -> BootSet:
    """Extract kernel and modNN_* from BOOT_DIR of the ISO into ``dest``, atomically.

    The files are written into a temporary directory beside ``dest`` and renamed into place,
    so ``dest`` is either absent or complete. A ``dest`` already extracted from the same ISO
    (same path, size and mtime) is reused as it is; one from another ISO is replaced.
    """
    block_size = _open_iso_checked(iso)
    stamp = _stamp_for(iso)
    done = _complete(dest, stamp)
    if done is not None:
        return done
    if dest.exists() and not (dest / _STAMP).is_file():
        raise ImageError(
            f"{dest} already exists and was not written by extract_boot (no {_STAMP} in it), so it is left "
            "alone. Remove it or choose another directory for the extracted boot files."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        _extract_into(iso, block_size, tmp)
        (tmp / _STAMP).write_text(json.dumps(stamp))
        done = _complete(dest, stamp)
        if done is not None:  # another process (an xdist worker) finished the same job meanwhile
            return done
        if dest.exists():
            # Renamed into place by another worker since the check above? Then it is ours, complete:
            # never take it for stale (deleting it under that worker made it read a half-gone dest).
            done = _complete(dest, stamp)
            if done is not None:
                return done
            # A stale extraction of another ISO: swap it out, then delete it.
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex}")
            os.rename(dest, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, dest)
        except OSError:
            # Another process (an xdist worker) renamed its copy into place first: use that.
            done = _complete(dest, stamp)
            if done is None:
                raise
            return done
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read_boot_dir(dest)


__all__ = ["BOOT_DIR", "MODULE_RE", "BootSet", "extract_boot", "image_kind", "read_boot_dir"]
