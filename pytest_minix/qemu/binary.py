"""What a QEMU binary is and offers: where it is, its version, its machine types and devices.

Each answer is asked of the binary itself (``--version``, ``-machine help``, ``-device
help``) once per process, so a guest the binary cannot run is refused before any boot.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

from pytest_minix.errors import ConfigError, QemuNotFound


def find_qemu(binary: str, arch: str) -> str:
    """Resolve a QEMU binary name or path, or say which package provides it."""
    path = shutil.which(binary)
    if path is None:
        pkg = "qemu-system-x86" if arch == "i386" else "qemu-system-arm"
        raise QemuNotFound(
            f"QEMU for {arch} ({binary}) was not found on PATH. Install it with "
            f"`sudo apt-get install {pkg} qemu-utils`, or pass its path with --minix-qemu-{arch}."
        )
    return path


@functools.cache
def _help_names(qemu: str, option: str) -> frozenset[str]:
    """The names ``qemu <option> help`` lists (``-machine``: first word of each line; ``-device``: quoted names)."""
    try:
        out = subprocess.run([qemu, option, "help"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QemuNotFound(f"{qemu} {option} help failed ({exc}); is this a working QEMU binary?") from None
    if option == "-device":
        return frozenset(re.findall(r'^name "([^"]+)"', out, re.MULTILINE))
    return frozenset(ln.split()[0] for ln in out.splitlines()[1:] if ln.strip() and not ln.startswith(" "))


def qemu_machines(qemu: str) -> frozenset[str]:
    """Machine types this QEMU binary offers (``-machine help``)."""
    return _help_names(qemu, "-machine")


def qemu_devices(qemu: str) -> frozenset[str]:
    """Device models this QEMU binary offers (``-device help``)."""
    return _help_names(qemu, "-device")


def check_devices(qemu: str, devices: tuple[str, ...], guest: str) -> None:
    """Refuse a QEMU binary that lacks a device model the guest needs, naming the package."""
    have = qemu_devices(qemu)
    missing = [d for d in devices if d.split(",")[0] not in have]
    if missing:
        raise ConfigError(
            f"The {guest} guest needs the QEMU device(s) {', '.join(missing)}, which {qemu} does not offer "
            f"(`{qemu} -device help` does not list them). Install Debian's full qemu-system-x86 / qemu-system-arm "
            f"(not a reduced build), or pass another binary with --minix-qemu-i386 / --minix-qemu-arm."
        )


@functools.cache
def qemu_version(binary: str) -> str:
    """The version ``binary --version`` prints, or "" when it cannot be run."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else ""
