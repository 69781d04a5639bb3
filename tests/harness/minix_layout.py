"""Test data: ISO 9660 images with the MINIX 3.4.0 CD's boot layout, built with pycdlib.

``/boot/minix_default/`` holds ``kernel`` and the twelve ``modNN_*`` modules
(releasetools/x86_cdimage.sh), named the ways makefs/mkisofs name them.
"""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib

from pytest_minix.media.iso import BOOT_DIR

MODULES = (
    "mod01_ds",
    "mod02_rs",
    "mod03_pm",
    "mod04_sched",
    "mod05_vfs",
    "mod06_memory",
    "mod07_tty",
    "mod08_mib",
    "mod09_vm",
    "mod10_pfs",
    "mod11_mfs",
    "mod12_init",
)


def minix_files() -> dict[str, bytes]:
    """kernel + the 3.4.0 modules, each with distinct contents and size."""
    files = {"kernel": b"\x7fELF fake kernel " * 40}
    for i, name in enumerate(MODULES, 1):
        files[name] = f"{name} contents ".encode() * i
    return files


def _iso_name(name: str, level: int, *, is_dir: bool = False) -> str:
    upper = name.upper()[:8] if level == 1 else name.upper()
    if is_dir:
        return upper
    return f"{upper};1" if "." in upper else f"{upper}.;1"


def build_iso(
    path: Path,
    files: dict[str, bytes] | None = None,
    *,
    rock_ridge: bool = True,
    joliet: bool = True,
    level: int = 3,
    boot_dir: str = BOOT_DIR,
) -> Path:
    """A CD image with ``files`` in ``boot_dir``, named the ways makefs/mkisofs would name them."""
    files = minix_files() if files is None else files
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=level, rock_ridge="1.09" if rock_ridge else None, joliet=3 if joliet else None)
    iso_dir = ""
    rr_dir = ""
    for part in boot_dir.strip("/").split("/"):
        iso_dir += "/" + _iso_name(part, level, is_dir=True)
        rr_dir += "/" + part
        iso.add_directory(iso_dir, rr_name=part if rock_ridge else None, joliet_path=rr_dir if joliet else None)
    for name, data in files.items():
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"{iso_dir}/{_iso_name(name, level)}",
            rr_name=name if rock_ridge else None,
            joliet_path=f"{rr_dir}/{name}" if joliet else None,
        )
    iso.add_fp(io.BytesIO(b"hello\n"), 6, "/README.TXT;1", rr_name="README.txt" if rock_ridge else None)
    iso.write(str(path))
    iso.close()
    return path


def build_minix_iso(path: Path, kernel: bytes | None = None, modules: dict[str, bytes] | None = None) -> Path:
    """A MINIX-layout CD: ``kernel`` (default: filler) and ``modules`` (default: the twelve, distinct sizes)."""
    files = minix_files()
    if kernel is not None:
        files["kernel"] = kernel
    if modules is not None:
        files = {"kernel": files["kernel"], **modules}
    return build_iso(path, files)
